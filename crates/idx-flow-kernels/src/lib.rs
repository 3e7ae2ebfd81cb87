//! Fused gather-contract kernels: the graph layers' hot loop without the
//! gathered `[B, N_out, k, C]` copy.
//!
//! Two operations cover every gather layer:
//!
//! - [`gather_contract`]: `Y[b,p,f] = Σ_j Σ_c w[p,j]·X[b, idx[p,j], c]·K[j·C + c, f]`
//!   (SpatialConv, SpatialTransposeConv, the first layer of SpatialMLP, the
//!   patch embedding);
//! - [`gather_sum`]: `Y[b,p,c] = Σ_j w[p,j]·X[b, idx[p,j], c]` (SpatialUpsampling,
//!   mean pooling).
//!
//! Each is a backend operation ([`GraphKernels`]) with its own backward:
//! the kernel gradient is a blocked reduction summed in a fixed order, and the
//! input gradient gathers through the reverse graph ([`ReverseGraph`]): no
//! atomics, so gradients are bitwise identical from run to run and for any
//! number of threads. The CPU implementation (flex) contracts gathered tiles
//! that stay in cache with `gemm`; the GPU implementation is CubeCL (one
//! source for wgpu and cuda). The per-edge weights `w` are constants: no
//! gradient flows into them (in every layer they are fixed buffers).
//!
//! Beside them, on the CPU: the native FFT ([`fft`]) and FNet's 2-D Fourier
//! mixing ([`fourier2`]), the spherical-harmonic transforms of HEALPix maps
//! ([`sht`]), fused activations ([`pointwise`]), normalisations
//! ([`norm`], [`batch_norm`]) and squared-error losses ([`loss`]), and a linear layer's products ([`dense`], [`skinny`]), each
//! with its own backward.
//!
//! The plain tensor-op version ([`KernelPath::Reference`]: `select`, then
//! `matmul`, in `idx-flow-nn`'s `GraphIndices`) stays as the reference the
//! tests compare against. How the kernels run (the path, tensor cores, GPU
//! tilings) is one [`KernelOptions`] value ([`set_options`]).
//!
//! ```
//! use burn::tensor::{Device, Tensor, TensorData};
//! use idx_flow_kernels::{DeviceGraph, gather_contract};
//!
//! let device = Device::default();
//! // 2 output pixels, each reading k = 2 of 3 input pixels: 0, 1 and 1, 2.
//! let graph = DeviceGraph::new(&[0, 1, 1, 2], 3, 2, 2, &device);
//! // One sample, one channel, x = [1, 2, 3]; the kernel [k·C, F] = [[10], [1]].
//! let x = Tensor::<3>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0], [1, 3, 1]), &device);
//! let kernel = Tensor::<2>::from_data(TensorData::new(vec![10.0f32, 1.0], [2, 1]), &device);
//! let y = gather_contract(x, &graph, None, kernel, None);
//! // y[p] = 10·x[idx[p, 0]] + x[idx[p, 1]]
//! assert_eq!(y.into_data().iter::<f32>().collect::<Vec<_>>(), [12.0, 23.0]);
//! ```

#![warn(missing_docs)]

pub use idx_flow_gather::ReverseGraph;
pub use idx_flow_healpix::{Error, Result};
pub use options::{CubeTiling, KernelOptions, KernelPath, options, set_options};

