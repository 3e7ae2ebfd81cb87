//! Complex values scaled by complex weights, on interleaved `(re, im)`
//! pairs: `y[b, i] = z[b, i]·w[i]` for `z` `[B, M, 2]` and `w` `[M, 2]`
//! (a spectral filter: AFNO's and the global filter's complex weight).
//!
//! Built from tensor operations, the product splits the pairs and joins
//! them again along the short last axis, which burn's CPU backend copies
//! value by value (about 10 ms for 1 M pairs). Here it is one pass forward
//! and, backward, `dz = dy·w̄` (the same kernel) and `dw[i] = Σ_b dy[b,
//! i]·z̄[b, i]` summed over `b` in order, on all cores: results do not
//! depend on the number of threads.
//!
//! ```
//! use burn::tensor::{Device, Tensor, TensorData};
//! use idx_flow_kernels::complex::scale;
//! let device = Device::default();
//! // (1 + 2i)·(3 − i) = 5 + 5i
//! let z = Tensor::<3>::from_data(TensorData::new(vec![1.0f32, 2.0], [1, 1, 2]), &device);
//! let w = Tensor::<2>::from_data(TensorData::new(vec![3.0f32, -1.0], [1, 2]), &device);
//! let y: Vec<f32> = scale(z, w)?.into_data().iter().collect();
//! assert_eq!(y, [5.0, 5.0]);
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

/// Pairs per parallel task.
const TASK_PAIRS: usize = 1 << 13;

/// The product and its weight gradient as backend operations.
#[backend_extension(Flex, Autodiff)]
pub trait ComplexKernels: Backend {
    /// `z` `[B, M, 2]` times `w` `[M, 2]` (its conjugate when `conjugate`).
    fn complex_scale(
        z: FloatTensor<Self>,
        w: FloatTensor<Self>,
        conjugate: bool,
    ) -> FloatTensor<Self>;
    /// `[M, 2]`: `Σ_b dy[b, i]·z̄[b, i]` (its conjugate when `conjugate`).
    fn complex_scale_grad_weight(
        dy: FloatTensor<Self>,
        z: FloatTensor<Self>,
        conjugate: bool,
    ) -> FloatTensor<Self>;
}

with_wide_vectors! {
    /// `y = z·w` (or `z·w̄`) over one block of pairs, `w` aligned with it.
    fn scale_block(z: &[f32], w: &[f32], conjugate: bool, y: &mut [f32]) {
        let s = if conjugate { -1.0f32 } else { 1.0 };
        for ((y, z), w) in y.chunks_exact_mut(2).zip(z.chunks_exact(2)).zip(w.chunks_exact(2)) {
            let (wr, wi) = (w[0], s * w[1]);
            y[0] = z[0] * wr - z[1] * wi;
            y[1] = z[0] * wi + z[1] * wr;
        }
    }
}

/// `z` `[B, M, 2]` times `w` `[M, 2]`.
pub(crate) fn scale_slice(z: &[f32], w: &[f32], conjugate: bool) -> Vec<f32> {
    let pairs = w.len() / 2;
    let mut y = vec![0f32; z.len()];
    y.par_chunks_mut(2 * TASK_PAIRS)
        .zip(z.par_chunks(2 * TASK_PAIRS))
        .enumerate()
        .for_each(|(t, (y, z))| {
            // A block never straddles two samples' ends unevenly: split it
            // at each start of `w`.
            let mut at = (t * TASK_PAIRS) % pairs.max(1);
            let mut done = 0;
            while done < y.len() {
                let len = (2 * (pairs - at)).min(y.len() - done);
                scale_block(
                    &z[done..done + len],
                    &w[2 * at..2 * at + len],
                    conjugate,
                    &mut y[done..done + len],
                );
                done += len;
                at = 0;
            }
        });
    y
}

/// `Σ_b dy[b, i]·z̄[b, i]` `[M, 2]` (or its conjugate), summed over `b` in order.
pub(crate) fn grad_weight_slice(dy: &[f32], z: &[f32], pairs: usize, conjugate: bool) -> Vec<f32> {
    let s = if conjugate { -1.0f32 } else { 1.0 };
    let batch = dy.len() / (2 * pairs).max(1);
    let mut dw = vec![0f32; 2 * pairs];
    dw.par_chunks_mut(2 * TASK_PAIRS)
        .enumerate()
        .for_each(|(t, dw)| {
            let i0 = 2 * t * TASK_PAIRS;
            for b in 0..batch {
                let at = b * 2 * pairs + i0;
                let (g, z) = (&dy[at..at + dw.len()], &z[at..at + dw.len()]);
                for ((d, g), z) in dw
                    .chunks_exact_mut(2)
                    .zip(g.chunks_exact(2))
                    .zip(z.chunks_exact(2))
                {
                    d[0] += g[0] * z[0] + g[1] * z[1];
                    d[1] += s * (g[1] * z[0] - g[0] * z[1]);
                }
            }
        });
    dw
}

