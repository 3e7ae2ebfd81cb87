//! FNet's Fourier mixing as one operation: the real part of the
//! orthonormal 2-D Fourier transform of real maps,
//! `Y = Re(F_N · X · F_W)` for each sample `X` `[N, W]` of `[B, N, W]`
//! (spectrans' `FourierMixing`, torch's `fft2(x, norm="ortho").real`).
//!
//! The operation is its own adjoint: `F` is symmetric, so for real `G`
//! `⟨G, Re(F_N X F_W)⟩ = ⟨Re(F_N G F_W), X⟩`, and the backward is the same
//! transform of the output gradient. One fused operation in place of a
//! chain of transforms (real FFT along the rows, FFT along the columns,
//! completion of the mirrored half) keeps the intermediate spectrum out of
//! the autodiff graph and halves a training step's passes over memory.
//!
//! On the CPU (flex), per sample: a real FFT of each row (`realfft`,
//! keeping the `W/2 + 1` columns a real row's spectrum does not repeat),
//! written transposed so that each kept column is contiguous; a complex FFT
//! of length `N` down each kept column (`rustfft`); then the real parts
//! written back row by row, the columns above `W/2` mirrored
//! (`Re X[s, h] = Re X[−s, −h]` for real `x`). Any `N` and `W`. With at
//! least as many samples as threads, each thread takes whole samples
//! through the three passes, so that a sample's spectrum stays in the
//! core's cache between them (twice as fast at `[8, 1024, 256]` as spreading
//! each pass over the threads, which smaller batches still do). Each value
//! is computed with the same operations in a fixed order, in float32, so
//! results do not depend on the number of threads.
//!
//! ```
//! use burn::tensor::{Device, Tensor, TensorData};
//! use idx_flow_kernels::fourier2::real_fft2;
//! let device = Device::default();
//! // One sample [2, 2]: Re FFT2 = [[a+b+c+d, a−b+c−d], [a+b−c−d, a−b−c+d]] / 2.
//! let x = Tensor::<3>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [1, 2, 2]), &device);
//! let y: Vec<f32> = real_fft2(x)?.into_data().iter().collect();
//! assert_eq!(y, [5.0, -1.0, -2.0, 0.0]);
//! # Ok::<(), idx_flow_kernels::Error>(())
//! ```

use std::sync::{Arc, Mutex, OnceLock};

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::tensor::Tensor;
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;
use realfft::{RealFftPlanner, RealToComplex};
use rustfft::Fft;
use rustfft::num_complex::Complex32;

use crate::cpu::{f32_tensor, floats, output};
use crate::fft::plan;
use crate::pointwise::{on_flex, require_flex};
use crate::{Error, Result};

/// The transform as a backend operation (its backward is itself).
#[backend_extension(Flex, Autodiff)]
pub trait Fourier2Kernels: Backend {
    /// `x` `[B, N, W]` → `Re(F_N · x · F_W)` `[B, N, W]`, orthonormal.
    fn real_fft2(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// Rows of one sample per task in the row passes: a task's output block
/// (`ROWS_PER_TASK × W` values) stays in the first-level cache while its
/// columns are written.
const ROWS_PER_TASK: usize = 16;

/// Complex values per task in the column pass.
const COLUMN_VALUES_PER_TASK: usize = 1 << 14;

/// `realfft`'s forward plan for rows of `w`, from one process-wide planner.
fn real_plan(w: usize) -> Arc<dyn RealToComplex<f32>> {
    static PLANNER: OnceLock<Mutex<RealFftPlanner<f32>>> = OnceLock::new();
    PLANNER
        .get_or_init(|| Mutex::new(RealFftPlanner::new()))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .plan_fft_forward(w)
}

/// A buffer that tasks write at disjoint positions before it is read.
#[derive(Clone, Copy)]
struct Shared<T>(*mut T);
// SAFETY: each task writes only the elements of its own rows or columns,
// and nothing reads them until every task of the pass has finished.
unsafe impl<T> Send for Shared<T> {}
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// Through a method, so that closures capture the whole (`Sync`)
    /// wrapper rather than its raw-pointer field.
    fn ptr(&self) -> *mut T {
        self.0
    }
}

/// The sizes of one call and the plans they use.
struct Transform {
    n: usize,
    w: usize,
    /// Kept columns of a real row's spectrum, `w/2 + 1`.
    half: usize,
    /// `1/√(n·w)`.
    scale: f32,
    row_fft: Arc<dyn RealToComplex<f32>>,
    column_fft: Arc<dyn Fft<f32>>,
}

/// One thread's working buffers.
struct Buffers {
    row: Vec<f32>,
    rows_spectrum: Vec<Complex32>,
    row_scratch: Vec<Complex32>,
    column_scratch: Vec<Complex32>,
    /// One block of output rows, `ROWS_PER_TASK × w`.
    tile: Vec<f32>,
}

impl Transform {
    fn new(n: usize, w: usize) -> Self {
        Self {
            n,
            w,
            half: w / 2 + 1,
            scale: (1.0 / ((n * w) as f64).sqrt()) as f32,
            row_fft: real_plan(w),
            column_fft: plan(n, false),
        }
    }

