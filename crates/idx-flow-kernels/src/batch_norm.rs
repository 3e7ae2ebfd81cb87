//! Batch normalisation in training mode as one fused pass each way on the CPU.
//!
//! A batch norm over channels-last rows `x` `[M, C]` normalises each channel
//! (column) with its batch mean and biased variance, then scales and shifts
//! it: `y = (x − μ_c)·rstd_c·γ_c + β_c`, `rstd = 1/√(σ² + ε)`. Built from
//! tensor operations that is about ten passes over the input forward and
//! twenty backward, several of them reductions over the rows of a strided
//! column, each allocating a full-size result (in the main job's training
//! step, burn's reductions alone, many of them the batch norm's, took 6% of
//! a profile's samples). Here the statistics are two reading passes, the
//! forward one writing pass, and the backward one reading pass (`Σ dy·x̂`
//! and `Σ dy` per channel together, which are also the weight and bias
//! gradients) and one writing pass:
//! `dx = γ·rstd·(dy − Σdy/M − x̂·Σ(dy·x̂)/M)`.
//!
//! Sums over rows run in float64 from float32 sums of fixed blocks of rows;
//! tasks are fixed by the shapes and their partial sums are added in task
//! order, so results do not depend on the number of threads.
//!
//! ```
//! use burn::tensor::{Device, Tensor, TensorData};
//! use idx_flow_kernels::batch_norm::batch_norm_train;
//! let device = Device::default();
//! // Two channels over three rows: [1, 10], [2, 20], [3, 30].
//! let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 10.0, 2.0, 20.0, 3.0, 30.0], [3, 2]), &device);
//! let (y, stats) = batch_norm_train(x, None, None, 0.0)?;
//! let y: Vec<f32> = y.into_data().iter().collect();
//! let stats: Vec<f32> = stats.into_data().iter().collect();
//! assert!((y[0] + 1.224_74).abs() < 1e-4 && y[2].abs() < 1e-6 && (y[5] - 1.224_74).abs() < 1e-4);
//! assert_eq!(stats[..2], [2.0, 20.0]); // the means, then the biased variances
//! assert!((stats[3] - 200.0 / 3.0).abs() < 1e-4);
//! # Ok::<(), idx_flow_kernels::Error>(())
//! ```

use std::mem::MaybeUninit;

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::tensor::Tensor;
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;

use idx_flow_gather::with_channel_count;

use crate::cpu::{f32_tensor, floats, output, par_written};
use crate::norm::{affine_or, check_eps};
use crate::pointwise::require_flex;
use crate::{Error, Result};

/// Values per parallel task at least (whole rows).
const TASK_VALUES: usize = 1 << 15;

/// Rows summed in float32 before joining a channel's float64 sum.
const BLOCK_ROWS: usize = 64;

