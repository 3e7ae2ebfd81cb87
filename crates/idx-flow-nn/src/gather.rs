//! The gather: reading each output pixel's `k` input pixels from a `[B, N_in, C]`
//! tensor. Every graph layer goes through [`GraphIndices`], so that a fused
//! gather-contract kernel can later replace these few functions alone.
//!
//! The gather is `select` on the pixel axis with the flat `[N_out·k]` index
//! list; its backward is the scatter-add of burn's `select`. Contracting with a
//! kernel reshapes the gathered `[B, N_out, k, C]` to `[B·N_out, k·C]` and does
//! one matmul with the kernel as `[k·C, F]` (slot-major, channel-minor: the
//! memory order of idx_flow's `[k, C, F]` kernel). When the indices are
//! `0, 1, …` in order (the NESTED children graph: pixel `p`'s children are
//! `4p..4p+3`), the gather is a reshape and no copy is made.
//!
//! That is the reference path ([`KernelPath::Reference`]). By default the
//! contractions and weighted sums run as fused backend operations instead
//! ([`idx_flow_kernels`]), which read the input through the graph without the
//! gathered copy; the reshape case stays a reshape on both paths.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::{Error, Result};
use idx_flow_core::reduce::add_bias;
use idx_flow_core::state_dict::{StateLoader, StateVisitor, int_tensor_to_vec};
use idx_flow_healpix::graphs::ConnectionGraph;
use idx_flow_kernels::{DeviceGraph, KernelPath, ReverseGraph};

/// A graph's connection indices on the device (idx_flow's `connection_indices` buffer).
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use idx_flow_healpix::geometry::HealpixGrid;
/// use idx_flow_healpix::graphs::ConnectionGraph;
/// use idx_flow_nn::GraphIndices;
///
/// let device = Device::default();
/// let graph = ConnectionGraph::knn(HealpixGrid::ring(2)?, HealpixGrid::ring(1)?, 4)?;
/// let idx = GraphIndices::new(&graph, &device);
/// let x = Tensor::<3>::ones([2, 48, 3], &device);
/// assert_eq!(idx.gather(x).dims(), [2, 12, 4, 3]);
/// # Ok::<(), idx_flow_nn::Error>(())
/// ```
#[derive(Module, Debug)]
pub struct GraphIndices {
    /// Flat row-major `[N_out·k]` input pixel indices.
    indices: Tensor<1, Int>,
    /// Reverse graph row offsets `[N_in + 1]` (see [`ReverseGraph`]).
    rev_offsets: Tensor<1, Int>,
    /// Reverse graph edges `[N_out·k]`.
    rev_edges: Tensor<1, Int>,
    /// The reverse graph by slot for the GPU input gradient of downsampling
    /// graphs (empty on the CPU and where it would not pay, see
    /// [`DeviceGraph::rev_slots`]). Not part of the record: it is derived
    /// from the indices, and a module moved to another device leaves it
    /// behind (the GPU then uses its input gradient that needs none).
    #[module(skip)]
    rev_slots: Tensor<1, Int>,
    /// Input pixels.
    n_in: usize,
    /// Output pixels.
    n_out: usize,
    /// Connections per output pixel.
    k: usize,
    /// The indices are `0, 1, …, N_out·k − 1` (NESTED children): the gather is a reshape.
    identity: bool,
    /// Fused kernels or the plain tensor-op reference.
    #[module(skip)]
    path: KernelPath,
}

impl GraphIndices {
    /// The graph's indices on `device`.
    pub fn new(graph: &ConnectionGraph, device: &Device) -> Self {
        Self::upload(
            graph.indices(),
            graph.n_in(),
            graph.n_out(),
            graph.k(),
            device,
        )
    }

