//! A linear layer's matrix products on the CPU as operations of their own:
//! `y = x·Wᵀ` with `x` `[M, K]` and `W` `[O, K]` (PyTorch's layout), and its
//! gradients `dx = dy·W` and `dW = dyᵀ·x`, each one call of `gemm` (the
//! matrix kernel burn's CPU backend uses) over all of rayon's threads.
//!
//! burn's own product on flex gives the same values, but it allocates its
//! result zeroed and then copies it once more to realign it: two extra
//! passes over every output, about a tenth of a transformer block's training
//! step at `[8192, 256] → [8192, 1024]`. Here each result is allocated
//! unzeroed and written once by `gemm`. `gemm` blocks the reduction axis by
//! the shapes alone and each output value is summed by one thread, so
//! results do not depend on the number of threads.
//!
//! ```
//! use burn::tensor::{Device, Tensor, TensorData};
//! use idx_flow_kernels::dense::linear;
//! let device = Device::default();
//! let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2]), &device);
//! let w = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 0.0, 1.0, 1.0, 0.0, 2.0], [3, 2]), &device);
//! // x·wᵀ = [[1, 3, 4], [3, 7, 8]]
//! let y: Vec<f32> = linear(x, w)?.into_data().iter().collect();
//! assert_eq!(y, [1.0, 3.0, 4.0, 3.0, 7.0, 8.0]);
//! # Ok::<(), idx_flow_kernels::Error>(())
//! ```

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::tensor::Tensor;
use burn_flex::{Flex, FlexTensor};
use gemm::{Parallelism, gemm};

use crate::cpu::{f32_tensor, floats, output};
use crate::pointwise::{on_flex, require_flex};
use crate::{Error, Result};

