//! Layer and group normalisation as one fused pass each way on the CPU.
//!
//! Built from tensor operations, a normalisation is about nine passes over
//! its input forward (mean, centring, square, mean, add, root, divide,
//! scale, shift) and more backward, each allocating a full-size result.
//! Here each row (a token's features, or one sample's group of channels
//! with all their cells) is read twice forward (statistics, then the
//! normalised and scaled values) and three times backward, on all cores.
//!
//! Both norms are one map over rows of `n` values,
//! `y = (x − μ)/√(σ² + ε)·γ_c + β_c` with the biased variance, where the
//! channel `c` of value `j` of row `r` is `(r mod groups)·per_group + j / run`:
//! a layer norm is one group with `run = 1` (`c = j`), a group norm over
//! `[B, C, cells]` has `run = cells` and `per_group = C / groups`. Sums over
//! a row run in float64 from float32 partial sums of fixed blocks, the weight
//! and bias gradients add per-task partial sums in task order, and tasks are
//! fixed by the shapes:
//! results do not depend on the number of threads.
//!
//! ```
//! use burn::tensor::{Device, Tensor, TensorData};
//! use idx_flow_kernels::norm::layer_norm;
//! let device = Device::default();
//! let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0, 4.0, 4.0], [2, 3]), &device);
//! let y: Vec<f32> = layer_norm(x, None, None, 1e-5)?.into_data().iter().collect();
//! assert!((y[0] + 1.224_74).abs() < 1e-4 && y[1].abs() < 1e-6 && y[3] == 0.0);
//! # Ok::<(), idx_flow_kernels::Error>(())
//! ```

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::tensor::Tensor;
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;

use crate::cpu::{f32_tensor, floats, output};
use crate::pointwise::{on_flex, require_flex};
use crate::{Error, Result};

/// How a tensor's values form rows and channels (see the module's description).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NormLayout {
    /// Values per row (normalised together).
    pub n: usize,
    /// Groups: row `r` belongs to group `r mod groups`.
    pub groups: usize,
    /// Channels per group.
    pub per_group: usize,
    /// Consecutive values of a row sharing one channel.
    pub run: usize,
    /// Added to the variance.
    pub eps: f32,
}

impl NormLayout {
    /// Channels `C` (the length of the weight and the bias).
    pub fn channels(&self) -> usize {
        self.groups * self.per_group
    }

    /// The first channel of row `r`.
    fn base(&self, r: usize) -> usize {
        (r % self.groups) * self.per_group
    }
}

/// Values per parallel task at least (whole rows).
const TASK_VALUES: usize = 1 << 15;

/// Values summed in float32 before joining the row's float64 sum.
const BLOCK: usize = 256;

/// The three kernels as backend operations.
#[backend_extension(Flex, Autodiff)]
pub trait NormKernels: Backend {
    /// The normalised, scaled and shifted `x` (rows of `layout.n`).
    fn norm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        layout: NormLayout,
    ) -> FloatTensor<Self>;
    /// The input gradient for the output gradient `dy`.
    fn norm_grad_input(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        layout: NormLayout,
    ) -> FloatTensor<Self>;
    /// `[2, C]`: the weight gradient `Σ dy·x̂` and the bias gradient `Σ dy` per channel.
    fn norm_grad_affine(
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        layout: NormLayout,
    ) -> FloatTensor<Self>;
}

/// `Σ f(v)` over `row` in float64, from float32 sums of eight lanes per block.
#[inline(always)]
fn row_sum(row: &[f32], f: impl Fn(usize, f32) -> f32) -> f64 {
    let mut total = 0f64;
    for (b, block) in row.chunks(BLOCK).enumerate() {
        let mut lanes = [0f32; 8];
        for (i, v) in block.iter().enumerate() {
            lanes[i % 8] += f(b * BLOCK + i, *v);
        }
        total += lanes.iter().map(|&l| f64::from(l)).sum::<f64>();
    }
    total
}

