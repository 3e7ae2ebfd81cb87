//! A native fast Fourier transform along any axis: complex or real input,
//! complex values or their real part out, any length (HEALPix rings and
//! token counts are rarely powers of two), on `rustfft`, as a backend
//! operation with its own backward.
//!
//! A complex tensor is a float tensor whose last axis holds `(re, im)`
//! pairs. One [`FftSpec`] describes a transform of length `n` along one
//! (logical) axis, unnormalised up to a `scale`:
//! `X[k] = scale · Σₙ x[n]·e^{∓2πi·kn/N}` (minus forward, plus inverse). The
//! input may be shorter than `n` along the axis (zero-padded: a spectrum
//! with only its lowest modes) and the output keeps the first `out_len`
//! values (a truncated spectrum); the input may be real, and the output
//! may be the real part only. Every such map is linear, and its adjoint is
//! again one of them (the other direction, input and output kinds and
//! lengths swapped), so the backward is one more transform ([`FftSpec::adjoint`]).
//!
//! On the CPU (flex) the rows are split over rayon's pool in blocks, each
//! gathered into a buffer (the axis need not be contiguous), transformed by
//! `rustfft`'s plan for its length (mixed radix, Bluestein for large primes)
//! and scattered back, in float32: results do not depend on the number of
//! threads. Other backends have no native transform here; the callers keep
//! their tensor-operation paths there ([`available`] tells which).
//!
//! ```
//! use burn::tensor::{Device, Tensor, TensorData};
//! use idx_flow_kernels::fft::{FftSpec, fft};
//! let device = Device::default();
//! // x = [1, 2, 3] (real): X[0] = 6, X[1] = −1.5 + 0.866i, X[2] = −1.5 − 0.866i,
//! // written as [re, im] pairs along a new last axis.
//! let x = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0], [3]), &device);
//! let spec = FftSpec::new(0, 3).real_input();
//! let y: Vec<f32> = fft::<1, 2>(x, spec)?.into_data().iter().collect();
//! assert!((y[0] - 6.0).abs() < 1e-5, "{y:?}");
//! assert!((y[2] + 1.5).abs() < 1e-5 && (y[3] - 0.866_025_4).abs() < 1e-5, "{y:?}");
//! # Ok::<(), idx_flow_kernels::Error>(())
//! ```

use std::sync::{Arc, Mutex, OnceLock};

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::tensor::Tensor;
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;
use rustfft::num_complex::Complex32;
use rustfft::{Fft, FftPlanner};

use crate::cpu::{f32_tensor, floats, output};
use crate::pointwise::{on_flex, require_flex};
use crate::{Error, Result};

/// One transform along one axis: what it reads, how long it is, what it writes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FftSpec {
    /// The axis transformed, counted without the trailing `(re, im)` axis of
    /// a complex tensor.
    pub axis: usize,
    /// Transform length `n`; the input's axis may be shorter (zero-padded).
    pub len: usize,
    /// `e^{+2πi·kn/N}` instead of `e^{−2πi·kn/N}`.
    pub inverse: bool,
    /// The input is real (no trailing pair axis).
    pub real_input: bool,
    /// Only the real part is written (no trailing pair axis).
    pub real_output: bool,
    /// Values kept along the axis in the output (`1..=len`): the first ones.
    pub out_len: usize,
    /// Factor on every output value (`1/√n` for an orthonormal transform).
    pub scale: f32,
    /// The input's values are the lowest and highest frequencies of a
    /// spectrum of `len` (the first `⌈in/2⌉` at `0..`, the other `⌊in/2⌋`
    /// ending at `len`), zeros between: the FNO's kept modes.
    pub input_ends: bool,
    /// The kept output values are the first `⌈out_len/2⌉` and the last
    /// `⌊out_len/2⌋` rather than the first `out_len`.
    pub output_ends: bool,
}

impl FftSpec {
    /// The forward, unnormalised, complex-to-complex transform of length
    /// `len` along `axis`, keeping every output value.
    pub fn new(axis: usize, len: usize) -> Self {
        Self {
            axis,
            len,
            inverse: false,
            real_input: false,
            real_output: false,
            out_len: len,
            scale: 1.0,
            input_ends: false,
            output_ends: false,
        }
    }

    /// The inverse direction (`e^{+2πi·kn/N}`, still unnormalised).
    pub fn inverse(mut self) -> Self {
        self.inverse = true;
        self
    }

    /// The input is real.
    pub fn real_input(mut self) -> Self {
        self.real_input = true;
        self
    }