    /// Indices given as a row-major `[n_out, k]` list, checked to lie in `0..n_in`.
    pub fn from_indices(
        indices: &[i64],
        n_in: usize,
        n_out: usize,
        k: usize,
        device: &Device,
    ) -> Result<Self> {
        if k == 0 || n_out == 0 || n_in == 0 {
            return Err(Error::arg(
                "connection indices",
                format!("n_in = {n_in}, n_out = {n_out}, k = {k}: expected all at least 1"),
            ));
        }
        if indices.len() != n_out * k {
            return Err(Error::Shape {
                context: "connection indices".into(),
                expected: format!("[{n_out}, {k}] ({} values)", n_out * k),
                got: format!("{} values", indices.len()),
            });
        }
        if let Some((pos, bad)) = indices
            .iter()
            .enumerate()
            .find(|&(_, &i)| i < 0 || i as usize >= n_in)
        {
            return Err(Error::arg(
                "connection indices",
                format!(
                    "entry [{}, {}] = {bad} is not an input pixel (expected 0..{n_in})",
                    pos / k,
                    pos % k
                ),
            ));
        }
        Ok(Self::upload(indices, n_in, n_out, k, device))
    }

    fn upload(indices: &[i64], n_in: usize, n_out: usize, k: usize, device: &Device) -> Self {
        let data = TensorData::new(indices.to_vec(), [indices.len()]);
        let identity =
            indices.len() == n_in && indices.iter().enumerate().all(|(i, &v)| v == i as i64);
        let reverse = ReverseGraph::new(indices, n_in, k);
        let rev_slots = idx_flow_kernels::slot_rows_on(&reverse, k, device);
        Self {
            indices: Tensor::from_data(data, device),
            rev_offsets: Tensor::from_data(TensorData::new(reverse.offsets, [n_in + 1]), device),
            rev_edges: Tensor::from_data(TensorData::new(reverse.edges, [n_out * k]), device),
            rev_slots,
            n_in,
            n_out,
            k,
            identity,
            path: idx_flow_kernels::options().path,
        }
    }

    /// The same indices running on `path` (default: the
    /// [`options`](idx_flow_kernels::options)' path, [`KernelPath::Fused`]
    /// unless a program set another).
    pub fn with_path(mut self, path: KernelPath) -> Self {
        self.path = path;
        self
    }

    /// The path the contractions run on.
    pub fn path(&self) -> KernelPath {
        self.path
    }

    /// Whether the contractions run as fused backend operations: the fused
    /// path, unless the gather is a reshape (which no kernel beats).
    fn fused(&self) -> bool {
        self.path == KernelPath::Fused && !self.identity
    }

    /// The graph in the form the fused kernels read.
    fn device_graph(&self) -> DeviceGraph {
        DeviceGraph {
            indices: self.indices.clone().reshape([self.n_out, self.k]),
            rev_offsets: self.rev_offsets.clone(),
            rev_edges: self.rev_edges.clone(),
            rev_slots: if self.rev_slots.device() == self.indices.device() {
                self.rev_slots.clone()
            } else {
                Tensor::empty([0], &self.indices.device())
            },
        }
    }

    /// Number of input pixels.
    pub fn n_in(&self) -> usize {
        self.n_in
    }

    /// Number of output pixels.
    pub fn n_out(&self) -> usize {
        self.n_out
    }

    /// Connections per output pixel.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The indices, row-major `[n_out, k]`, copied to the host.
    pub fn to_vec(&self) -> Vec<i64> {
        int_tensor_to_vec(self.indices.clone()).0
    }

    /// `x[:, idx, :]`: `[B, N_in, C]` → `[B, N_out, k, C]`.
    ///
    /// The pixel axis of `x` must be `n_in` (checked by the calling layers).
    pub fn gather(&self, x: Tensor<3>) -> Tensor<4> {
        let [b, _, c] = x.dims();
        if self.identity {
            return x.reshape([b, self.n_out, self.k, c]);
        }
        x.select(1, self.indices.clone())
            .reshape([b, self.n_out, self.k, c])
    }

    /// The gathered neighbourhoods flattened per output pixel:
    /// `[B, N_in, C]` → `[B·N_out, k·C]` (idx_flow's SpatialMLP / patch input).
    pub fn gather_rows(&self, x: Tensor<3>) -> Tensor<2> {
        let [b, _, c] = x.dims();
        if self.identity {
            return x.reshape([b * self.n_out, self.k * c]);
        }
        x.select(1, self.indices.clone())
            .reshape([b * self.n_out, self.k * c])
    }