    fn buffers(&self) -> Buffers {
        let zero = Complex32::new(0.0, 0.0);
        Buffers {
            row: self.row_fft.make_input_vec(),
            rows_spectrum: vec![zero; ROWS_PER_TASK * self.half],
            row_scratch: self.row_fft.make_scratch_vec(),
            column_scratch: vec![zero; self.column_fft.get_inplace_scratch_len()],
            tile: Vec::with_capacity(ROWS_PER_TASK * self.w),
        }
    }

    /// Pass 1 for the rows `s0..s0 + rows` of one sample `x` `[n, w]`: their
    /// real FFTs, written transposed into the sample's spectrum (column `h`
    /// at `spectrum[h·n..][..n]`).
    ///
    /// # Safety
    /// `spectrum` points to `half·n` writable values; no other thread
    /// touches rows `s0..s0 + rows` of its columns meanwhile.
    unsafe fn rows_to_columns(
        &self,
        x: &[f32],
        s0: usize,
        rows: usize,
        spectrum: *mut Complex32,
        buffers: &mut Buffers,
    ) {
        let (n, w, half) = (self.n, self.w, self.half);
        for r in 0..rows {
            let at = (s0 + r) * w;
            buffers.row.copy_from_slice(&x[at..at + w]);
            self.row_fft
                .process_with_scratch(
                    &mut buffers.row,
                    &mut buffers.rows_spectrum[r * half..(r + 1) * half],
                    &mut buffers.row_scratch,
                )
                .expect("buffers sized by the plan");
        }
        for h in 0..half {
            for r in 0..rows {
                // SAFETY: inside the sample's spectrum, at this block's rows.
                unsafe {
                    spectrum
                        .add(h * n + s0 + r)
                        .write(buffers.rows_spectrum[r * half + h])
                };
            }
        }
    }

    /// Pass 3 for the rows `s0..s0 + rows` of one sample: the real parts of
    /// its transformed spectrum, scaled, into `out` `[n, w]`; the columns
    /// above `w/2` from the mirrored position `(−s, −h)`.
    ///
    /// # Safety
    /// `out` points to `n·w` writable values; no other thread touches rows
    /// `s0..s0 + rows` meanwhile.
    unsafe fn columns_to_rows(
        &self,
        spectrum: &[Complex32],
        s0: usize,
        rows: usize,
        out: *mut f32,
        tile: &mut Vec<f32>,
    ) {
        let (n, w, half, scale) = (self.n, self.w, self.half, self.scale);
        let mut mirrors = [0usize; ROWS_PER_TASK];
        for (r, m) in mirrors.iter_mut().enumerate().take(rows) {
            *m = (n - (s0 + r)) % n;
        }
        // The block is assembled in `tile` (in the first-level cache) and
        // then copied out row by row: written straight into `out`, each
        // value lands on another row's cache line, and this pass took a
        // fifth longer (perf cycle counts of bench/families' FourierMixing
        // case, 2-core Intel box).
        // Every value is written below: resizing zeroes only what grows
        // (the first block a thread takes), not every block.
        tile.resize(rows * w, 0.0);
        for h in 0..half {
            let column = &spectrum[h * n..][..n];
            for r in 0..rows {
                tile[r * w + h] = column[s0 + r].re * scale;
            }
        }
        for h in half..w {
            let column = &spectrum[(w - h) * n..][..n];
            for (r, &m) in mirrors.iter().enumerate().take(rows) {
                tile[r * w + h] = column[m].re * scale;
            }
        }
        // SAFETY: inside `out`, at this block's rows.
        unsafe { std::ptr::copy_nonoverlapping(tile.as_ptr(), out.add(s0 * w), rows * w) };
    }

