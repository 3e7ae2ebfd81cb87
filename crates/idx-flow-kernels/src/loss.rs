//! The squared-error losses as one fused operation each way: the forward
//! reads the prediction and the target once and returns the scalar; the
//! backward writes `∂/∂y` in one pass (and its negation for a tracked
//! target).
//!
//! Built from burn's tensor operations, `(y − t).powi_scalar(2).mean()` is
//! three operations forward, each a pass over memory (the difference, its
//! square, the sum), and more backward (a tensor of ones, two products and a
//! sum of the square's two branches): about 8 ms of FourierMixing's 22 ms training
//! step on `[8, 1024, 256]` on the 2-core box, against about 3 ms for
//! PyTorch's. Here the sum runs over fixed chunks of values on rayon's pool,
//! each chunk in eight float64 lanes, and the chunk sums are added in
//! order: the loss does not depend on the number of threads.
//!
//! On other backends (the GPU ones) the same functions compose burn's
//! tensor operations.
//!
//! ```
//! use burn::tensor::{Device, Tensor, TensorData};
//! use idx_flow_kernels::loss::mse_loss;
//! let device = Device::default();
//! let y = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 2.0, 4.0], [3]), &device);
//! let t = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 0.0, 1.0], [3]), &device);
//! // (0² + 2² + 3²) / 3
//! let loss: f32 = mse_loss(y, t)?.into_scalar();
//! assert!((loss - 13.0 / 3.0).abs() < 1e-6);
//! # Ok::<(), idx_flow_kernels::Error>(())
//! ```

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::tensor::{Tensor, TensorData};
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;

use crate::cpu::{f32_tensor, floats, output, par_written};
use crate::pointwise::on_flex;
use crate::{Error, Result};

/// Values per parallel chunk of the sum and of the gradient.
const CHUNK: usize = 1 << 14;

with_wide_vectors! {
    /// `Σ w·(y − t)²` over one chunk (`w` = 1 without weights), in eight
    /// float64 lanes added at the end.
    fn chunk_sum(y: &[f32], t: &[f32], w: Option<&[f32]>, total: &mut f64) {
        let mut lanes = [0f64; 8];
        let (yc, tc) = (y.chunks_exact(8), t.chunks_exact(8));
        let (yr, tr) = (yc.remainder(), tc.remainder());
        match w {
            None => {
                for (y8, t8) in yc.zip(tc) {
                    for l in 0..8 {
                        let d = y8[l] - t8[l];
                        lanes[l] += f64::from(d * d);
                    }
                }
                for (l, (y, t)) in yr.iter().zip(tr).enumerate() {
                    let d = y - t;
                    lanes[l] += f64::from(d * d);
                }
            }
            Some(w) => {
                let wc = w.chunks_exact(8);
                let wr = wc.remainder();
                for ((y8, t8), w8) in yc.zip(tc).zip(wc) {
                    for l in 0..8 {
                        let d = y8[l] - t8[l];
                        lanes[l] += f64::from(w8[l] * d * d);
                    }
                }
                for (l, ((y, t), w)) in yr.iter().zip(tr).zip(wr).enumerate() {
                    let d = y - t;
                    lanes[l] += f64::from(w * d * d);
                }
            }
        }
        *total = lanes.iter().sum();
    }
}

with_wide_vectors! {
    /// `c·w·(y − t)` over one chunk.
    fn chunk_grad(
        y: &[f32],
        t: &[f32],
        w: Option<&[f32]>,
        c: f32,
        dy: &mut [std::mem::MaybeUninit<f32>],
    ) {
        match w {
            None => {
                for ((dy, y), t) in dy.iter_mut().zip(y).zip(t) {
                    dy.write(c * (y - t));
                }
            }
            Some(w) => {
                for (((dy, y), t), w) in dy.iter_mut().zip(y).zip(t).zip(w) {
                    dy.write(c * w * (y - t));
                }
            }
        }
    }
}

/// `scale · Σ w·(y − t)²`; the slices have one length (the operation checks).
pub(crate) fn sum_slice(y: &[f32], t: &[f32], w: Option<&[f32]>, scale: f64) -> f64 {
    let sums: Vec<f64> = y
        .par_chunks(CHUNK)
        .zip(t.par_chunks(CHUNK))
        .enumerate()
        .map(|(i, (y, t))| {
            let mut total = 0.0;
            chunk_sum(y, t, w.map(|w| &w[i * CHUNK..][..y.len()]), &mut total);
            total
        })
        .collect();
    // In chunk order, whatever thread summed each chunk.
    scale * sums.iter().sum::<f64>()
}

