//! The fused kernels on burn's CubeCL backend: one kernel source for wgpu,
//! vulkan and cuda.
//!
//! - The gather-contract forward is a tiled gather-GEMM. Each cube owns a
//!   `bm × bn` tile of the `[B·N_out, F]` output and walks the `k·C`
//!   reduction in steps of `bk`: the `bm × bk` operand tile is read straight
//!   from `X` through the indices into shared memory (a row's `C` channels
//!   are contiguous, so neighbouring threads read neighbouring floats), the
//!   `bk × bn` kernel tile beside it, and each thread accumulates a `tm × tn`
//!   block in registers. The gathered `[B, N_out, k, C]` tensor never exists.
//! - The kernel gradient is the same tiled product with the rows as the
//!   reduction. Rows are cut into groups whose size depends only on the
//!   problem's sizes; each cube reduces one group into its own f32 partial,
//!   and a second pass adds the partials in group order: no atomics, so the
//!   result is bitwise the same from run to run.
//! - The input gradient of the gather-contract is the same tiled product,
//!   one kernel slot per launch, over the input pixels that slot reads (the
//!   graph's packed slot lists): its A tile is summed from `dY` through the
//!   reverse graph, its B tile is the slot's kernel transposed, and each
//!   launch adds into an f32 accumulator. Graphs whose slots read most input
//!   pixels (same resolution, upsampling) carry no slot lists, and so does a
//!   layer moved between devices: there one launch covers every input row
//!   and slot, its A summed through the whole reverse graph (rows with no
//!   edge in a slot are zero).
//! - The gather-sum's input gradient gives each thread its own elements, which
//!   it sums over the pixel's reverse edges in order (again no atomics).
//! - The gather-sum is one thread per output element.
//!
//! Every sum is accumulated in f32 whatever the tensors' float dtype (f16 and
//! bf16 are read and written in their own dtype), and the index tensors are
//! read in the backend's int dtype.
//!
//! | file | role |
//! |---|---|
//! | [`tiling`] | tile sizes by shape, device functions every kernel shares |
//! | [`scalar_contract`] | forward and kernel-gradient kernels |
//! | [`scalar_grad_input`] | input-gradient kernels |
//! | [`scalar_sum`] | gather-sum kernels |
//! | [`tensor_core`] | the same operations on tensor cores (cooperative matrices) |
//! | [`launch`] | host-side launch helpers |
//! | [`backend`] | `GraphKernels` for the CubeCL backend: which kernel runs |

mod backend;
mod launch;
mod scalar_contract;
mod scalar_grad_input;
mod scalar_sum;
mod tensor_core;
mod tiling;
