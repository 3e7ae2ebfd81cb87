//! The real part of a 2-D spectrum of a real signal, completed from its
//! half: `Re X[s, h] = Re X[−s, −h]` when `X` is the 2-D Fourier transform of
//! real values, so a transform that keeps `W/2 + 1` of `W` columns (a real
//! FFT along the last axis) gives every column of `Re X`.
//!
//! [`extend`] maps `r` `[B, N, W/2 + 1]` to `[B, N, W]`:
//! `out[b, s, h] = r[b, s, h]` for `h ≤ W/2`, `r[b, (N − s) mod N, W − h]`
//! above. FNet's Fourier mixing, `Re FFT2(x)`, runs its strided sequence
//! transform on half the columns this way. Its backward is the adjoint (the
//! mirrored columns added back onto the ones they copy), each value written
//! once, so results do not depend on the number of threads.
//!
//! ```
//! use burn::tensor::{Device, Tensor, TensorData};
//! use idx_flow_kernels::hermitian::extend;
//! let device = Device::default();
//! // N = 2 rows, W = 4 columns from 3: column 3 mirrors column 1 of row −s.
//! let r = Tensor::<3>::from_data(TensorData::new(vec![0.0f32, 1.0, 2.0, 10.0, 11.0, 12.0], [1, 2, 3]), &device);
//! let y: Vec<f32> = extend(r, 4)?.into_data().iter().collect();
//! assert_eq!(y, [0.0, 1.0, 2.0, 1.0, 10.0, 11.0, 12.0, 11.0]);
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

/// The completion and its adjoint as backend operations.
#[backend_extension(Flex, Autodiff)]
pub trait HermitianKernels: Backend {
    /// `r` `[B, N, W/2 + 1]` completed to `[B, N, width]`.
    fn hermitian_extend(r: FloatTensor<Self>, width: usize) -> FloatTensor<Self>;
    /// The adjoint: `dy` `[B, N, width]` folded onto `[B, N, W/2 + 1]`.
    fn hermitian_fold(dy: FloatTensor<Self>, width: usize) -> FloatTensor<Self>;
}

/// The completion on a slice (`half` = `W/2 + 1` columns in).
pub(crate) fn extend_slice(r: &[f32], n: usize, half: usize, width: usize) -> Vec<f32> {
    let mut y = vec![0f32; r.len() / half * width];
    let plane = n * half;
    y.par_chunks_mut(width).enumerate().for_each(|(row, out)| {
        let (b, s) = (row / n, row % n);
        let src = &r[b * plane + s * half..b * plane + (s + 1) * half];
        out[..half].copy_from_slice(src);
        let mirror_row = (n - s) % n;
        let mirror = &r[b * plane + mirror_row * half..b * plane + (mirror_row + 1) * half];
        for (h, v) in out.iter_mut().enumerate().skip(half) {
            *v = mirror[width - h];
        }
    });
    y
}

/// The adjoint on a slice: `dr[b, s, h] = dy[b, s, h] + dy[b, −s, W − h]`
/// for the columns `1 ≤ h ≤ W − half` that a mirrored column copies.
pub(crate) fn fold_slice(dy: &[f32], n: usize, half: usize, width: usize) -> Vec<f32> {
    let mut dr = vec![0f32; dy.len() / width * half];
    let plane = n * width;
    dr.par_chunks_mut(half).enumerate().for_each(|(row, out)| {
        let (b, s) = (row / n, row % n);
        let direct = &dy[b * plane + s * width..b * plane + s * width + half];
        out.copy_from_slice(direct);
        let mirror_row = (n - s) % n;
        let mirror = &dy[b * plane + mirror_row * width..b * plane + (mirror_row + 1) * width];
        for (h, v) in out.iter_mut().enumerate().take(width - half + 1).skip(1) {
            *v += mirror[width - h];
        }
    });
    dr
}

impl HermitianKernels for Flex {
    fn hermitian_extend(r: FlexTensor, width: usize) -> FlexTensor {
        let shape = r.layout().shape().to_vec();
        let (b, n, half) = (shape[0], shape[1], shape[2]);
        let (r, dtype) = f32_tensor(r);
        output(
            extend_slice(floats(&r), n, half, width),
            vec![b, n, width],
            dtype,
        )
    }

    fn hermitian_fold(dy: FlexTensor, width: usize) -> FlexTensor {
        let shape = dy.layout().shape().to_vec();
        let (b, n) = (shape[0], shape[1]);
        let half = width / 2 + 1;
        let (dy, dtype) = f32_tensor(dy);
        output(
            fold_slice(floats(&dy), n, half, width),
            vec![b, n, half],
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

    use super::HermitianKernels;

    #[derive(Debug)]
    struct ExtendBackward;

    impl<B: HermitianKernels> Backward<B, 1> for ExtendBackward {
        /// The full width.
        type State = usize;

        fn backward(
            self,
            ops: Ops<Self::State, 1>,
            grads: &mut Gradients,
            _checkpointer: &mut Checkpointer,
        ) {
            let [node] = ops.parents;
            let dy = grads.consume::<B>(&ops.node);
            if let Some(node) = node {
                grads.register::<B>(node.id, B::hermitian_fold(dy, ops.state));
            }
        }
    }

    impl<B: HermitianKernels, C: CheckpointStrategy> HermitianKernels for Autodiff<B, C> {
        fn hermitian_extend(r: FloatTensor<Self>, width: usize) -> FloatTensor<Self> {
            match ExtendBackward
                .prepare::<C>([r.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let y = B::hermitian_extend(r.into_primitive(), width);
                    prep.finish(width, y)
                }
                OpsKind::UnTracked(prep) => {
                    prep.finish(B::hermitian_extend(r.into_primitive(), width))
                }
            }
        }

        fn hermitian_fold(dy: FloatTensor<Self>, width: usize) -> FloatTensor<Self> {
            // Second derivatives are not provided: the result is a constant.
            Self::from_inner(B::hermitian_fold(dy.into_primitive(), width))
        }
    }
}

/// Whether [`extend`] runs natively on `device` (burn's CPU backend).
pub fn available(device: &burn::tensor::Device) -> bool {
    on_flex(device)
}

/// `r` `[B, N, width/2 + 1]`, the real part of the first columns of a 2-D
/// spectrum of real values, completed to all `width` columns (see the
/// module's description); differentiable. An error off the CPU backend or
/// when `r` does not have `width/2 + 1` columns.
pub fn extend(r: Tensor<3>, width: usize) -> Result<Tensor<3>> {
    require_flex(&r.device(), "the Hermitian completion runs")?;
    let [_, n, half] = r.dims();
    if width == 0 || half != width / 2 + 1 || n == 0 {
        return Err(Error::Shape {
            context: "Hermitian completion".into(),
            expected: format!("[B, N > 0, {}] for {width} columns", width / 2 + 1),
            got: format!("{:?}", r.dims()),
        });
    }
    Ok(Tensor::from_dispatch(Dispatch::hermitian_extend(
        r.into_dispatch(),
        width,
    )))
}
