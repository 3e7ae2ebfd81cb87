//! The native FFT on the layouts the spectral and FNO layers use, printed
//! beside rustfft alone on the same number of contiguous rows (the floor:
//! no gather, scatter or tensor around it).
//!
//! cargo bench -p idx-flow-kernels --bench fft
//!
//! Each line: the shape and transform, the median time of
//! [`fft`](idx_flow_kernels::fft::fft) on a flex tensor, of the slice
//! [`transform`](idx_flow_kernels::fft::transform) under it, and of rustfft
//! over `rows × len` contiguous values on the same threads.

use burn::tensor::{Device, Distribution, Tensor};
use idx_flow_kernels::fft::{FftSpec, fft, transform};
use idx_flow_testing::bench::median_seconds;
use rayon::prelude::*;
use rustfft::FftPlanner;
use rustfft::num_complex::Complex32;

/// rustfft alone: `rows` contiguous rows of `n`, in blocks over rayon.
fn floor_ms(rows: usize, n: usize, runs: usize) -> f64 {
    let fft = FftPlanner::<f32>::new().plan_fft_forward(n);
    let per_task = (16_384 / n).max(1);
    let mut data = vec![Complex32::new(1.0, 0.5); rows * n];
    1e3 * median_seconds(
        || {
            data.par_chunks_mut(per_task * n).for_each_init(
                || vec![Complex32::new(0.0, 0.0); fft.get_inplace_scratch_len()],
                |scratch, block| fft.process_with_scratch(block, scratch),
            );
        },
        runs,
        2,
    )
}

fn case<const DI: usize, const DO: usize>(label: &str, shape: [usize; DI], spec: FftSpec) {
    let device = Device::default();
    let runs = 10;
    let x = Tensor::<DI>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let tensor_ms = 1e3
        * median_seconds(
            || {
                let _ = fft::<DI, DO>(x.clone(), spec).expect("a valid spec");
            },
            runs,
            2,
        );
    let values: Vec<f32> = x.to_data().iter().collect();
    let logical = if spec.real_input { DI } else { DI - 1 };
    let outer: usize = shape[..spec.axis].iter().product();
    let inner: usize = shape[spec.axis + 1..logical].iter().product();
    let slice_ms = 1e3
        * median_seconds(
            || {
                let _ = transform(&values, outer, shape[spec.axis], inner, &spec)
                    .expect("matching sizes");
            },
            runs,
            2,
        );
    let floor = floor_ms(outer * inner, spec.len, runs);
    let out = spec.output_shape(&shape).expect("a valid spec");
    println!(
        "{label:<34} {:>22} {tensor_ms:>9.2} {slice_ms:>9.2} {floor:>9.2} {:>6.2}",
        format!("{out:?}"),
        slice_ms / floor
    );
}

fn main() {
    println!(
        "float32 on flex, {} threads; times in ms (median of 10)",
        rayon::current_num_threads()
    );
    println!(
        "{:<34} {:>22} {:>9} {:>9} {:>9} {:>6}",
        "case", "output", "tensor", "slice", "rustfft", "×floor"
    );
    let tokens = [8, 1024, 256];
    case::<3, 4>(
        "hidden R2C [8,1024,256] ax 2",
        tokens,
        FftSpec::new(2, 256).real_input(),
    );
    case::<4, 3>(
        "seq C2R [8,1024,256,2] ax 1",
        [8, 1024, 256, 2],
        FftSpec::new(1, 1024).real_output(),
    );
    case::<3, 4>(
        "seq rfft keep 513 ax 1 (AFNO)",
        tokens,
        FftSpec::new(1, 1024).real_input().keep(513),
    );
    case::<4, 5>(
        "FNO W rfft keep 12 [8,32,128,128]",
        [8, 32, 128, 128],
        FftSpec::new(3, 128).real_input().keep(12),
    );
    case::<5, 5>(
        "FNO H fft keep 24 [8,32,128,12,2]",
        [8, 32, 128, 12, 2],
        FftSpec::new(2, 128).keep(24),
    );
}