/// `(Σ g, Σ g·x̂)` over a row in one pass (float64 from float32 sums of
/// eight lanes per block), `x̂ = (x − μ)·rstd`.
#[inline(always)]
fn row_sums(g: &[f32], x: &[f32], mean: f32, rstd: f32) -> (f64, f64) {
    let (mut sg, mut sgx) = (0f64, 0f64);
    for (gb, xb) in g.chunks(BLOCK).zip(x.chunks(BLOCK)) {
        let (mut lg, mut lgx) = ([0f32; 8], [0f32; 8]);
        for (i, (g, x)) in gb.iter().zip(xb).enumerate() {
            lg[i % 8] += g;
            lgx[i % 8] += g * ((x - mean) * rstd);
        }
        sg += lg.iter().map(|&l| f64::from(l)).sum::<f64>();
        sgx += lgx.iter().map(|&l| f64::from(l)).sum::<f64>();
    }
    (sg, sgx)
}

/// `(μ, 1/√(σ² + ε))` of a row (two passes: no cancellation).
#[inline(always)]
fn stats(row: &[f32], eps: f32) -> (f32, f32) {
    let n = row.len() as f64;
    let mean = (row_sum(row, |_, v| v) / n) as f32;
    let var = row_sum(row, |_, v| (v - mean) * (v - mean)) / n;
    (mean, (1.0 / (var + f64::from(eps)).sqrt()) as f32)
}

/// Rows per task.
fn task_rows(n: usize) -> usize {
    TASK_VALUES.div_ceil(n.max(1))
}

/// Calls `f(c, range)` for each run of one channel in a row starting at channel `base`.
#[inline(always)]
fn runs(l: &NormLayout, base: usize, mut f: impl FnMut(usize, std::ops::Range<usize>)) {
    for (i, start) in (0..l.n).step_by(l.run).enumerate() {
        f(base + i, start..(start + l.run).min(l.n));
    }
}

with_wide_vectors! {
    /// Forward over the rows `xt` (the first has index `r0`) into `yt`.
    fn forward_task(xt: &[f32], w: &[f32], b: &[f32], l: &NormLayout, r0: usize, yt: &mut [f32]) {
        for (i, (x, y)) in xt.chunks_exact(l.n).zip(yt.chunks_exact_mut(l.n)).enumerate() {
            let (mean, rstd) = stats(x, l.eps);
            let base = l.base(r0 + i);
            if l.run == 1 {
                let (w, b) = (&w[base..base + l.n], &b[base..base + l.n]);
                for ((y, x), (w, b)) in y.iter_mut().zip(x).zip(w.iter().zip(b)) {
                    *y = (x - mean) * rstd * w + b;
                }
            } else {
                runs(l, base, |c, range| {
                    let (g, s) = (rstd * w[c], b[c]);
                    for (y, x) in y[range.clone()].iter_mut().zip(&x[range]) {
                        *y = (x - mean) * g + s;
                    }
                });
            }
        }
    }
}

with_wide_vectors! {
    /// Input gradient over the rows `xt` (the first has index `r0`):
    /// `dx = rstd·(g − mean(g) − x̂·mean(g·x̂))` with `g = dy·γ`.
    fn grad_input_task(
        xt: &[f32],
        w: &[f32],
        dyt: &[f32],
        l: &NormLayout,
        r0: usize,
        dxt: &mut [f32],
    ) {
        let n = l.n as f64;
        for (i, ((x, dy), dx)) in xt
            .chunks_exact(l.n)
            .zip(dyt.chunks_exact(l.n))
            .zip(dxt.chunks_exact_mut(l.n))
            .enumerate()
        {
            let (mean, rstd) = stats(x, l.eps);
            let base = l.base(r0 + i);
            // γ of value j, then g = dy·γ into dx as scratch.
            if l.run == 1 {
                for ((d, g), w) in dx.iter_mut().zip(dy).zip(&w[base..base + l.n]) {
                    *d = g * w;
                }
            } else {
                runs(l, base, |c, range| {
                    for (d, g) in dx[range.clone()].iter_mut().zip(&dy[range]) {
                        *d = g * w[c];
                    }
                });
            }
            let (sum_g, sum_gx) = row_sums(dx, x, mean, rstd);
            let (mean_g, mean_gx) = ((sum_g / n) as f32, (sum_gx / n) as f32);
            for (d, x) in dx.iter_mut().zip(x) {
                let xhat = (x - mean) * rstd;
                *d = rstd * (*d - mean_g - xhat * mean_gx);
            }
        }
    }
}