    /// All three passes over one sample `x` `[n, w]` on this thread: its
    /// spectrum (about `n·w·4` bytes) stays in the core's cache between
    /// passes.
    ///
    /// # Safety
    /// `out` points to `n·w` writable values that only this call writes.
    unsafe fn sample(
        &self,
        x: &[f32],
        out: *mut f32,
        spectrum: &mut Vec<Complex32>,
        buffers: &mut Buffers,
    ) {
        let (n, half) = (self.n, self.half);
        spectrum.clear();
        spectrum.reserve(half * n);
        for s0 in (0..n).step_by(ROWS_PER_TASK) {
            let rows = ROWS_PER_TASK.min(n - s0);
            // SAFETY: the reserved capacity holds `half·n` values.
            unsafe { self.rows_to_columns(x, s0, rows, spectrum.as_mut_ptr(), buffers) };
        }
        // SAFETY: the blocks wrote every (column, row) position.
        unsafe { spectrum.set_len(half * n) };
        self.column_fft
            .process_with_scratch(spectrum, &mut buffers.column_scratch);
        for s0 in (0..n).step_by(ROWS_PER_TASK) {
            let rows = ROWS_PER_TASK.min(n - s0);
            // SAFETY: the caller's contract.
            unsafe { self.columns_to_rows(spectrum, s0, rows, out, &mut buffers.tile) };
        }
    }
}

/// `Re(F_N · x · F_W)` of each sample of `x` (`[b, n, w]`, row-major),
/// orthonormal. `x` holds `b·n·w` values (the caller checks).
///
/// With at least as many samples as threads, each sample goes through all
/// three passes on one thread; with fewer, each pass is spread over every
/// thread by blocks of rows or columns. Both orders compute every value
/// with the same operations, so the result is the same.
pub(crate) fn real_fft2_slice(x: &[f32], b: usize, n: usize, w: usize) -> Vec<f32> {
    let total = b * n * w;
    debug_assert_eq!(x.len(), total);
    if total == 0 {
        return Vec::new();
    }
    let transform = Transform::new(n, w);
    let t = &transform;
    let mut out: Vec<f32> = Vec::with_capacity(total);
    let out_values = Shared(out.as_mut_ptr());

    if b >= rayon::current_num_threads() {
        (0..b).into_par_iter().for_each_init(
            || (Vec::new(), t.buffers()),
            |(spectrum, buffers), sample| {
                let at = sample * n * w;
                // SAFETY: sample `sample`'s `n·w` values are this task's.
                unsafe {
                    t.sample(
                        &x[at..at + n * w],
                        out_values.ptr().add(at),
                        spectrum,
                        buffers,
                    )
                };
            },
        );
    } else {
        let (half, blocks) = (t.half, n.div_ceil(ROWS_PER_TASK));
        // Pass 1 over (sample, block of rows) tasks.
        let spectrum_len = b * half * n;
        let mut spectrum: Vec<Complex32> = Vec::with_capacity(spectrum_len);
        let spectrum_out = Shared(spectrum.as_mut_ptr());
        (0..b * blocks).into_par_iter().for_each_init(
            || t.buffers(),
            |buffers, task| {
                let (sample, s0) = (task / blocks, (task % blocks) * ROWS_PER_TASK);
                let rows = ROWS_PER_TASK.min(n - s0);
                let x = &x[sample * n * w..(sample + 1) * n * w];
                // SAFETY: this sample's spectrum, at this task's rows only.
                unsafe {
                    let spectrum = spectrum_out.ptr().add(sample * half * n);
                    t.rows_to_columns(x, s0, rows, spectrum, buffers)
                };
            },
        );
        // SAFETY: pass 1 wrote every (sample, column, row) position.
        unsafe { spectrum.set_len(spectrum_len) };
        // Pass 2: the complex FFT down each kept column (contiguous now).
        let columns_per_task = (COLUMN_VALUES_PER_TASK / n).max(1);
        let scratch_len = t.column_fft.get_inplace_scratch_len();
        spectrum.par_chunks_mut(columns_per_task * n).for_each_init(
            || vec![Complex32::new(0.0, 0.0); scratch_len],
            |scratch, columns| t.column_fft.process_with_scratch(columns, scratch),
        );
        // Pass 3 over (sample, block of rows) tasks.
        let spectrum = &spectrum;
        (0..b * blocks).into_par_iter().for_each_init(
            || Vec::with_capacity(ROWS_PER_TASK * w),
            |tile, task| {
                let (sample, s0) = (task / blocks, (task % blocks) * ROWS_PER_TASK);
                let rows = ROWS_PER_TASK.min(n - s0);
                let columns = &spectrum[sample * half * n..(sample + 1) * half * n];
                let out = out_values.ptr();
                // SAFETY: this sample's output, at this task's rows only.
                unsafe { t.columns_to_rows(columns, s0, rows, out.add(sample * n * w), tile) };
            },
        );
    }
    // SAFETY: every (sample, row, column) position was written.
    unsafe { out.set_len(total) };
    out
}

impl Fourier2Kernels for Flex {
    fn real_fft2(x: FlexTensor) -> FlexTensor {
        let shape = x.layout().shape().to_vec();
        let (b, n, w) = (shape[0], shape[1], shape[2]);
        let (x, dtype) = f32_tensor(x);
        output(real_fft2_slice(floats(&x), b, n, w), shape, dtype)
    }
}

mod autodiff {
    use burn::backend::autodiff::Autodiff;
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::tensor::FloatTensor;