    /// Only the real part of the result is written.
    pub fn real_output(mut self) -> Self {
        self.real_output = true;
        self
    }

    /// Keeps the first `out_len` output values along the axis.
    pub fn keep(mut self, out_len: usize) -> Self {
        self.out_len = out_len;
        self
    }

    /// Keeps the lowest `⌈out_len/2⌉` and the highest `⌊out_len/2⌋`
    /// output values (both ends of a spectrum), in that order.
    pub fn keep_ends(mut self, out_len: usize) -> Self {
        self.out_len = out_len;
        self.output_ends = true;
        self
    }

    /// Reads the input as both ends of a spectrum of `len` (see
    /// [`input_ends`](Self::input_ends)): the inverse of [`keep_ends`](Self::keep_ends).
    pub fn input_at_ends(mut self) -> Self {
        self.input_ends = true;
        self
    }

    /// Multiplies every output value by `scale`.
    pub fn scaled(mut self, scale: f32) -> Self {
        self.scale = scale;
        self
    }

    /// Orthonormal scaling, `1/√len`.
    pub fn orthonormal(self) -> Self {
        let scale = (1.0 / (self.len as f64).sqrt()) as f32;
        self.scaled(scale)
    }

    /// The adjoint map for an input of `in_len` values along the axis: the
    /// other direction, kinds and lengths swapped, the same scale. (Real
    /// input is the embedding `x ↦ x + 0i`, whose adjoint is the real part.)
    pub fn adjoint(self, in_len: usize) -> Self {
        Self {
            axis: self.axis,
            len: self.len,
            inverse: !self.inverse,
            real_input: self.real_output,
            real_output: self.real_input,
            out_len: in_len,
            scale: self.scale,
            input_ends: self.output_ends,
            output_ends: self.input_ends,
        }
    }

    /// The output shape for an input of `shape`, or what is wrong.
    pub fn output_shape(&self, shape: &[usize]) -> Result<Vec<usize>> {
        let logical = if self.real_input {
            shape.len()
        } else {
            if shape.last() != Some(&2) {
                return Err(Error::Shape {
                    context: "complex FFT input".into(),
                    expected: "[..., 2] (re, im) pairs".into(),
                    got: format!("{shape:?}"),
                });
            }
            shape.len() - 1
        };
        if self.axis >= logical {
            return Err(Error::arg(
                "axis",
                format!(
                    "axis {} does not exist in a tensor of {logical} value axes ({shape:?})",
                    self.axis
                ),
            ));
        }
        let in_len = shape[self.axis];
        if self.len == 0 || in_len > self.len || self.out_len == 0 || self.out_len > self.len {
            return Err(Error::arg(
                "len",
                format!(
                    "an FFT of length {} reads at most that many values and keeps 1 to {} \
                     (got {in_len} input values along axis {}, {} kept)",
                    self.len, self.len, self.axis, self.out_len
                ),
            ));
        }
        let mut out: Vec<usize> = shape[..logical].to_vec();
        out[self.axis] = self.out_len;
        if !self.real_output {
            out.push(2);
        }
        Ok(out)
    }
}

/// The transform as a backend operation.
#[backend_extension(Flex, Autodiff)]
pub trait FftKernels: Backend {
    /// `x` transformed as `spec` says (shapes checked by the caller).
    fn fft(x: FloatTensor<Self>, spec: FftSpec) -> FloatTensor<Self>;
}

/// Complex values per parallel task (whole rows are never split).
const TASK_VALUES: usize = 1 << 14;

/// Complex values per parallel task along a strided axis.
const STRIDED_TASK_VALUES: usize = 1 << 16;

/// Complex values of padding after each row of a task buffer.
const ROW_PAD: usize = 4;

/// `rustfft`'s plan for `n` in one direction, from one process-wide planner
/// (it caches plans and their twiddles).
pub(crate) fn plan(n: usize, inverse: bool) -> Arc<dyn Fft<f32>> {
    static PLANNER: OnceLock<Mutex<FftPlanner<f32>>> = OnceLock::new();
    let mut planner = PLANNER
        .get_or_init(|| Mutex::new(FftPlanner::new()))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if inverse {
        planner.plan_fft_inverse(n)
    } else {
        planner.plan_fft_forward(n)
    }
}

/// A pointer to the output that tasks write at disjoint positions.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: each task writes only the output elements of its own rows.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// Through a method, so that closures capture the whole (`Sync`) wrapper
    /// rather than its raw-pointer field.
    fn ptr(&self) -> *mut f32 {
        self.0
    }
}