with_wide_vectors! {
    /// Weight and bias gradients of the rows `xt` (the first has index
    /// `r0`), added into `acc` `[2, C]`.
    fn grad_affine_task(xt: &[f32], dyt: &[f32], l: &NormLayout, r0: usize, acc: &mut [f64]) {
        let channels = l.channels();
        if l.run == 1 {
            // Per value: the task's rows summed in float32 (a few hundred
            // terms at most), vectorised, then joined in float64.
            let mut part = vec![0f32; 2 * channels];
            let (dw, db) = part.split_at_mut(channels);
            for (i, (x, dy)) in xt.chunks_exact(l.n).zip(dyt.chunks_exact(l.n)).enumerate() {
                let (mean, rstd) = stats(x, l.eps);
                let base = l.base(r0 + i);
                let (dw, db) = (&mut dw[base..base + l.n], &mut db[base..base + l.n]);
                for (((w, b), x), g) in dw.iter_mut().zip(db.iter_mut()).zip(x).zip(dy) {
                    *w += g * ((x - mean) * rstd);
                    *b += g;
                }
            }
            for (a, p) in acc.iter_mut().zip(&part) {
                *a += f64::from(*p);
            }
            return;
        }
        let (dw, db) = acc.split_at_mut(channels);
        for (i, (x, dy)) in xt.chunks_exact(l.n).zip(dyt.chunks_exact(l.n)).enumerate() {
            let (mean, rstd) = stats(x, l.eps);
            let base = l.base(r0 + i);
            {
                runs(l, base, |c, range| {
                    let (sg, sgx) = row_sums(&dy[range.clone()], &x[range], mean, rstd);
                    dw[c] += sgx;
                    db[c] += sg;
                });
            }
        }
    }
}

/// The forward on a slice.
pub(crate) fn forward(x: &[f32], w: &[f32], b: &[f32], l: &NormLayout) -> Vec<f32> {
    let rows = task_rows(l.n);
    let mut y = vec![0f32; x.len()];
    y.par_chunks_mut(rows * l.n)
        .zip(x.par_chunks(rows * l.n))
        .enumerate()
        .for_each(|(t, (yt, xt))| forward_task(xt, w, b, l, t * rows, yt));
    y
}

/// The input gradient on slices.
pub(crate) fn grad_input(x: &[f32], w: &[f32], dy: &[f32], l: &NormLayout) -> Vec<f32> {
    let rows = task_rows(l.n);
    let mut dx = vec![0f32; x.len()];
    dx.par_chunks_mut(rows * l.n)
        .zip(x.par_chunks(rows * l.n).zip(dy.par_chunks(rows * l.n)))
        .enumerate()
        .for_each(|(t, (dxt, (xt, dyt)))| grad_input_task(xt, w, dyt, l, t * rows, dxt));
    dx
}

/// `[2, C]` weight and bias gradients on slices: per-task partial sums in
/// float64, added in task order.
pub(crate) fn grad_affine(x: &[f32], dy: &[f32], l: &NormLayout) -> Vec<f32> {
    let rows = task_rows(l.n);
    let parts: Vec<Vec<f64>> = x
        .par_chunks(rows * l.n)
        .zip(dy.par_chunks(rows * l.n))
        .enumerate()
        .map(|(t, (xt, dyt))| {
            let mut acc = vec![0f64; 2 * l.channels()];
            grad_affine_task(xt, dyt, l, t * rows, &mut acc);
            acc
        })
        .collect();
    let mut total = vec![0f64; 2 * l.channels()];
    for part in &parts {
        for (t, p) in total.iter_mut().zip(part) {
            *t += p;
        }
    }
    total.into_iter().map(|v| v as f32).collect()
}

impl NormKernels for Flex {
    fn norm(x: FlexTensor, weight: FlexTensor, bias: FlexTensor, l: NormLayout) -> FlexTensor {
        let shape = x.layout().shape().to_vec();
        let ((x, dtype), (w, _), (b, _)) = (f32_tensor(x), f32_tensor(weight), f32_tensor(bias));
        output(
            forward(floats(&x), floats(&w), floats(&b), &l),
            shape,
            dtype,
        )
    }