/// `2·scale·g·w·(y − t)` for every value.
pub(crate) fn grad_slice(y: &[f32], t: &[f32], w: Option<&[f32]>, scale: f64, g: f64) -> Vec<f32> {
    let c = (2.0 * scale * g) as f32;
    par_written(y.len(), CHUNK, |i, dy| {
        let at = i * CHUNK..i * CHUNK + dy.len();
        chunk_grad(&y[at.clone()], &t[at.clone()], w.map(|w| &w[at]), c, dy)
    })
}

/// The fused losses as a backend operation.
#[backend_extension(Flex, Autodiff)]
pub trait LossKernels: Backend {
    /// `scale · Σ w·(y − t)²`, a `[1]` tensor; the weights `w` are constants,
    /// read only where `weighted` (`w` = 1 otherwise, and `w` a one-element
    /// stand-in that keeps the operand list fixed, as in `gather_contract`).
    fn squared_error(
        y: FloatTensor<Self>,
        t: FloatTensor<Self>,
        w: FloatTensor<Self>,
        scale: f64,
        weighted: bool,
    ) -> FloatTensor<Self>;

    /// `2·scale·g·w·(y − t)`, the gradient to `y` for the loss gradient `g` (`[1]`).
    fn squared_error_grad(
        y: FloatTensor<Self>,
        t: FloatTensor<Self>,
        w: FloatTensor<Self>,
        g: FloatTensor<Self>,
        scale: f64,
        weighted: bool,
    ) -> FloatTensor<Self>;
}

impl LossKernels for Flex {
    fn squared_error(
        y: FlexTensor,
        t: FlexTensor,
        w: FlexTensor,
        scale: f64,
        weighted: bool,
    ) -> FlexTensor {
        let (y, dtype) = f32_tensor(y);
        let (t, _) = f32_tensor(t);
        let w = weighted.then(|| f32_tensor(w).0);
        let total = sum_slice(floats(&y), floats(&t), w.as_ref().map(floats), scale);
        output(vec![total as f32], vec![1], dtype)
    }

    fn squared_error_grad(
        y: FlexTensor,
        t: FlexTensor,
        w: FlexTensor,
        g: FlexTensor,
        scale: f64,
        weighted: bool,
    ) -> FlexTensor {
        let shape = y.layout().shape().to_vec();
        let (y, dtype) = f32_tensor(y);
        let (t, _) = f32_tensor(t);
        let w = weighted.then(|| f32_tensor(w).0);
        let (g, _) = f32_tensor(g);
        let g = f64::from(floats(&g)[0]);
        let dy = grad_slice(floats(&y), floats(&t), w.as_ref().map(floats), scale, g);
        output(dy, shape, dtype)
    }
}

mod autodiff {
    use burn::backend::AutodiffBackend;
    use burn::backend::autodiff::Autodiff;
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::tensor::FloatTensor;

    use super::LossKernels;

    #[derive(Debug)]
    struct SquaredErrorBackward;

    impl<B: LossKernels> Backward<B, 2> for SquaredErrorBackward {
        /// (y, t, the weights or their stand-in, scale, weighted).
        type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, f64, bool);

        fn backward(
            self,
            ops: Ops<Self::State, 2>,
            grads: &mut Gradients,
            _checkpointer: &mut Checkpointer,
        ) {
            let (y, t, w, scale, weighted) = ops.state;
            let [y_node, t_node] = ops.parents;
            let g = grads.consume::<B>(&ops.node);
            let dy = B::squared_error_grad(y, t, w, g, scale, weighted);
            if let Some(node) = t_node {
                grads.register::<B>(node.id, B::float_neg(dy.clone()));
            }
            if let Some(node) = y_node {
                grads.register::<B>(node.id, dy);
            }
        }
    }

    impl<B: LossKernels, C: CheckpointStrategy> LossKernels for Autodiff<B, C> {
        fn squared_error(
            y: FloatTensor<Self>,
            t: FloatTensor<Self>,
            w: FloatTensor<Self>,
            scale: f64,
            weighted: bool,
        ) -> FloatTensor<Self> {
            let prep = SquaredErrorBackward
                .prepare::<C>([y.node(), t.node()])
                .compute_bound()
                .stateful();
            let (y, t, w) = (y.into_primitive(), t.into_primitive(), w.into_primitive());
            let loss = B::squared_error(y.clone(), t.clone(), w.clone(), scale, weighted);
            match prep {
                OpsKind::Tracked(prep) => prep.finish((y, t, w, scale, weighted), loss),
                OpsKind::UnTracked(prep) => prep.finish(loss),
            }
        }

        // No second derivatives: the gradient is a constant.
        fn squared_error_grad(
            y: FloatTensor<Self>,
            t: FloatTensor<Self>,
            w: FloatTensor<Self>,
            g: FloatTensor<Self>,
            scale: f64,
            weighted: bool,
        ) -> FloatTensor<Self> {
            Self::from_inner(B::squared_error_grad(
                y.into_primitive(),
                t.into_primitive(),
                w.into_primitive(),
                g.into_primitive(),
                scale,
                weighted,
            ))
        }
    }
}