/// The kernels as backend operations, on rows `x` `[M, C]`; `stats` is
/// `[2, C]`, each channel's mean and biased variance over the rows (from
/// [`batch_norm_stats`](BatchNormKernels::batch_norm_stats) of the same `x`).
#[backend_extension(Flex, Autodiff)]
pub trait BatchNormKernels: Backend {
    /// `[2, C]`: the mean and the biased variance of each column of `x`.
    fn batch_norm_stats(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `(x − μ)·rstd·γ + β` per column; differentiable in `x` (through the
    /// batch statistics too), `weight` and `bias`.
    fn batch_norm_rows(
        x: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self>;
    /// `[2, C]`: `Σ dy·x̂` (the weight gradient) and `Σ dy` (the bias gradient).
    fn batch_norm_grad_sums(
        x: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self>;
    /// The input gradient for the output gradient `dy`, given its `sums`.
    fn batch_norm_grad_input(
        x: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        sums: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self>;
}

/// Rows per task for `c` channels.
fn task_rows(c: usize) -> usize {
    TASK_VALUES.div_ceil(c.max(1))
}

/// What [`column_sums`] adds up, per column `j` over the rows.
#[derive(Clone, Copy)]
enum ColumnSum<'a> {
    /// `Σ x`.
    Values,
    /// `Σ (x − μ_j)²`.
    Squares { mean: &'a [f32] },
    /// `Σ g·(x − μ_j)·rstd_j`, then `Σ g` (`g` the output gradient): two
    /// sums per column from one pass over `x` and `g`.
    ProjectionsAndGradients { mean: &'a [f32], rstd: &'a [f32] },
}

impl ColumnSum<'_> {
    /// Sums per column.
    fn per_column(self) -> usize {
        match self {
            ColumnSum::ProjectionsAndGradients { .. } => 2,
            _ => 1,
        }
    }
}

/// `acc[i] += Σ_rows` of `add(part, x_row, g_row)`'s terms (`acc` and
/// `part`: one or more sums per column), summed in float32 over blocks of
/// rows, then in float64.
#[inline(always)]
fn blocked(
    xt: &[f32],
    gt: &[f32],
    c: usize,
    acc: &mut [f64],
    add: impl Fn(&mut [f32], &[f32], &[f32]),
) {
    with_channel_count(
        c,
        #[inline(always)]
        |c| {
            let mut part = vec![0f32; acc.len()];
            for (xb, gb) in xt.chunks(BLOCK_ROWS * c).zip(gt.chunks(BLOCK_ROWS * c)) {
                part.fill(0.0);
                for (x, g) in xb.chunks_exact(c).zip(gb.chunks_exact(c)) {
                    add(&mut part, x, g);
                }
                for (a, p) in acc.iter_mut().zip(&part) {
                    *a += f64::from(*p);
                }
            }
        },
    );
}

with_wide_vectors! {
    /// Adds the column sums `what` of a task's rows `xt` (and `gt`, the
    /// output gradient's, for the projections) into `acc` `[C]`.
    fn column_sums_task(xt: &[f32], gt: &[f32], c: usize, what: ColumnSum<'_>, acc: &mut [f64]) {
        match what {
            ColumnSum::Values => blocked(xt, xt, c, acc, |p, x, _| {
                for (p, x) in p.iter_mut().zip(x) {
                    *p += x;
                }
            }),
            ColumnSum::Squares { mean } => blocked(xt, xt, c, acc, |p, x, _| {
                for ((p, x), m) in p.iter_mut().zip(x).zip(mean) {
                    *p += (x - m) * (x - m);
                }
            }),
            ColumnSum::ProjectionsAndGradients { mean, rstd } => blocked(xt, gt, c, acc, |p, x, g| {
                let (projections, gradients) = p.split_at_mut(c);
                for ((((p, x), g), m), r) in projections.iter_mut().zip(x).zip(g).zip(mean).zip(rstd) {
                    *p += g * ((x - m) * r);
                }
                for (p, g) in gradients.iter_mut().zip(g) {
                    *p += g;
                }
            }),
        }
    }
}

/// Per column sums `what` over all rows of `x` (and `g`): per-task float64
/// partial sums, added in task order. `[per_column · C]`, sum by sum.
fn column_sums(x: &[f32], g: &[f32], c: usize, what: ColumnSum<'_>) -> Vec<f64> {
    let width = what.per_column() * c;
    // At least 1: no channels means no values, and no tasks.
    let chunk = (task_rows(c) * c).max(1);
    let parts: Vec<Vec<f64>> = x
        .par_chunks(chunk)
        .zip(g.par_chunks(chunk))
        .map(|(xt, gt)| {
            let mut acc = vec![0f64; width];
            column_sums_task(xt, gt, c, what, &mut acc);
            acc
        })
        .collect();
    let mut total = vec![0f64; width];
    for part in &parts {
        for (t, p) in total.iter_mut().zip(part) {
            *t += p;
        }
    }
    total
}

/// `[2, C]` means and biased variances of the columns of `x` (two passes:
/// no cancellation).
pub(crate) fn stats(x: &[f32], c: usize) -> Vec<f32> {
    let m = (x.len() / c.max(1)) as f64;
    let mean: Vec<f32> = column_sums(x, x, c, ColumnSum::Values)
        .iter()
        .map(|s| (s / m) as f32)
        .collect();
    let var = column_sums(x, x, c, ColumnSum::Squares { mean: &mean });
    mean.iter()
        .copied()
        .chain(var.iter().map(|s| (s / m) as f32))
        .collect()
}

/// Each channel's `(μ, rstd)` from `[2, C]` statistics.
fn mean_rstd(stats: &[f32], eps: f32) -> (Vec<f32>, Vec<f32>) {
    let c = stats.len() / 2;
    let rstd = stats[c..]
        .iter()
        .map(|&v| (1.0 / (f64::from(v) + f64::from(eps)).sqrt()) as f32)
        .collect();
    (stats[..c].to_vec(), rstd)
}

with_wide_vectors! {
    /// `y = x·g + s` row by row, one channel's `g` and `s` per column.
    fn scale_shift_task(xt: &[f32], g: &[f32], s: &[f32], yt: &mut [MaybeUninit<f32>]) {
        with_channel_count(g.len(), #[inline(always)] |c| {
            for (x, y) in xt.chunks_exact(c).zip(yt.chunks_exact_mut(c)) {
                for (((y, x), g), s) in y.iter_mut().zip(x).zip(g).zip(s) {
                    y.write(x * g + s);
                }
            }
        });
    }
}

/// `x·g + s` per column over all rows, on all cores.
fn scale_shift(x: &[f32], g: &[f32], s: &[f32]) -> Vec<f32> {
    let chunk = task_rows(g.len()) * g.len();
    par_written(x.len(), chunk, |t, yt| {
        scale_shift_task(&x[t * chunk..][..yt.len()], g, s, yt)
    })
}

/// The forward on slices: `(x − μ)·rstd·γ + β` as `x·g + s` with
/// `g = rstd·γ`, `s = β − μ·g`.
pub(crate) fn forward(x: &[f32], stats: &[f32], w: &[f32], b: &[f32], eps: f32) -> Vec<f32> {
    let (mean, rstd) = mean_rstd(stats, eps);
    let g: Vec<f32> = rstd.iter().zip(w).map(|(r, w)| r * w).collect();
    let s: Vec<f32> = b
        .iter()
        .zip(&mean)
        .zip(&g)
        .map(|((b, m), g)| b - m * g)
        .collect();
    scale_shift(x, &g, &s)
}

/// `[2, C]`: `Σ dy·x̂` and `Σ dy` per column.
pub(crate) fn grad_sums(x: &[f32], stats: &[f32], dy: &[f32], eps: f32) -> Vec<f32> {
    let c = stats.len() / 2;
    let (mean, rstd) = mean_rstd(stats, eps);
    let what = ColumnSum::ProjectionsAndGradients {
        mean: &mean,
        rstd: &rstd,
    };
    column_sums(x, dy, c, what)
        .iter()
        .map(|&v| v as f32)
        .collect()
}

/// The input gradient on slices: `dx = γ·rstd·(dy − Σdy/M − x̂·Σ(dy·x̂)/M)`,
/// written as `dx = dy·a + x·b + d` per column.
pub(crate) fn grad_input(
    x: &[f32],
    stats: &[f32],
    w: &[f32],
    dy: &[f32],
    sums: &[f32],
    eps: f32,
) -> Vec<f32> {
    let c = w.len();
    let m = (x.len() / c.max(1)).max(1) as f32;
    let (mean, rstd) = mean_rstd(stats, eps);
    // dx = a·dy − a·mean(dy) − a·rstd·mean(dy·x̂)·(x − μ), a = γ·rstd.
    let a: Vec<f32> = w.iter().zip(&rstd).map(|(w, r)| w * r).collect();
    let bx: Vec<f32> = (0..c).map(|j| -a[j] * rstd[j] * (sums[j] / m)).collect();
    let d: Vec<f32> = (0..c)
        .map(|j| -a[j] * (sums[c + j] / m) - bx[j] * mean[j])
        .collect();
    let chunk = task_rows(c) * c;
    par_written(x.len(), chunk, |t, dxt| {
        let (xt, gt) = (&x[t * chunk..][..dxt.len()], &dy[t * chunk..][..dxt.len()]);
        grad_input_task(xt, gt, &a, &bx, &d, dxt)
    })
}

with_wide_vectors! {
    /// `dx = dy·a + x·b + d` row by row.
    fn grad_input_task(
        xt: &[f32],
        gt: &[f32],
        a: &[f32],
        b: &[f32],
        d: &[f32],
        dxt: &mut [MaybeUninit<f32>],
    ) {
        with_channel_count(a.len(), #[inline(always)] |c| {
            let rows = xt.chunks_exact(c).zip(gt.chunks_exact(c));
            for ((x, g), dx) in rows.zip(dxt.chunks_exact_mut(c)) {
                let coefficients = a.iter().zip(b).zip(d);
                for (((dx, x), g), ((a, b), d)) in dx.iter_mut().zip(x).zip(g).zip(coefficients) {
                    dx.write(g * a + x * b + d);
                }
            }
        });
    }
}

fn channels(stats: &FlexTensor) -> usize {
    stats.layout().shape()[1]
}

impl BatchNormKernels for Flex {
    fn batch_norm_stats(x: FlexTensor) -> FlexTensor {
        let c = x.layout().shape()[1];
        let (x, dtype) = f32_tensor(x);
        output(stats(floats(&x), c), vec![2, c], dtype)
    }

    fn batch_norm_rows(
        x: FlexTensor,
        stats: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        eps: f32,
    ) -> FlexTensor {
        let shape = x.layout().shape().to_vec();
        let ((x, dtype), (st, _)) = (f32_tensor(x), f32_tensor(stats));
        let ((w, _), (b, _)) = (f32_tensor(weight), f32_tensor(bias));
        let y = forward(floats(&x), floats(&st), floats(&w), floats(&b), eps);
        output(y, shape, dtype)
    }

    fn batch_norm_grad_sums(
        x: FlexTensor,
        stats: FlexTensor,
        dy: FlexTensor,
        eps: f32,
    ) -> FlexTensor {
        let c = channels(&stats);
        let ((x, dtype), (st, _), (dy, _)) = (f32_tensor(x), f32_tensor(stats), f32_tensor(dy));
        output(
            grad_sums(floats(&x), floats(&st), floats(&dy), eps),
            vec![2, c],
            dtype,
        )
    }

    fn batch_norm_grad_input(
        x: FlexTensor,
        stats: FlexTensor,
        weight: FlexTensor,
        dy: FlexTensor,
        sums: FlexTensor,
        eps: f32,
    ) -> FlexTensor {
        let shape = x.layout().shape().to_vec();
        let ((x, dtype), (st, _), (w, _)) = (f32_tensor(x), f32_tensor(stats), f32_tensor(weight));
        let ((dy, _), (sums, _)) = (f32_tensor(dy), f32_tensor(sums));
        let dx = grad_input(
            floats(&x),
            floats(&st),
            floats(&w),
            floats(&dy),
            floats(&sums),
            eps,
        );
        output(dx, shape, dtype)
    }
}

mod autodiff {
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{AutodiffBackend, autodiff::Autodiff};

    use super::BatchNormKernels;
    use crate::norm::register_affine_rows;

    #[derive(Debug)]
    struct BatchNormBackward;

    impl<B: BatchNormKernels> Backward<B, 3> for BatchNormBackward {
        /// (x, stats, weight, eps).
        type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, f32);

        fn backward(
            self,
            ops: Ops<Self::State, 3>,
            grads: &mut Gradients,
            _checkpointer: &mut Checkpointer,
        ) {
            let (x, stats, weight, eps) = ops.state;
            let [x_node, w_node, b_node] = ops.parents;
            let dy = grads.consume::<B>(&ops.node);
            let sums = B::batch_norm_grad_sums(x.clone(), stats.clone(), dy.clone(), eps);
            register_affine_rows::<B>(grads, &sums, [w_node, b_node].map(|n| n.map(|n| n.id)));
            if let Some(node) = x_node {
                let dx = B::batch_norm_grad_input(x, stats, weight, dy, sums, eps);
                grads.register::<B>(node.id, dx);
            }
        }
    }

    impl<B: BatchNormKernels, C: CheckpointStrategy> BatchNormKernels for Autodiff<B, C> {
        fn batch_norm_stats(x: FloatTensor<Self>) -> FloatTensor<Self> {
            // Statistics are not differentiated on their own: the batch
            // norm's backward accounts for them.
            Self::from_inner(B::batch_norm_stats(x.into_primitive()))
        }

        fn batch_norm_rows(
            x: FloatTensor<Self>,
            stats: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            bias: FloatTensor<Self>,
            eps: f32,
        ) -> FloatTensor<Self> {
            let stats = stats.into_primitive();
            match BatchNormBackward
                .prepare::<C>([x.node(), weight.node(), bias.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let (x, w) = (x.into_primitive(), weight.into_primitive());
                    let y = B::batch_norm_rows(
                        x.clone(),
                        stats.clone(),
                        w.clone(),
                        bias.into_primitive(),
                        eps,
                    );
                    prep.finish((x, stats, w, eps), y)
                }
                OpsKind::UnTracked(prep) => prep.finish(B::batch_norm_rows(
                    x.into_primitive(),
                    stats,
                    weight.into_primitive(),
                    bias.into_primitive(),
                    eps,
                )),
            }
        }

        fn batch_norm_grad_sums(
            x: FloatTensor<Self>,
            stats: FloatTensor<Self>,
            dy: FloatTensor<Self>,
            eps: f32,
        ) -> FloatTensor<Self> {
            // Second derivatives are not provided: the result is a constant.
            Self::from_inner(B::batch_norm_grad_sums(
                x.into_primitive(),
                stats.into_primitive(),
                dy.into_primitive(),
                eps,
            ))
        }

        fn batch_norm_grad_input(
            x: FloatTensor<Self>,
            stats: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            dy: FloatTensor<Self>,
            sums: FloatTensor<Self>,
            eps: f32,
        ) -> FloatTensor<Self> {
            Self::from_inner(B::batch_norm_grad_input(
                x.into_primitive(),
                stats.into_primitive(),
                weight.into_primitive(),
                dy.into_primitive(),
                sums.into_primitive(),
                eps,
            ))
        }
    }
}

/// PyTorch's `batch_norm` in training mode over rows `x` `[M, C]` (channels
/// last: each column normalised with its batch mean and biased variance),
/// with an optional weight and bias `[C]`; differentiable in all three.
/// Returns the output `[M, C]` and the statistics `[2, C]` (the means, then
/// the biased variances; not differentiable), from which a caller updates
/// its running statistics.
///
/// An error off the CPU backend ([`crate::norm::available`]), for no rows,
/// for an affine of another length or for a negative or non-finite `eps`.
pub fn batch_norm_train(
    x: Tensor<2>,
    weight: Option<Tensor<1>>,
    bias: Option<Tensor<1>>,
    eps: f64,
) -> Result<(Tensor<2>, Tensor<2>)> {
    require_flex(&x.device(), "the fused batch norm runs")?;
    let [m, c] = x.dims();
    if m == 0 {
        return Err(Error::Shape {
            context: "batch norm".into(),
            expected: format!("at least one row [M > 0, {c}]"),
            got: format!("[{m}, {c}]"),
        });
    }
    let eps = check_eps(eps)?;
    let device = x.device();
    let weight = affine_or(weight, "weight", c, 1.0, &device)?;
    let bias = affine_or(bias, "bias", c, 0.0, &device)?;
    if c == 0 {
        // No channels to normalise.
        return Ok((x, Tensor::zeros([2, 0], &device)));
    }
    let stats = Tensor::<2>::from_dispatch(Dispatch::batch_norm_stats(
        x.clone().detach().into_dispatch(),
    ));
    let y = Tensor::from_dispatch(Dispatch::batch_norm_rows(
        x.into_dispatch(),
        stats.clone().into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        eps,
    ));
    Ok((y, stats))
}