    fn norm_grad_input(
        x: FlexTensor,
        weight: FlexTensor,
        dy: FlexTensor,
        l: NormLayout,
    ) -> FlexTensor {
        let shape = x.layout().shape().to_vec();
        let ((x, dtype), (w, _), (dy, _)) = (f32_tensor(x), f32_tensor(weight), f32_tensor(dy));
        output(
            grad_input(floats(&x), floats(&w), floats(&dy), &l),
            shape,
            dtype,
        )
    }

    fn norm_grad_affine(x: FlexTensor, dy: FlexTensor, l: NormLayout) -> FlexTensor {
        let ((x, dtype), (dy, _)) = (f32_tensor(x), f32_tensor(dy));
        output(
            grad_affine(floats(&x), floats(&dy), &l),
            vec![2, l.channels()],
            dtype,
        )
    }
}

pub(crate) use autodiff::register_affine_rows;

mod autodiff {
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{AutodiffBackend, autodiff::Autodiff};
    use burn::tensor::{Shape, Slice};

    use burn::backend::autodiff::NodeId;
    use burn::backend::{Backend, TensorMetadata};

    use super::{NormKernels, NormLayout};

    /// Registers rows 0 and 1 of `affine` `[2, C]` as the gradients of the
    /// weight and the bias nodes, for those of the two that are tracked.
    pub(crate) fn register_affine_rows<B: Backend>(
        grads: &mut Gradients,
        affine: &FloatTensor<B>,
        [weight, bias]: [Option<NodeId>; 2],
    ) {
        let c = affine.shape()[1];
        for (i, node) in [weight, bias].into_iter().enumerate() {
            if let Some(id) = node {
                let part =
                    B::float_slice(affine.clone(), &[Slice::from(i..i + 1), Slice::from(0..c)]);
                grads.register::<B>(id, B::float_reshape(part, Shape::new([c])));
            }
        }
    }

    #[derive(Debug)]
    struct NormBackward;

    impl<B: NormKernels> Backward<B, 3> for NormBackward {
        /// (x, weight, layout).
        type State = (FloatTensor<B>, FloatTensor<B>, NormLayout);

        fn backward(
            self,
            ops: Ops<Self::State, 3>,
            grads: &mut Gradients,
            _checkpointer: &mut Checkpointer,
        ) {
            let (x, weight, layout) = ops.state;
            let [x_node, w_node, b_node] = ops.parents;
            let dy = grads.consume::<B>(&ops.node);
            if w_node.is_some() || b_node.is_some() {
                let affine = B::norm_grad_affine(x.clone(), dy.clone(), layout);
                register_affine_rows::<B>(
                    grads,
                    &affine,
                    [w_node, b_node].map(|n| n.map(|n| n.id)),
                );
            }
            if let Some(node) = x_node {
                grads.register::<B>(node.id, B::norm_grad_input(x, weight, dy, layout));
            }
        }
    }

    impl<B: NormKernels, C: CheckpointStrategy> NormKernels for Autodiff<B, C> {
        fn norm(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            bias: FloatTensor<Self>,
            layout: NormLayout,
        ) -> FloatTensor<Self> {
            match NormBackward
                .prepare::<C>([x.node(), weight.node(), bias.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let (x, w) = (x.into_primitive(), weight.into_primitive());
                    let y = B::norm(x.clone(), w.clone(), bias.into_primitive(), layout);
                    prep.finish((x, w, layout), y)
                }
                OpsKind::UnTracked(prep) => prep.finish(B::norm(
                    x.into_primitive(),
                    weight.into_primitive(),
                    bias.into_primitive(),
                    layout,
                )),
            }
        }

        fn norm_grad_input(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            dy: FloatTensor<Self>,
            layout: NormLayout,
        ) -> FloatTensor<Self> {
            // Second derivatives are not provided: the result is a constant.
            Self::from_inner(B::norm_grad_input(
                x.into_primitive(),
                weight.into_primitive(),
                dy.into_primitive(),
                layout,
            ))
        }