/// Rows `first..first + count` of `[outer, inner]`, as runs that share
/// `o`: `f(task_row, o, i, len)` for rows `(o, i..i + len)`.
#[inline(always)]
fn for_segments(first: usize, count: usize, inner: usize, mut f: impl FnMut(Segment)) {
    let (mut o, mut i) = (first / inner, first % inner);
    let mut done = 0;
    while done < count {
        let len = (inner - i).min(count - done);
        f((done, o, i, len));
        done += len;
        o += 1;
        i = 0;
    }
}

/// What a task needs of one call, by value (so that the loops keep it in
/// registers rather than reloading it through references).
#[derive(Clone, Copy)]
struct Layout {
    len: usize,
    in_len: usize,
    out_len: usize,
    input_ends: bool,
    output_ends: bool,
    inner: usize,
    /// Distance between rows of a task buffer, in complex values.
    stride: usize,
    real_input: bool,
    real_output: bool,
    scale: f32,
}

/// Where value `k` of `count` sits in a row of `len`: at `k`, or, for both
/// ends of a spectrum, the upper `⌊count/2⌋` values at the row's end.
#[inline(always)]
fn position(k: usize, count: usize, len: usize, ends: bool) -> usize {
    if ends && k >= count - count / 2 {
        len - count + k
    } else {
        k
    }
}

impl Layout {
    #[inline(always)]
    fn in_pos(&self, k: usize) -> usize {
        position(k, self.in_len, self.len, self.input_ends)
    }

    #[inline(always)]
    fn out_pos(&self, k: usize) -> usize {
        position(k, self.out_len, self.len, self.output_ends)
    }

    /// The positions of a task row left zero by the input: after it, or
    /// between its two ends.
    fn zero_span(&self) -> std::ops::Range<usize> {
        if self.input_ends {
            let low = self.in_len - self.in_len / 2;
            low..self.len - self.in_len / 2
        } else {
            self.in_len..self.len
        }
    }

    /// Copies rows `(o, i0..i0 + len)` of `x` into task rows `r0..r0 + len`.
    #[inline(always)]
    fn gather(&self, x: &[f32], buf: &mut [Complex32], (r0, o, i0, len): Segment) {
        let (in_len, inner, stride) = (self.in_len, self.inner, self.stride);
        if inner == 1 {
            // The axis is contiguous: one row is one run of values (two
            // for both ends of a spectrum).
            let row = &mut buf[r0 * stride..r0 * stride + self.len];
            let zeros = self.zero_span();
            let (head, tail) = row.split_at_mut(zeros.start);
            let tail = &mut tail[zeros.len()..];
            // Each part as its own loop over slices (a chained iterator
            // would not vectorise).
            let low = head.len();
            if self.real_input {
                let src = &x[o * in_len..(o + 1) * in_len];
                for (dst, src) in [(head, &src[..low]), (tail, &src[low..])] {
                    for (d, &s) in dst.iter_mut().zip(src) {
                        *d = Complex32::new(s, 0.0);
                    }
                }
            } else {
                let src = &x[2 * o * in_len..2 * (o + 1) * in_len];
                for (dst, src) in [(head, &src[..2 * low]), (tail, &src[2 * low..])] {
                    for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                        *d = Complex32::new(s[0], s[1]);
                    }
                }
            }
            return;
        }
        // Strided axis: for each position along it, `len` neighbouring rows
        // are one run of values.
        let width = if self.real_input { 1 } else { 2 };
        for k in 0..in_len {
            let base = ((o * in_len + k) * inner + i0) * width;
            let src = &x[base..base + len * width];
            let column = buf[r0 * stride + self.in_pos(k)..]
                .iter_mut()
                .step_by(stride);
            if self.real_input {
                for (d, &s) in column.zip(src) {
                    *d = Complex32::new(s, 0.0);
                }
            } else {
                for (d, s) in column.zip(src.chunks_exact(2)) {
                    *d = Complex32::new(s[0], s[1]);
                }
            }
        }
    }

    /// Writes task rows `r0..r0 + len` (scaled) to rows `(o, i0..i0 + len)`
    /// of the output.
    ///
    /// # Safety
    /// `out` points to the whole output, and no other task writes these rows.
    #[inline(always)]
    unsafe fn scatter(&self, buf: &[Complex32], out: *mut f32, (r0, o, i0, len): Segment) {
        let (out_len, inner, stride, scale) = (self.out_len, self.inner, self.stride, self.scale);
        let width = if self.real_output { 1 } else { 2 };
        // Each (o, k) holds rows (o, i0..i0 + len) as one run of values.
        let runs = if inner == 1 { 1 } else { out_len };
        let run_len = if inner == 1 { out_len } else { len };
        for k in 0..runs {
            let at = ((o * out_len + k) * inner + i0) * width;
            // SAFETY: the run lies inside `out` and belongs to this task's
            // rows only (the caller's promise).
            let dst = unsafe { std::slice::from_raw_parts_mut(out.add(at), run_len * width) };
            if inner == 1 {
                let row = &buf[r0 * stride..r0 * stride + self.len];
                let high = if self.output_ends { out_len / 2 } else { 0 };
                let width = if self.real_output { 1 } else { 2 };
                let (first, second) = dst.split_at_mut((out_len - high) * width);
                write_run(first, row[..out_len - high].iter(), self.real_output, scale);
                write_run(
                    second,
                    row[self.len - high..].iter(),
                    self.real_output,
                    scale,
                );
            } else {
                let src = buf[r0 * stride + self.out_pos(k)..].iter().step_by(stride);
                write_run(dst, src, self.real_output, scale);
            }
        }
    }
}