fn check_shape(what: &str, got: &[usize], expected: &[usize]) -> Result<()> {
    if got == expected {
        return Ok(());
    }
    Err(Error::Shape {
        context: format!("squared-error loss {what}"),
        expected: format!("{expected:?}, the prediction's shape"),
        got: format!("{got:?}"),
    })
}

/// `scale · Σ w·(y − t)²` over every value, a `[1]` tensor, differentiable
/// in `y` and in `target` (the weights, when given, are constants: a mask of
/// valid values, for example). The fused kernel on the CPU, burn's tensor
/// operations elsewhere. An error when `target` or `weights` has another
/// shape than `y` (no broadcasting).
///
/// ```
/// use burn::tensor::{Device, Tensor, TensorData};
/// use idx_flow_kernels::loss::squared_error;
/// let device = Device::default();
/// let y = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 2.0, 4.0], [3]), &device);
/// let t = Tensor::<1>::zeros([3], &device);
/// let valid = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 1.0, 0.0], [3]), &device);
/// // (1² + 2²) / 2: the mean over the two valid values.
/// let loss: f32 = squared_error(y, t, Some(valid), 0.5)?.into_scalar();
/// assert!((loss - 2.5).abs() < 1e-6);
/// # Ok::<(), idx_flow_kernels::Error>(())
/// ```
pub fn squared_error<const D: usize>(
    y: Tensor<D>,
    target: Tensor<D>,
    weights: Option<Tensor<D>>,
    scale: f64,
) -> Result<Tensor<1>> {
    let dims = y.dims();
    check_shape("target", &target.dims(), &dims)?;
    if let Some(w) = &weights {
        check_shape("weights", &w.dims(), &dims)?;
    }
    let device = y.device();
    if dims.contains(&0) {
        // An empty sum: zero, with no gradient to give.
        return Ok(Tensor::from_data(TensorData::new(vec![0f32], [1]), &device));
    }
    if !on_flex(&device) {
        return Ok(reference(y, target, weights, scale));
    }
    let weighted = weights.is_some();
    // Not read when absent: a one-element stand-in keeps the operand list fixed.
    let w = weights.unwrap_or_else(|| Tensor::<D>::zeros([1; D], &device));
    Ok(Tensor::from_dispatch(Dispatch::squared_error(
        y.into_dispatch(),
        target.into_dispatch(),
        w.into_dispatch(),
        scale,
        weighted,
    )))
}

/// The mean squared error `Σ (y − t)² / n` over the `n` values of `y`
/// (PyTorch's `mse_loss` with its default mean), a `[1]` tensor,
/// differentiable in `y` and `target`. An error when the shapes differ or
/// `y` is empty (a mean of no values).
pub fn mse_loss<const D: usize>(y: Tensor<D>, target: Tensor<D>) -> Result<Tensor<1>> {
    let n: usize = y.dims().iter().product();
    if n == 0 {
        return Err(Error::arg(
            "y",
            format!(
                "an empty prediction {:?}: the mean squared error needs at least one value",
                y.dims()
            ),
        ));
    }
    squared_error(y, target, None, 1.0 / n as f64)
}

/// [`squared_error`] from burn's tensor operations (the GPU path, and the
/// tests' reference).
pub fn reference<const D: usize>(
    y: Tensor<D>,
    target: Tensor<D>,
    weights: Option<Tensor<D>>,
    scale: f64,
) -> Tensor<1> {
    let sq = (y - target).square();
    let sq = match weights {
        Some(w) => sq * w,
        None => sq,
    };
    sq.sum() * scale
}
