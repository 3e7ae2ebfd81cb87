//! The backward passes of the fused operations, for any backend that has them.
//!
//! The forward runs the inner backend's fused kernel; the backward calls its
//! two gradient kernels (input through the reverse graph, kernel by a blocked
//! reduction), each only when its input is tracked. The per-edge weights are
//! read as constants.

use burn::backend::AutodiffBackend;
use burn::backend::TensorMetadata;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::tensor::Shape;

use super::GraphKernels;

/// Everything the gather-contract backward reads besides the saved inputs.
#[derive(Clone, Debug)]
struct ContractGraph<B: GraphKernels> {
    indices: IntTensor<B>,
    rev_offsets: IntTensor<B>,
    rev_edges: IntTensor<B>,
    rev_slots: IntTensor<B>,
    edge_weights: FloatTensor<B>,
    weighted: bool,
}

/// `Σ_rows dy` of `dy` `[B, N_out, F]` → `[F]`, over the `B·N_out = a·b` rows
/// viewed as `[a, b, F]` and summed over `b`, then `a`: the reference path's
/// bias gradient, whose rounding error grows like `a + b`, not `a·b`.
fn bias_gradient<B: GraphKernels>(dy: FloatTensor<B>) -> FloatTensor<B> {
    let dims = dy.shape().dims::<3>();
    let rows = dims[0] * dims[1];
    let (a, b) = idx_flow_core::reduce::split(rows);
    let dy = B::float_reshape(dy, Shape::new([a, b, dims[2]]));
    let partial = B::float_sum_dim(dy, 1);
    B::float_reshape(B::float_sum_dim(partial, 0), Shape::new([dims[2]]))
}

#[derive(Debug)]
struct GatherContractBackward;

impl<B: GraphKernels> Backward<B, 3> for GatherContractBackward {
    /// (x when the kernel needs a gradient, kernel when x needs one, the graph).
    type State = (Option<NodeId>, Option<NodeId>, ContractGraph<B>);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let (x_id, kernel_id, graph) = ops.state;
        let x: Option<FloatTensor<B>> = x_id.map(|id| checkpointer.retrieve_node_output(id));
        let kernel: Option<FloatTensor<B>> =
            kernel_id.map(|id| checkpointer.retrieve_node_output(id));
        let [x_node, kernel_node, bias_node] = ops.parents;
        let dy = grads.consume::<B>(&ops.node);

        if let Some(node) = bias_node {
            grads.register::<B>(node.id, bias_gradient::<B>(dy.clone()));
        }

        if let (Some(node), Some(x)) = (kernel_node, x) {
            let dk = B::gather_contract_grad_kernel(
                x,
                graph.indices.clone(),
                graph.edge_weights.clone(),
                dy.clone(),
                graph.weighted,
            );
            grads.register::<B>(node.id, dk);
        }
        if let (Some(node), Some(kernel)) = (x_node, kernel) {
            let dx = B::gather_contract_grad_input(
                dy,
                graph.rev_offsets,
                graph.rev_edges,
                graph.rev_slots,
                graph.edge_weights,
                kernel,
                graph.weighted,
            );
            grads.register::<B>(node.id, dx);
        }
    }
}

#[derive(Debug)]
struct GatherSumBackward;

impl<B: GraphKernels> Backward<B, 1> for GatherSumBackward {
    /// (rev_offsets, rev_edges, edge_weights).
    type State = (IntTensor<B>, IntTensor<B>, FloatTensor<B>);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let (rev_offsets, rev_edges, edge_weights) = ops.state;
        let [x_node] = ops.parents;
        let dy = grads.consume::<B>(&ops.node);
        if let Some(node) = x_node {
            let dx = B::gather_sum_grad_input(dy, rev_offsets, rev_edges, edge_weights);
            grads.register::<B>(node.id, dx);
        }
    }
}