    /// The gather-contract `Y[b,p,f] = Σ_j Σ_c w[p,j] X[b, idx[p,j], c] K[j,c,f] + bias[f]`:
    /// `x` `[B, N_in, C]`, optional per-edge `weights` `[N_out, k, 1]`, `kernel`
    /// `[k, C, F]`, optional `bias` `[F]` → `[B, N_out, F]`.
    pub fn contract(
        &self,
        x: Tensor<3>,
        weights: Option<&Tensor<3>>,
        kernel: Tensor<3>,
        bias: Option<Tensor<1>>,
    ) -> Tensor<3> {
        let b = x.dims()[0];
        let [k, c, f] = kernel.dims();
        self.contract_rows_weighted(x, weights, kernel.reshape([k * c, f]), bias)
            .reshape([b, self.n_out, f])
    }

    /// The gathered rows times a matrix, plus an optional bias: `x` `[B, N_in, C]`,
    /// `kernel` `[k·C, F]`, `bias` `[F]` → `[B·N_out, F]`, i.e.
    /// `gather_rows(x).matmul(kernel) + bias` (the first linear layer of
    /// SpatialMLP, the patch projection) without the gathered copy.
    pub fn contract_rows(
        &self,
        x: Tensor<3>,
        kernel: Tensor<2>,
        bias: Option<Tensor<1>>,
    ) -> Tensor<2> {
        self.contract_rows_weighted(x, None, kernel, bias)
    }

    fn contract_rows_weighted(
        &self,
        x: Tensor<3>,
        weights: Option<&Tensor<3>>,
        kernel: Tensor<2>,
        bias: Option<Tensor<1>>,
    ) -> Tensor<2> {
        let [b, _, c] = x.dims();
        let [_, f] = kernel.dims();
        if self.fused() {
            let w = weights.map(|w| w.clone().reshape([self.n_out, self.k]));
            return idx_flow_kernels::gather_contract(x, &self.device_graph(), w, kernel, bias)
                .reshape([b * self.n_out, f]);
        }
        let rows = match weights {
            None => self.gather_rows(x),
            Some(w) => {
                let g = self.gather(x) * w.clone().unsqueeze_dim::<4>(0);
                g.reshape([b * self.n_out, self.k * c])
            }
        };
        let y = rows.matmul(kernel);
        match bias {
            Some(bias) => add_bias(y, bias),
            None => y,
        }
    }

    /// The weighted sum over each output pixel's neighbours:
    /// `Y[b,p,c] = Σ_j w[p,j] X[b, idx[p,j], c]`, `x` `[B, N_in, C]`,
    /// `weights` `[N_out, k, 1]` → `[B, N_out, C]` (SpatialUpsampling, mean pooling).
    pub fn weighted_sum(&self, x: Tensor<3>, weights: &Tensor<3>) -> Tensor<3> {
        if self.fused() {
            let w = weights.clone().reshape([self.n_out, self.k]);
            return idx_flow_kernels::gather_sum(x, &self.device_graph(), w);
        }
        let g = self.gather(x) * weights.clone().unsqueeze_dim::<4>(0);
        g.sum_dim(2).squeeze_dim::<3>(2)
    }

    /// Writes the `connection_indices` buffer (`[N_out, k]` int64).
    pub(crate) fn visit<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        v.int_buffer(
            &format!("{prefix}connection_indices"),
            &[self.n_out, self.k],
            &self.to_vec(),
        );
    }

    /// Reads the `connection_indices` buffer, as PyTorch's `load_state_dict`
    /// does: the loaded indices replace the graph's (same shape, entries in `0..N_in`).
    pub(crate) fn load(self, prefix: &str, loader: &mut StateLoader<'_>) -> Result<Self> {
        let key = format!("{prefix}connection_indices");
        let v = loader.ints(&key, &[self.n_out, self.k])?;
        Ok(
            Self::from_indices(&v, self.n_in, self.n_out, self.k, &self.indices.device())?
                .with_path(self.path),
        )
    }
}