impl ComplexKernels for Flex {
    fn complex_scale(z: FlexTensor, w: FlexTensor, conjugate: bool) -> FlexTensor {
        let shape = z.layout().shape().to_vec();
        let ((z, dtype), (w, _)) = (f32_tensor(z), f32_tensor(w));
        output(scale_slice(floats(&z), floats(&w), conjugate), shape, dtype)
    }

    fn complex_scale_grad_weight(dy: FlexTensor, z: FlexTensor, conjugate: bool) -> FlexTensor {
        let shape = z.layout().shape().to_vec();
        let pairs = shape[1];
        let ((dy, dtype), (z, _)) = (f32_tensor(dy), f32_tensor(z));
        output(
            grad_weight_slice(floats(&dy), floats(&z), pairs, conjugate),
            vec![pairs, 2],
            dtype,
        )
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

    use super::ComplexKernels;

    #[derive(Debug)]
    struct ScaleBackward;

    impl<B: ComplexKernels> Backward<B, 2> for ScaleBackward {
        /// (z, w, conjugate).
        type State = (FloatTensor<B>, FloatTensor<B>, bool);

        fn backward(
            self,
            ops: Ops<Self::State, 2>,
            grads: &mut Gradients,
            _checkpointer: &mut Checkpointer,
        ) {
            let (z, w, conjugate) = ops.state;
            let [z_node, w_node] = ops.parents;
            let dy = grads.consume::<B>(&ops.node);
            if let Some(node) = w_node {
                // d(z·w)/dw paired with dy is Σ dy·z̄; for z·w̄ it is its conjugate.
                let dw = B::complex_scale_grad_weight(dy.clone(), z, conjugate);
                grads.register::<B>(node.id, dw);
            }
            if let Some(node) = z_node {
                grads.register::<B>(node.id, B::complex_scale(dy, w, !conjugate));
            }
        }
    }

    impl<B: ComplexKernels, C: CheckpointStrategy> ComplexKernels for Autodiff<B, C> {
        fn complex_scale(
            z: FloatTensor<Self>,
            w: FloatTensor<Self>,
            conjugate: bool,
        ) -> FloatTensor<Self> {
            match ScaleBackward
                .prepare::<C>([z.node(), w.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let (z, w) = (z.into_primitive(), w.into_primitive());
                    let y = B::complex_scale(z.clone(), w.clone(), conjugate);
                    prep.finish((z, w, conjugate), y)
                }
                OpsKind::UnTracked(prep) => prep.finish(B::complex_scale(
                    z.into_primitive(),
                    w.into_primitive(),
                    conjugate,
                )),
            }
        }

        fn complex_scale_grad_weight(
            dy: FloatTensor<Self>,
            z: FloatTensor<Self>,
            conjugate: bool,
        ) -> FloatTensor<Self> {
            // Second derivatives are not provided: the result is a constant.
            Self::from_inner(B::complex_scale_grad_weight(
                dy.into_primitive(),
                z.into_primitive(),
                conjugate,
            ))
        }
    }
}

/// Whether [`scale`] runs natively on `device` (burn's CPU backend).
pub fn available(device: &burn::tensor::Device) -> bool {
    on_flex(device)
}

/// `z` `[B, M, 2]` times the complex weight `w` `[M, 2]`, pair by pair,
/// differentiable in both. An error off the CPU backend ([`available`]) or
/// for shapes that do not pair up.
pub fn scale(z: Tensor<3>, w: Tensor<2>) -> Result<Tensor<3>> {
    require_flex(&z.device(), "the complex kernels run")?;
    let ([_, m, two], wd) = (z.dims(), w.dims());
    if two != 2 || wd != [m, 2] {
        return Err(Error::Shape {
            context: "complex scale".into(),
            expected: format!("z [B, M, 2] and w [M, 2] (M = {m})"),
            got: format!("z {:?}, w {wd:?}", z.dims()),
        });
    }
    Ok(Tensor::from_dispatch(Dispatch::complex_scale(
        z.into_dispatch(),
        w.into_dispatch(),
        false,
    )))
}