/// The three products as backend operations.
#[backend_extension(Flex, Autodiff)]
pub trait DenseKernels: Backend {
    /// `x` `[M, K]` · `weight` `[O, K]`ᵀ → `[M, O]` (shapes checked by the caller).
    fn dense_linear(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `dy` `[M, O]` · `weight` `[O, K]` → `[M, K]`.
    fn dense_linear_grad_input(
        dy: FloatTensor<Self>,
        weight: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// `dy` `[M, O]`ᵀ · `x` `[M, K]` → `[O, K]`.
    fn dense_linear_grad_weight(dy: FloatTensor<Self>, x: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// One row-major operand: its values and its (row, column) strides.
#[derive(Clone, Copy)]
struct Operand<'a> {
    values: &'a [f32],
    strides: (usize, usize),
}

/// `a` `[m, k]` · `b` `[k, n]` → `[m, n]` row-major, as given by their
/// strides, written once into an unzeroed result.
fn product(m: usize, n: usize, k: usize, a: Operand<'_>, b: Operand<'_>) -> Vec<f32> {
    let len = m * n;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    if len == 0 {
        return out;
    }
    if k == 0 {
        // An empty sum; gemm would not write the result.
        out.resize(len, 0.0);
        return out;
    }
    // SAFETY: `out` has room for `m·n` values, written by gemm (`read_dst`
    // false: the result is `1·a·b`, the destination not read); the operands'
    // strides address `m·k` and `k·n` values inside their slices (the callers
    // pass contiguous tensors of those shapes); nothing overlaps.
    unsafe {
        gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.values.as_ptr(),
            a.strides.1 as isize,
            a.strides.0 as isize,
            b.values.as_ptr(),
            b.strides.1 as isize,
            b.strides.0 as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            Parallelism::Rayon(rayon::current_num_threads()),
        );
        out.set_len(len);
    }
    out
}

fn dims2(t: &FlexTensor) -> [usize; 2] {
    let s = t.layout().shape();
    [s[0], s[1]]
}

impl DenseKernels for Flex {
    fn dense_linear(x: FlexTensor, weight: FlexTensor) -> FlexTensor {
        let ([m, k], [o, _]) = (dims2(&x), dims2(&weight));
        let ((x, dtype), (w, _)) = (f32_tensor(x), f32_tensor(weight));
        // Wᵀ [K, O]: W's rows are its columns.
        let y = product(
            m,
            o,
            k,
            Operand {
                values: floats(&x),
                strides: (k, 1),
            },
            Operand {
                values: floats(&w),
                strides: (1, k),
            },
        );
        output(y, vec![m, o], dtype)
    }

    fn dense_linear_grad_input(dy: FlexTensor, weight: FlexTensor) -> FlexTensor {
        let ([m, o], [_, k]) = (dims2(&dy), dims2(&weight));
        let ((dy, dtype), (w, _)) = (f32_tensor(dy), f32_tensor(weight));
        let dx = product(
            m,
            k,
            o,
            Operand {
                values: floats(&dy),
                strides: (o, 1),
            },
            Operand {
                values: floats(&w),
                strides: (k, 1),
            },
        );
        output(dx, vec![m, k], dtype)
    }

    fn dense_linear_grad_weight(dy: FlexTensor, x: FlexTensor) -> FlexTensor {
        let ([m, o], [_, k]) = (dims2(&dy), dims2(&x));
        let ((dy, dtype), (x, _)) = (f32_tensor(dy), f32_tensor(x));
        // dyᵀ [O, M]: dy's columns are its rows.
        let dw = product(
            o,
            k,
            m,
            Operand {
                values: floats(&dy),
                strides: (1, o),
            },
            Operand {
                values: floats(&x),
                strides: (k, 1),
            },
        );
        output(dw, vec![o, k], dtype)
    }
}

mod autodiff {
    use burn::backend::AutodiffBackend;
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::autodiff::{Autodiff, NodeId};
    use burn::backend::tensor::FloatTensor;

    use super::DenseKernels;

    #[derive(Debug)]
    struct DenseLinearBackward;

    impl<B: DenseKernels> Backward<B, 2> for DenseLinearBackward {
        /// (x when the weight needs a gradient, the weight when x needs one).
        type State = (Option<NodeId>, Option<NodeId>);

        fn backward(
            self,
            ops: Ops<Self::State, 2>,
            grads: &mut Gradients,
            checkpointer: &mut Checkpointer,
        ) {
            let (x_id, w_id) = ops.state;
            let x: Option<FloatTensor<B>> = x_id.map(|id| checkpointer.retrieve_node_output(id));
            let w: Option<FloatTensor<B>> = w_id.map(|id| checkpointer.retrieve_node_output(id));
            let [x_node, w_node] = ops.parents;
            let dy = grads.consume::<B>(&ops.node);
            if let (Some(node), Some(x)) = (w_node, x) {
                grads.register::<B>(node.id, B::dense_linear_grad_weight(dy.clone(), x));
            }
            if let (Some(node), Some(w)) = (x_node, w) {
                grads.register::<B>(node.id, B::dense_linear_grad_input(dy, w));
            }
        }
    }

    impl<B: DenseKernels, C: CheckpointStrategy> DenseKernels for Autodiff<B, C> {
        fn dense_linear(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
            let (x_tracked, w_tracked) = (x.is_tracked(), weight.is_tracked());
            match DenseLinearBackward
                .prepare::<C>([x.node(), weight.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(mut prep) => {
                    let x_state = w_tracked.then(|| prep.checkpoint(&x));
                    let w_state = x_tracked.then(|| prep.checkpoint(&weight));
                    let y = B::dense_linear(x.into_primitive(), weight.into_primitive());
                    prep.finish((x_state, w_state), y)
                }
                OpsKind::UnTracked(prep) => {
                    prep.finish(B::dense_linear(x.into_primitive(), weight.into_primitive()))
                }
            }
        }

        fn dense_linear_grad_input(
            dy: FloatTensor<Self>,
            weight: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            // Gradients of gradients are not needed by any layer here: the
            // result is a constant of the graph.
            Self::from_inner(B::dense_linear_grad_input(
                dy.into_primitive(),
                weight.into_primitive(),
            ))
        }

        fn dense_linear_grad_weight(
            dy: FloatTensor<Self>,
            x: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            Self::from_inner(B::dense_linear_grad_weight(
                dy.into_primitive(),
                x.into_primitive(),
            ))
        }
    }
}

/// Whether [`linear`] runs natively on `device` (burn's CPU backend, with
/// or without autodiff).
pub fn available(device: &burn::tensor::Device) -> bool {
    on_flex(device)
}

/// `x` `[M, K]` · `weight` `[O, K]`ᵀ → `[M, O]`, differentiable in both:
/// burn's product, without its zeroed and realigned result (see the
/// module's description).
///
/// An error when the device has no native kernel ([`available`]) or when
/// the two `K` differ.
pub fn linear(x: Tensor<2>, weight: Tensor<2>) -> Result<Tensor<2>> {
    require_flex(&x.device(), "the dense linear kernel runs")?;
    let ([_, k], [_, kw]) = (x.dims(), weight.dims());
    if k != kw {
        return Err(Error::Shape {
            context: "dense linear".into(),
            expected: format!("a weight [O, {k}] for an input [M, {k}]"),
            got: format!("input {:?}, weight {:?}", x.dims(), weight.dims()),
        });
    }
    Ok(Tensor::from_dispatch(Dispatch::dense_linear(
        x.into_dispatch(),
        weight.into_dispatch(),
    )))
}