impl<B: GraphKernels, C: CheckpointStrategy> GraphKernels for Autodiff<B, C> {
    fn gather_contract(
        x: FloatTensor<Self>,
        indices: IntTensor<Self>,
        rev_offsets: IntTensor<Self>,
        rev_edges: IntTensor<Self>,
        rev_slots: IntTensor<Self>,
        edge_weights: FloatTensor<Self>,
        kernel: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        weighted: bool,
        biased: bool,
    ) -> FloatTensor<Self> {
        let x_tracked = x.is_tracked();
        let kernel_tracked = kernel.is_tracked();
        let edge_weights = edge_weights.into_primitive();
        // An absent bias is an untracked stand-in: it gets no gradient.
        match GatherContractBackward
            .prepare::<C>([x.node(), kernel.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = kernel_tracked.then(|| prep.checkpoint(&x));
                let kernel_state = x_tracked.then(|| prep.checkpoint(&kernel));
                let graph = ContractGraph {
                    indices: indices.clone(),
                    rev_offsets: rev_offsets.clone(),
                    rev_edges: rev_edges.clone(),
                    rev_slots: rev_slots.clone(),
                    edge_weights: edge_weights.clone(),
                    weighted,
                };
                let y = B::gather_contract(
                    x.into_primitive(),
                    indices,
                    rev_offsets,
                    rev_edges,
                    rev_slots,
                    edge_weights,
                    kernel.into_primitive(),
                    bias.into_primitive(),
                    weighted,
                    biased,
                );
                prep.finish((x_state, kernel_state, graph), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::gather_contract(
                x.into_primitive(),
                indices,
                rev_offsets,
                rev_edges,
                rev_slots,
                edge_weights,
                kernel.into_primitive(),
                bias.into_primitive(),
                weighted,
                biased,
            )),
        }
    }

    fn gather_contract_grad_input(
        dy: FloatTensor<Self>,
        rev_offsets: IntTensor<Self>,
        rev_edges: IntTensor<Self>,
        rev_slots: IntTensor<Self>,
        edge_weights: FloatTensor<Self>,
        kernel: FloatTensor<Self>,
        weighted: bool,
    ) -> FloatTensor<Self> {
        // Second derivatives are not provided: the result is a constant.
        Self::from_inner(B::gather_contract_grad_input(
            dy.into_primitive(),
            rev_offsets,
            rev_edges,
            rev_slots,
            edge_weights.into_primitive(),
            kernel.into_primitive(),
            weighted,
        ))
    }

    fn gather_contract_grad_kernel(
        x: FloatTensor<Self>,
        indices: IntTensor<Self>,
        edge_weights: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        weighted: bool,
    ) -> FloatTensor<Self> {
        Self::from_inner(B::gather_contract_grad_kernel(
            x.into_primitive(),
            indices,
            edge_weights.into_primitive(),
            dy.into_primitive(),
            weighted,
        ))
    }

    fn gather_sum(
        x: FloatTensor<Self>,
        indices: IntTensor<Self>,
        rev_offsets: IntTensor<Self>,
        rev_edges: IntTensor<Self>,
        edge_weights: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let edge_weights = edge_weights.into_primitive();
        match GatherSumBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::gather_sum(
                    x.into_primitive(),
                    indices,
                    rev_offsets.clone(),
                    rev_edges.clone(),
                    edge_weights.clone(),
                );
                prep.finish((rev_offsets, rev_edges, edge_weights), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::gather_sum(
                x.into_primitive(),
                indices,
                rev_offsets,
                rev_edges,
                edge_weights,
            )),
        }
    }

    fn gather_sum_grad_input(
        dy: FloatTensor<Self>,
        rev_offsets: IntTensor<Self>,
        rev_edges: IntTensor<Self>,
        edge_weights: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::from_inner(B::gather_sum_grad_input(
            dy.into_primitive(),
            rev_offsets,
            rev_edges,
            edge_weights.into_primitive(),
        ))
    }
}