        fn norm_grad_affine(
            x: FloatTensor<Self>,
            dy: FloatTensor<Self>,
            layout: NormLayout,
        ) -> FloatTensor<Self> {
            Self::from_inner(B::norm_grad_affine(
                x.into_primitive(),
                dy.into_primitive(),
                layout,
            ))
        }
    }
}

/// Whether the fused norms run on `device` (burn's CPU backend, with or
/// without autodiff).
pub fn available(device: &burn::tensor::Device) -> bool {
    on_flex(device)
}

/// `t` if it is `[channels]`, a `[channels]` tensor of `fill` if absent, an
/// error naming `what` otherwise.
pub(crate) fn affine_or(
    t: Option<Tensor<1>>,
    what: &str,
    channels: usize,
    fill: f32,
    device: &burn::tensor::Device,
) -> Result<Tensor<1>> {
    match t {
        Some(t) if t.dims() == [channels] => Ok(t),
        Some(t) => Err(Error::Shape {
            context: format!("norm {what}"),
            expected: format!("[{channels}]"),
            got: format!("{:?}", t.dims()),
        }),
        None => Ok(Tensor::full([channels], fill, device)),
    }
}

/// `eps` as the kernels take it: an error unless it is finite and at least
/// zero as a float32 (a negative one turns small variances into NaN).
pub(crate) fn check_eps(eps: f64) -> Result<f32> {
    let single = eps as f32;
    if single.is_finite() && single >= 0.0 {
        Ok(single)
    } else {
        Err(Error::arg(
            "eps",
            format!("{eps}: expected a finite value of at least 0 (float32)"),
        ))
    }
}

fn run<const D: usize>(
    x: Tensor<D>,
    weight: Option<Tensor<1>>,
    bias: Option<Tensor<1>>,
    layout: NormLayout,
) -> Result<Tensor<D>> {
    let device = x.device();
    require_flex(&device, "the fused norms run")?;
    if layout.n == 0 || x.dims().contains(&0) {
        // No values to normalise.
        return Ok(x);
    }
    let c = layout.channels();
    let weight = affine_or(weight, "weight", c, 1.0, &device)?;
    let bias = affine_or(bias, "bias", c, 0.0, &device)?;
    Ok(Tensor::from_dispatch(Dispatch::norm(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        layout,
    )))
}

/// PyTorch's `layer_norm` over the last axis of `x` (`[..., C]`), with an
/// optional weight and bias `[C]`; differentiable in all three. An error
/// off the CPU backend ([`available`]), for an affine of another length or
/// for a negative or non-finite `eps`.
pub fn layer_norm<const D: usize>(
    x: Tensor<D>,
    weight: Option<Tensor<1>>,
    bias: Option<Tensor<1>>,
    eps: f64,
) -> Result<Tensor<D>> {
    let c = x.dims()[D - 1];
    let layout = NormLayout {
        n: c,
        groups: 1,
        per_group: c,
        run: 1,
        eps: check_eps(eps)?,
    };
    run(x, weight, bias, layout)
}

/// A group norm of `x` `[B, C, *cells]` (PyTorch's `group_norm`, Equinox's
/// `GroupNorm`): each sample's `groups` groups of channels normalised over
/// their channels and cells, then the per-channel weight and bias `[C]`.
/// An error off the CPU backend, for a rank below 2, for groups that do
/// not divide the channels or for a negative or non-finite `eps`.
pub fn group_norm<const D: usize>(
    x: Tensor<D>,
    groups: usize,
    weight: Option<Tensor<1>>,
    bias: Option<Tensor<1>>,
    eps: f64,
) -> Result<Tensor<D>> {
    let dims = x.dims();
    if D < 2 || groups == 0 || !dims[1].is_multiple_of(groups) {
        return Err(Error::arg(
            "groups",
            format!(
                "{groups} groups for an input {dims:?}: expected [B, C, ...] with C a multiple of them"
            ),
        ));
    }
    let cells: usize = dims[2..].iter().product();
    let per_group = dims[1] / groups;
    let layout = NormLayout {
        n: per_group * cells,
        groups,
        per_group,
        run: cells,
        eps: check_eps(eps)?,
    };
    run(x, weight, bias, layout)
}