/// `dst` (real values or `(re, im)` pairs) from the scaled `src`.
#[inline(always)]
fn write_run<'a>(
    dst: &mut [f32],
    src: impl Iterator<Item = &'a Complex32>,
    real_output: bool,
    scale: f32,
) {
    if real_output {
        for (d, v) in dst.iter_mut().zip(src) {
            *d = v.re * scale;
        }
    } else {
        for (d, v) in dst.chunks_exact_mut(2).zip(src) {
            d[0] = v.re * scale;
            d[1] = v.im * scale;
        }
    }
}

/// `(task_row, o, i, len)`: rows `(o, i..i + len)`, the first at `task_row`
/// of the task buffer.
type Segment = (usize, usize, usize, usize);

/// `x` viewed as `[outer, in_len, inner]` (values real or `(re, im)`
/// pairs), transformed along the middle axis into `[outer, out_len, inner]`
/// (`spec.axis` is not read: the axis is the middle one). An error if `x`
/// does not hold that many values or `spec` cannot read `in_len` of them.
pub fn transform(
    x: &[f32],
    outer: usize,
    in_len: usize,
    inner: usize,
    spec: &FftSpec,
) -> Result<Vec<f32>> {
    let n = spec.len;
    let width = if spec.real_input { 1 } else { 2 };
    let expected = outer * in_len * inner * width;
    if x.len() != expected {
        return Err(Error::Shape {
            context: "FFT input values".into(),
            expected: format!("{outer}·{in_len}·{inner}·{width} = {expected} values"),
            got: format!("{} values", x.len()),
        });
    }
    if n == 0 || in_len > n || spec.out_len == 0 || spec.out_len > n {
        return Err(Error::arg(
            "len",
            format!(
                "an FFT of length {n} reads at most that many values and keeps 1 to {n} \
                 (got {in_len} input values, {} kept)",
                spec.out_len
            ),
        ));
    }
    let layout = Layout {
        len: n,
        in_len,
        out_len: spec.out_len,
        input_ends: spec.input_ends,
        output_ends: spec.output_ends,
        inner,
        // Rows sit `stride` apart in the task buffer: a power-of-two `n`
        // would put the column-wise gather's writes in one cache set.
        stride: n + ROW_PAD,
        real_input: spec.real_input,
        real_output: spec.real_output,
        scale: spec.scale,
    };
    let out_width = if spec.real_output { 1 } else { 2 };
    let mut out = vec![0f32; outer * spec.out_len * inner * out_width];
    let rows = outer * inner;
    if rows == 0 {
        return Ok(out);
    }
    let fft = plan(n, spec.inverse);
    let fft = &*fft;
    // A strided axis is read in runs of the task's neighbouring rows: wider
    // tasks make longer runs, which the prefetcher can follow.
    let task_values = if inner == 1 {
        TASK_VALUES
    } else {
        STRIDED_TASK_VALUES
    };
    let rows_per_task = (task_values / n).clamp(1, rows);
    let shared = SharedOut(out.as_mut_ptr());
    (0..rows.div_ceil(rows_per_task))
        .into_par_iter()
        .for_each_init(
            || {
                (
                    vec![Complex32::new(0.0, 0.0); rows_per_task * layout.stride],
                    vec![Complex32::new(0.0, 0.0); fft.get_inplace_scratch_len()],
                )
            },
            move |(buf, scratch), task| {
                let out_ptr = shared.ptr();
                let first = task * rows_per_task;
                let count = rows_per_task.min(rows - first);
                for_segments(first, count, inner, |segment| {
                    layout.gather(x, buf, segment)
                });
                for r in 0..count {
                    let row = &mut buf[r * layout.stride..r * layout.stride + n];
                    row[layout.zero_span()].fill(Complex32::new(0.0, 0.0));
                    fft.process_with_scratch(row, scratch);
                }
                // SAFETY: the task's rows are its own; `out` outlives the loop.
                for_segments(first, count, inner, |segment| unsafe {
                    layout.scatter(buf, out_ptr, segment)
                });
            },
        );
    Ok(out)
}