// Before the modules, which use it.
/// Defines `fn $name` running `$body` compiled for AVX-512F or AVX2 with
/// FMA, the widest the CPU has, as is otherwise: the same operations in the
/// same order (Rust never fuses a multiply and an add on its own; an
/// explicit `mul_add` is one instruction on the wide paths and a correctly
/// rounded library call on the plain one), only wider vectors, so every
/// path gives the same bits.
macro_rules! with_wide_vectors {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$doc])*
        fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,fma")]
                unsafe fn widest($($arg: $ty),*) {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide($($arg: $ty),*) {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has AVX-512F and FMA.
                    return unsafe { widest($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has AVX2 and FMA.
                    return unsafe { wide($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

mod autodiff;
pub mod batch_norm;
pub mod complex;
mod cpu;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod cube;
pub mod dense;
pub mod fft;
pub mod fourier2;
pub mod loss;
pub mod norm;
mod options;
pub mod pointwise;
pub mod sht;
pub mod skinny;

use std::sync::atomic::{AtomicU64, Ordering};

use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::tensor::{Device, Int, Tensor, TensorData};

/// Tensor-core kernel launches so far in this process.
static TENSOR_CORE_LAUNCHES: AtomicU64 = AtomicU64::new(0);

/// How many gather-contract kernel launches (forwards, kernel gradients,
/// input-gradient slots) have run on tensor cores in this process: a diagnostic
/// telling whether [`KernelOptions::tensor_cores`] took effect on
/// a device (it stays 0 where the device offers no suitable cooperative
/// matrices, and on the CPU).
pub fn tensor_core_launches() -> u64 {
    TENSOR_CORE_LAUNCHES.load(Ordering::Relaxed)
}

/// The backend operations behind [`gather_contract`] and [`gather_sum`].
///
/// Shapes: `x` `[B, N_in, C]`; `indices` `[N_out, k]` (int, entries in
/// `0..N_in`); `edge_weights` `[N_out, k]` (read only where `weighted`);
/// `kernel` `[k·C, F]`; `rev_offsets` `[N_in + 1]` and `rev_edges` `[N_out·k]`
/// the [`ReverseGraph`]; `rev_slots` its [`slot_rows`](ReverseGraph::slot_rows)
/// (read by the GPU input gradient; empty where the backend does not use it,
/// and a GPU then falls back to a kernel that needs none). Float tensors are
/// contiguous after the call's own conversion; the CPU path computes in f32,
/// the GPU path in the tensors' dtype.
#[backend_extension(Flex, Cube: cfg(any(feature = "wgpu", feature = "cuda")), Autodiff)]
pub trait GraphKernels: Backend {
    /// `Y[b,p,f] = bias[f] + Σ_j Σ_c w[p,j]·X[b, idx[p,j], c]·K[j·C + c, f]` →
    /// `[B, N_out, F]`, with `bias` `[F]` read only where `biased` (adding it
    /// in the kernel saves a pass over `Y`).
    /// The reverse graph is not read here; the autodiff wrapper keeps it for the backward.
    #[allow(clippy::too_many_arguments)]
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
    ) -> FloatTensor<Self>;

    /// Input gradient of [`gather_contract`](GraphKernels::gather_contract):
    /// `dX[b,i,c] = Σ_{(p,j) → i} w[p,j]·Σ_f dY[b,p,f]·K[j·C + c, f]` → `[B, N_in, C]`,
    /// summed over each pixel's reverse edges in ascending order.
    fn gather_contract_grad_input(
        dy: FloatTensor<Self>,
        rev_offsets: IntTensor<Self>,
        rev_edges: IntTensor<Self>,
        rev_slots: IntTensor<Self>,
        edge_weights: FloatTensor<Self>,
        kernel: FloatTensor<Self>,
        weighted: bool,
    ) -> FloatTensor<Self>;

    /// Kernel gradient of [`gather_contract`](GraphKernels::gather_contract):
    /// `dK[j·C + c, f] = Σ_b Σ_p w[p,j]·X[b, idx[p,j], c]·dY[b,p,f]` → `[k·C, F]`,
    /// reduced over fixed blocks of rows in a fixed order.
    fn gather_contract_grad_kernel(
        x: FloatTensor<Self>,
        indices: IntTensor<Self>,
        edge_weights: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        weighted: bool,
    ) -> FloatTensor<Self>;

    /// `Y[b,p,c] = Σ_j w[p,j]·X[b, idx[p,j], c]` → `[B, N_out, C]`.
    fn gather_sum(
        x: FloatTensor<Self>,
        indices: IntTensor<Self>,
        rev_offsets: IntTensor<Self>,
        rev_edges: IntTensor<Self>,
        edge_weights: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// Input gradient of [`gather_sum`](GraphKernels::gather_sum):
    /// `dX[b,i,c] = Σ_{(p,j) → i} w[p,j]·dY[b,p,c]` → `[B, N_in, C]`.
    fn gather_sum_grad_input(
        dy: FloatTensor<Self>,
        rev_offsets: IntTensor<Self>,
        rev_edges: IntTensor<Self>,
        edge_weights: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// A graph on the device in the form the fused kernels read: the `[N_out, k]`
/// indices and the reverse graph, built once per graph.
#[derive(Clone, Debug)]
pub struct DeviceGraph {
    /// `[N_out, k]` input pixel indices.
    pub indices: Tensor<2, Int>,
    /// `[N_in + 1]` reverse-graph row offsets.
    pub rev_offsets: Tensor<1, Int>,
    /// `[N_out·k]` reverse-graph edges.
    pub rev_edges: Tensor<1, Int>,
    /// The reverse graph by slot ([`ReverseGraph::slot_rows`]) on a GPU for
    /// graphs whose slots read few of the input pixels (downsampling), else
    /// empty; the GPU input gradient runs slot by slot when it is there.
    pub rev_slots: Tensor<1, Int>,
}

impl DeviceGraph {
    /// Uploads a row-major `[n_out, k]` index list (entries in `0..n_in`,
    /// checked by the caller) and its reverse graph to `device`.
    pub fn new(indices: &[i64], n_in: usize, n_out: usize, k: usize, device: &Device) -> Self {
        let reverse = ReverseGraph::new(indices, n_in, k);
        let rev_slots = slot_rows_on(&reverse, k, device);
        Self {
            indices: Tensor::from_data(TensorData::new(indices.to_vec(), [n_out, k]), device),
            rev_offsets: Tensor::from_data(TensorData::new(reverse.offsets, [n_in + 1]), device),
            rev_edges: Tensor::from_data(TensorData::new(reverse.edges, [n_out * k]), device),
            rev_slots,
        }
    }

    /// Input pixels.
    pub fn n_in(&self) -> usize {
        self.rev_offsets.dims()[0] - 1
    }

    /// `[N_out, k]`.
    pub fn dims(&self) -> [usize; 2] {
        self.indices.dims()
    }
}

/// [`ReverseGraph::slot_rows`] on `device` where the GPU input gradient
/// gains from them, else an empty list: on the CPU, whose kernels never read
/// them (they are up to twice the size of the indices), and where a slot
/// reads more than half the input pixels on average (same-resolution and
/// upsampling graphs). There the single-launch input gradient wastes little
/// on zero rows, and the per-slot launches would cost more in passes over
/// `dX` than they save: on an H100, a 4× downsampling graph (256→128, k=9)
/// takes 26.1 ms per step with the lists and 34.9 ms without, a
/// same-resolution one (128→128, k=9) 25.4 ms with and 19.4 ms without.
pub fn slot_rows_on(reverse: &ReverseGraph, k: usize, device: &Device) -> Tensor<1, Int> {
    let on_cpu = device.clone().without_autodiff() == Device::flex();
    let n_in = reverse.offsets.len().saturating_sub(1);
    let mut packed = if on_cpu || k == 0 {
        Vec::new()
    } else {
        reverse.slot_rows(k)
    };
    let pairs = packed.len().saturating_sub(k + 1) / 2;
    if 2 * pairs > k * n_in {
        packed.clear();
    }
    let len = packed.len();
    Tensor::from_data(TensorData::new(packed, [len]), device)
}

/// The fused gather-contract: `x` `[B, N_in, C]`, optional per-edge weights
/// `[N_out, k]`, `kernel` `[k·C, F]`, optional `bias` `[F]` → `[B, N_out, F]`,
/// with no gathered copy. Differentiable in `x`, `kernel` and `bias` (the
/// edge weights are constants); the bias gradient is summed over the rows in
/// two stages, as on the reference path (error growing like `2√rows`, not `rows`).
///
/// Shapes are checked by the calling layer.
pub fn gather_contract(
    x: Tensor<3>,
    graph: &DeviceGraph,
    edge_weights: Option<Tensor<2>>,
    kernel: Tensor<2>,
    bias: Option<Tensor<1>>,
) -> Tensor<3> {
    let weighted = edge_weights.is_some();
    let biased = bias.is_some();
    let w = edge_weights.unwrap_or_else(|| unit_weights(graph, &x));
    // Not read when absent: a one-element stand-in keeps the operand list fixed.
    let bias = bias.unwrap_or_else(|| Tensor::<1>::zeros([1], &x.device()).cast(x.dtype()));
    Tensor::from_dispatch(Dispatch::gather_contract(
        x.into_dispatch(),
        graph.indices.clone().into_dispatch(),
        graph.rev_offsets.clone().into_dispatch(),
        graph.rev_edges.clone().into_dispatch(),
        graph.rev_slots.clone().into_dispatch(),
        w.into_dispatch(),
        kernel.into_dispatch(),
        bias.into_dispatch(),
        weighted,
        biased,
    ))
}

/// The fused weighted gather-sum: `x` `[B, N_in, C]`, per-edge weights
/// `[N_out, k]` → `[B, N_out, C]`. Differentiable in `x`.
pub fn gather_sum(x: Tensor<3>, graph: &DeviceGraph, edge_weights: Tensor<2>) -> Tensor<3> {
    Tensor::from_dispatch(Dispatch::gather_sum(
        x.into_dispatch(),
        graph.indices.clone().into_dispatch(),
        graph.rev_offsets.clone().into_dispatch(),
        graph.rev_edges.clone().into_dispatch(),
        edge_weights.into_dispatch(),
    ))
}

/// Ones `[N_out, k]` on `x`'s device (the kernels do not read them when
/// unweighted; they only fill the operand).
fn unit_weights(graph: &DeviceGraph, x: &Tensor<3>) -> Tensor<2> {
    Tensor::<2>::ones(graph.dims(), &x.device()).cast(x.dtype())
}
