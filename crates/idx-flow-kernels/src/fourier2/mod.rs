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
//! On the CPU (flex), per sample, three passes: the rows are transformed
//! along `W` and written transposed, so that each column of the
//! intermediate spectrum is contiguous; a complex FFT (`rustfft`) goes down
//! each column; the real parts are written back row by row. For even `N`
//! two real rows go through one complex FFT, and on AVX2 or AVX-512 the
//! transposes and the last pass move whole blocks in registers; for odd `N` each row
//! goes through a real FFT (`realfft`). Any `N` and `W`. With at least as
//! many samples as threads, each thread takes whole samples through the
//! three passes, so that a sample's spectrum stays in the core's cache
//! between them (twice as fast at `[8, 1024, 256]` as spreading each pass
//! over the threads, which smaller batches still do). Each value is
//! computed with the same operations in a fixed order, in float32, so
//! results do not depend on the number of threads or on the CPU's vector
//! width.
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

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod general;
mod paired;

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::tensor::Tensor;
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;
use rustfft::Fft;
use rustfft::num_complex::Complex32;

use crate::cpu::{f32_tensor, floats, output};
use crate::pointwise::{on_flex, require_flex};
use crate::{Error, Result};

/// The transform as a backend operation (its backward is itself).
#[backend_extension(Flex, Autodiff)]
pub trait Fourier2Kernels: Backend {
    /// `x` `[B, N, W]` → `Re(F_N · x · F_W)` `[B, N, W]`, orthonormal.
    fn real_fft2(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// Complex values per task in the column pass when it is spread over the
/// threads.
const COLUMN_VALUES_PER_TASK: usize = 1 << 14;

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

/// One sample's transform as three passes over blocks: rows into a
/// column-major spectrum (columns of the column transform's length,
/// contiguous), the column transforms, and the spectrum into output rows.
/// Blocks of a pass touch disjoint parts of the spectrum and the output, so
/// they may run on any threads in any order.
trait Passes: Sync {
    /// One thread's working buffers.
    type Buffers: Send;

    fn buffers(&self) -> Self::Buffers;

    /// Complex values of one sample's spectrum.
    fn spectrum_len(&self) -> usize;

    /// The transform down each column of the spectrum.
    fn column_fft(&self) -> &dyn Fft<f32>;

    /// Blocks of the first pass, and of the last, per sample.
    fn row_blocks(&self) -> usize;
    fn output_blocks(&self) -> usize;

    /// The first pass's `block` of one sample `x` `[n, w]`.
    ///
    /// # Safety
    /// `spectrum` points to [`spectrum_len`](Self::spectrum_len) writable
    /// values; no other thread writes this block's part meanwhile.
    unsafe fn rows(
        &self,
        x: &[f32],
        block: usize,
        spectrum: *mut Complex32,
        buffers: &mut Self::Buffers,
    );

    /// The last pass's `block`, from the transformed spectrum into `out`.
    ///
    /// # Safety
    /// `out` points to the sample's `n·w` writable values; no other thread
    /// touches this block's rows meanwhile.
    unsafe fn output(
        &self,
        spectrum: &[Complex32],
        block: usize,
        out: *mut f32,
        buffers: &mut Self::Buffers,
    );
}

/// The column pass's scratch for `t`.
fn column_scratch<T: Passes>(t: &T) -> Vec<Complex32> {
    vec![Complex32::new(0.0, 0.0); t.column_fft().get_inplace_scratch_len()]
}

/// All three passes over one sample `x` on this thread: its spectrum
/// (about `n·w·4` bytes) stays in the core's cache between passes.
///
/// # Safety
/// `out` points to the sample's `n·w` writable values that only this call
/// writes.
unsafe fn sample<T: Passes>(
    t: &T,
    x: &[f32],
    out: *mut f32,
    spectrum: &mut Vec<Complex32>,
    scratch: &mut [Complex32],
    buffers: &mut T::Buffers,
) {
    let len = t.spectrum_len();
    spectrum.clear();
    spectrum.reserve(len);
    for block in 0..t.row_blocks() {
        // SAFETY: the reserved capacity holds `len` values.
        unsafe { t.rows(x, block, spectrum.as_mut_ptr(), buffers) };
    }
    // SAFETY: the blocks wrote every (column, row) position.
    unsafe { spectrum.set_len(len) };
    t.column_fft().process_with_scratch(spectrum, scratch);
    for block in 0..t.output_blocks() {
        // SAFETY: the caller's contract.
        unsafe { t.output(spectrum, block, out, buffers) };
    }
}

/// `Re(F_N · x · F_W)` of each sample of `x` (`[b, n, w]`, row-major),
/// orthonormal. `x` holds `b·n·w` values (the caller checks).
pub(crate) fn real_fft2_slice(x: &[f32], b: usize, n: usize, w: usize) -> Vec<f32> {
    if n.is_multiple_of(2) {
        transform(&paired::Paired::new(n, w), x, b, n, w)
    } else {
        transform(&general::General::new(n, w), x, b, n, w)
    }
}

/// With at least as many samples as threads, each sample goes through all
/// three passes on one thread; with fewer, each pass is spread over every
/// thread by blocks. Both orders compute every value with the same
/// operations, so the result is the same.
fn transform<T: Passes>(t: &T, x: &[f32], b: usize, n: usize, w: usize) -> Vec<f32> {
    let total = b * n * w;
    debug_assert_eq!(x.len(), total);
    if total == 0 {
        return Vec::new();
    }
    let mut out: Vec<f32> = Vec::with_capacity(total);
    let out_values = Shared(out.as_mut_ptr());

    if b >= rayon::current_num_threads() {
        (0..b).into_par_iter().for_each_init(
            || (Vec::new(), column_scratch(t), t.buffers()),
            |(spectrum, scratch, buffers), s| {
                let at = s * n * w;
                // SAFETY: sample `s`'s `n·w` values are this task's.
                unsafe {
                    sample(
                        t,
                        &x[at..at + n * w],
                        out_values.ptr().add(at),
                        spectrum,
                        scratch,
                        buffers,
                    )
                };
            },
        );
    } else {
        let len = t.spectrum_len();
        // Pass 1 over (sample, block) tasks.
        let blocks = t.row_blocks();
        let mut spectrum: Vec<Complex32> = Vec::with_capacity(b * len);
        let spectrum_out = Shared(spectrum.as_mut_ptr());
        (0..b * blocks).into_par_iter().for_each_init(
            || t.buffers(),
            |buffers, task| {
                let (s, block) = (task / blocks, task % blocks);
                // SAFETY: this sample's spectrum, at this task's block only.
                unsafe {
                    let spectrum = spectrum_out.ptr().add(s * len);
                    t.rows(&x[s * n * w..(s + 1) * n * w], block, spectrum, buffers)
                };
            },
        );
        // SAFETY: pass 1 wrote every (sample, column, row) position.
        unsafe { spectrum.set_len(b * len) };
        // Pass 2: the complex FFT down each column (contiguous now).
        let column_len = t.column_fft().len();
        let columns_per_task = (COLUMN_VALUES_PER_TASK / column_len).max(1);
        spectrum
            .par_chunks_mut(columns_per_task * column_len)
            .for_each_init(
                || column_scratch(t),
                |scratch, columns| t.column_fft().process_with_scratch(columns, scratch),
            );
        // Pass 3 over (sample, block) tasks.
        let (spectrum, blocks) = (&spectrum, t.output_blocks());
        (0..b * blocks).into_par_iter().for_each_init(
            || t.buffers(),
            |buffers, task| {
                let (s, block) = (task / blocks, task % blocks);
                let columns = &spectrum[s * len..(s + 1) * len];
                // SAFETY: this sample's output, at this task's block only.
                unsafe { t.output(columns, block, out_values.ptr().add(s * n * w), buffers) };
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