/// `(outer, in_len, inner)` of an input of `shape` for `spec`.
fn split(shape: &[usize], spec: &FftSpec) -> (usize, usize, usize) {
    let logical = if spec.real_input {
        shape.len()
    } else {
        shape.len() - 1
    };
    let outer = shape[..spec.axis].iter().product();
    let inner = shape[spec.axis + 1..logical].iter().product();
    (outer, shape[spec.axis], inner)
}

impl FftKernels for Flex {
    fn fft(x: FlexTensor, spec: FftSpec) -> FlexTensor {
        let shape = x.layout().shape().to_vec();
        let out_shape = spec
            .output_shape(&shape)
            .expect("FFT shapes are checked before dispatch");
        let (outer, in_len, inner) = split(&shape, &spec);
        let (x, dtype) = f32_tensor(x);
        output(
            transform(floats(&x), outer, in_len, inner, &spec)
                .expect("FFT shapes are checked before dispatch"),
            out_shape,
            dtype,
        )
    }
}

mod autodiff {
    use burn::backend::TensorMetadata;
    use burn::backend::autodiff::Autodiff;
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::tensor::FloatTensor;

    use super::{FftKernels, FftSpec};

    /// The gradient of a linear map is its adjoint applied to the output gradient.
    #[derive(Debug)]
    struct FftBackward;

    impl<B: FftKernels> Backward<B, 1> for FftBackward {
        /// The adjoint transform.
        type State = FftSpec;

        fn backward(
            self,
            ops: Ops<Self::State, 1>,
            grads: &mut Gradients,
            _checkpointer: &mut Checkpointer,
        ) {
            let adjoint = ops.state;
            let [x_node] = ops.parents;
            let dy = grads.consume::<B>(&ops.node);
            if let Some(node) = x_node {
                grads.register::<B>(node.id, B::fft(dy, adjoint));
            }
        }
    }

    impl<B: FftKernels, C: CheckpointStrategy> FftKernels for Autodiff<B, C> {
        fn fft(x: FloatTensor<Self>, spec: FftSpec) -> FloatTensor<Self> {
            let in_len = x.primitive().shape()[spec.axis];
            match FftBackward
                .prepare::<C>([x.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let y = B::fft(x.into_primitive(), spec);
                    prep.finish(spec.adjoint(in_len), y)
                }
                OpsKind::UnTracked(prep) => prep.finish(B::fft(x.into_primitive(), spec)),
            }
        }
    }
}

/// Whether [`fft`] runs natively on tensors of `device` (burn's CPU backend,
/// with or without autodiff).
pub fn available(device: &burn::tensor::Device) -> bool {
    on_flex(device)
}

/// `x` (`DI` axes) transformed as `spec` says into `DO` axes (one more for
/// a real input and complex output, one fewer the other way round).
/// Differentiable.
///
/// An error when the device has no native transform (see [`available`]),
/// when `x`'s shape does not fit `spec` (a complex input without its
/// trailing 2, a missing axis, more input values than the length) or when
/// `DO` is not the output's rank.
pub fn fft<const DI: usize, const DO: usize>(x: Tensor<DI>, spec: FftSpec) -> Result<Tensor<DO>> {
    require_flex(&x.device(), "the native FFT runs")?;
    let out = spec.output_shape(&x.dims())?;
    if out.len() != DO {
        return Err(Error::Shape {
            context: "FFT output rank".into(),
            expected: format!("{} axes ({out:?})", out.len()),
            got: format!("Tensor<{DO}>"),
        });
    }
    Ok(Tensor::from_dispatch(Dispatch::fft(
        x.into_dispatch(),
        spec,
    )))
}