    use super::Fourier2Kernels;

    /// The transform is self-adjoint: its gradient is the transform of the
    /// output gradient.
    #[derive(Debug)]
    struct RealFft2Backward;

    impl<B: Fourier2Kernels> Backward<B, 1> for RealFft2Backward {
        type State = ();

        fn backward(
            self,
            ops: Ops<Self::State, 1>,
            grads: &mut Gradients,
            _checkpointer: &mut Checkpointer,
        ) {
            let [x_node] = ops.parents;
            let dy = grads.consume::<B>(&ops.node);
            if let Some(node) = x_node {
                grads.register::<B>(node.id, B::real_fft2(dy));
            }
        }
    }

    impl<B: Fourier2Kernels, C: CheckpointStrategy> Fourier2Kernels for Autodiff<B, C> {
        fn real_fft2(x: FloatTensor<Self>) -> FloatTensor<Self> {
            match RealFft2Backward
                .prepare::<C>([x.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish((), B::real_fft2(x.into_primitive())),
                OpsKind::UnTracked(prep) => prep.finish(B::real_fft2(x.into_primitive())),
            }
        }
    }
}

/// Whether [`real_fft2`] runs natively on `device` (burn's CPU backend, with
/// or without autodiff).
pub fn available(device: &burn::tensor::Device) -> bool {
    on_flex(device)
}

/// `Re(F_N · x · F_W)` of each sample of real `x` `[B, N, W]`, the
/// orthonormal 2-D Fourier transform's real part; differentiable (the
/// gradient is the same transform of the output gradient).
///
/// An error off burn's CPU backend (see [`available`]) or when an axis is
/// empty.
pub fn real_fft2(x: Tensor<3>) -> Result<Tensor<3>> {
    require_flex(&x.device(), "the fused 2-D Fourier transform runs")?;
    let dims = x.dims();
    if dims.contains(&0) {
        return Err(Error::Shape {
            context: "2-D Fourier transform input".into(),
            expected: "[B, N, W] with no empty axis".into(),
            got: format!("{dims:?}"),
        });
    }
    Ok(Tensor::from_dispatch(Dispatch::real_fft2(
        x.into_dispatch(),
    )))
}
