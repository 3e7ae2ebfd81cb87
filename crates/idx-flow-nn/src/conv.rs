//! Index convolutions: [`SpatialConv`] (downsampling), [`SpatialTransposeConv`]
//! (upsampling, the same operation on an upsampling graph) and the
//! parameter-free [`SpatialUpsampling`].
//!
//! `Y[b,p,f] = Σ_j Σ_c w[p,j]·X[b, idx[p,j], c]·K[j,c,f] + bias[f]`, with
//! `w` the optional fixed per-edge weights (idx_flow's `kernel_weights`).
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use idx_flow_healpix::geometry::HealpixGrid;
//! use idx_flow_healpix::graphs::{ConnectionGraph, WeightMethod};
//! use idx_flow_nn::{
//!     SpatialConvConfig, SpatialTransposeConvConfig, SpatialUpsamplingConfig, UpsamplingKernel,
//! };
//!
//! let device = Device::default();
//! let (hi, lo) = (HealpixGrid::ring(4)?, HealpixGrid::ring(2)?);
//! let down = ConnectionGraph::knn(hi, lo, 4)?;
//! let up = ConnectionGraph::knn(lo, hi, 4)?.with_weights(WeightMethod::InverseSquare)?;
//!
//! let conv = SpatialConvConfig::new(3, 16).init(&down, &device)?;
//! let deconv = SpatialTransposeConvConfig::new(16, 3)
//!     .with_use_graph_weights(true)
//!     .init(&up, &device)?;
//! let interp = SpatialUpsamplingConfig::new()
//!     .with_interpolation(UpsamplingKernel::Idw)
//!     .init(&up, &device)?;
//!
//! let x = Tensor::<3>::random([2, 192, 3], Distribution::Normal(0.0, 1.0), &device);
//! let z = conv.forward(x);                 // [2, 48, 16]
//! assert_eq!(deconv.forward(z.clone()).dims(), [2, 192, 3]);
//! assert_eq!(interp.forward(z).dims(), [2, 192, 16]);
//! # Ok::<(), idx_flow_nn::Error>(())
//! ```

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};

use super::gather::GraphIndices;
use super::{check_dims, check_positive, or_panic};
use crate::{Error, Result};
use idx_flow_core::init::{Initializer, WeightInit};
use idx_flow_core::state_dict::{StateLoader, StateVisitor, TorchState, key};
use idx_flow_healpix::graphs::{ConnectionGraph, Interpolation, upsampling_weights};

/// Configuration of a [`SpatialConv`] (idx_flow's constructor arguments; the
/// graph gives `output_points`, `connection_indices` and, when asked, `kernel_weights`).
#[derive(Config, Debug)]
pub struct SpatialConvConfig {
    /// Input channels `C_in`.
    pub in_channels: usize,
    /// Output channels (filters) `F`.
    pub filters: usize,
    /// Whether there is a bias. Default: true.
    #[config(default = true)]
    pub bias: bool,
    /// Kernel initialisation. Default: xavier_uniform.
    #[config(default = "WeightInit::XavierUniform")]
    pub weight_init: WeightInit,
    /// Gain of xavier/orthogonal initialisation. Default: 1.
    #[config(default = 1.0)]
    pub weight_init_gain: f64,
    /// Initial value of every bias entry. Default: 0.
    #[config(default = 0.0)]
    pub bias_init: f64,
    /// Scale each neighbour by the graph's per-edge weights (idx_flow's
    /// `kernel_weights`); the graph must carry weights. Default: false.
    #[config(default = false)]
    pub use_graph_weights: bool,
}

/// idx_flow's `SpatialConv`: a learnable kernel `[k, C_in, F]` over each output
/// pixel's k graph neighbours.
#[derive(Module, Debug)]
pub struct SpatialConv {
    /// The graph's connection indices (`connection_indices` buffer).
    pub indices: GraphIndices,
    /// Fixed per-edge weights `[N_out, k, 1]` (`kernel_weights` buffer), if any.
    pub kernel_weights: Option<Tensor<3>>,
    /// `[k, C_in, F]`.
    pub kernel: Param<Tensor<3>>,
    /// `[F]` (`bias_param`).
    pub bias_param: Option<Param<Tensor<1>>>,
}

/// Per-edge weights of a graph as a `[N_out, k, 1]` tensor.
fn edge_weights(graph: &ConnectionGraph, w: &[f64], device: &Device) -> Tensor<3> {
    let v: Vec<f32> = w.iter().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(v, [graph.n_out(), graph.k(), 1]), device)
}

impl SpatialConvConfig {
    /// Builds the layer for `graph` on `device`.
    pub fn init(&self, graph: &ConnectionGraph, device: &Device) -> Result<SpatialConv> {
        check_positive("in_channels", self.in_channels)?;
        check_positive("filters", self.filters)?;
        let kernel_weights = if self.use_graph_weights {
            let w = graph.weights().ok_or_else(|| {
                Error::arg(
                    "use_graph_weights",
                    "the graph carries no weights (use ConnectionGraph::with_weights)",
                )
            })?;
            Some(edge_weights(graph, w, device))
        } else {
            None
        };
        let init = Initializer::new(self.weight_init).with_gain(self.weight_init_gain);
        let kernel = init.init([graph.k(), self.in_channels, self.filters], device)?;
        Ok(SpatialConv {
            indices: GraphIndices::new(graph, device),
            kernel_weights,
            kernel: Param::from_tensor(kernel),
            bias_param: self
                .bias
                .then(|| Param::from_tensor(Tensor::full([self.filters], self.bias_init, device))),
        })
    }
}

impl SpatialConv {
    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.kernel.val().dims()[1]
    }

    /// Output channels.
    pub fn filters(&self) -> usize {
        self.kernel.val().dims()[2]
    }

    fn run(&self, layer: &str, x: Tensor<3>) -> Result<Tensor<3>> {
        check_dims(
            layer,
            &x.dims(),
            &[None, Some(self.indices.n_in()), Some(self.in_channels())],
        )?;
        Ok(self.indices.contract(
            x,
            self.kernel_weights.as_ref(),
            self.kernel.val(),
            self.bias_param.as_ref().map(|b| b.val()),
        ))
    }

    /// `[B, N_in, C_in]` → `[B, N_out, F]`; a wrong input shape is an [`Error::Shape`].
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        self.run("SpatialConv", x)
    }

    /// `[B, N_in, C_in]` → `[B, N_out, F]`.
    ///
    /// # Panics
    /// On a wrong input shape, with [`try_forward`](Self::try_forward)'s message.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }
}

impl TorchState for SpatialConv {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        if let Some(b) = &self.bias_param {
            v.param(&key(prefix, "bias_param"), b);
        }
        self.indices.visit(prefix, v);
        v.param(&key(prefix, "kernel"), &self.kernel);
        if let Some(w) = &self.kernel_weights {
            v.buffer(&key(prefix, "kernel_weights"), w);
        }
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(SpatialConv {
            indices: self.indices.load(prefix, l)?,
            kernel_weights: match self.kernel_weights {
                Some(w) => Some(l.buffer(&key(prefix, "kernel_weights"), w)?),
                None => None,
            },
            kernel: l.param(&key(prefix, "kernel"), self.kernel)?,
            bias_param: match self.bias_param {
                Some(b) => Some(l.param(&key(prefix, "bias_param"), b)?),
                None => None,
            },
        })
    }
}

/// Configuration of a [`SpatialTransposeConv`]; the same arguments as
/// [`SpatialConvConfig`] (idx_flow's two classes compute the same thing).
#[derive(Config, Debug)]
pub struct SpatialTransposeConvConfig {
    /// Input channels `C_in` (of the coarse grid).
    pub in_channels: usize,
    /// Output channels (filters) `F`.
    pub filters: usize,
    /// Whether there is a bias. Default: true.
    #[config(default = true)]
    pub bias: bool,
    /// Kernel initialisation. Default: xavier_uniform.
    #[config(default = "WeightInit::XavierUniform")]
    pub weight_init: WeightInit,
    /// Gain of xavier/orthogonal initialisation. Default: 1.
    #[config(default = 1.0)]
    pub weight_init_gain: f64,
    /// Initial value of every bias entry. Default: 0.
    #[config(default = 0.0)]
    pub bias_init: f64,
    /// Scale each neighbour by the graph's per-edge weights (`kernel_weights`). Default: false.
    #[config(default = false)]
    pub use_graph_weights: bool,
}

/// idx_flow's `SpatialTransposeConv`: a [`SpatialConv`] on an upsampling graph
/// (coarse input, fine output), state dict names `kernel`, `bias_param`,
/// `connection_indices`, `kernel_weights`.
#[derive(Module, Debug)]
pub struct SpatialTransposeConv {
    /// The convolution.
    pub conv: SpatialConv,
}

impl SpatialTransposeConvConfig {
    /// Builds the layer for `graph` (coarse → fine) on `device`.
    pub fn init(&self, graph: &ConnectionGraph, device: &Device) -> Result<SpatialTransposeConv> {
        let conv = SpatialConvConfig {
            in_channels: self.in_channels,
            filters: self.filters,
            bias: self.bias,
            weight_init: self.weight_init,
            weight_init_gain: self.weight_init_gain,
            bias_init: self.bias_init,
            use_graph_weights: self.use_graph_weights,
        }
        .init(graph, device)?;
        Ok(SpatialTransposeConv { conv })
    }
}

impl SpatialTransposeConv {
    /// `[B, N_in, C_in]` → `[B, N_out, F]`; a wrong input shape is an [`Error::Shape`].
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        self.conv.run("SpatialTransposeConv", x)
    }

    /// `[B, N_in, C_in]` → `[B, N_out, F]`.
    ///
    /// # Panics
    /// On a wrong input shape, with [`try_forward`](Self::try_forward)'s message.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }
}

impl TorchState for SpatialTransposeConv {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        self.conv.visit_state(prefix, v)
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(SpatialTransposeConv {
            conv: self.conv.load_state(prefix, l)?,
        })
    }
}

/// Interpolation kernel of [`SpatialUpsampling`] (idx_flow's `InterpolationMethod`).
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum UpsamplingKernel {
    /// `max(0, 1 − d/r)`.
    Linear,
    /// `1 / (d + 1e-10)²`.
    Idw,
    /// `exp(−½ (d/r)²)`.
    Gaussian,
}

impl From<UpsamplingKernel> for Interpolation {
    fn from(k: UpsamplingKernel) -> Self {
        match k {
            UpsamplingKernel::Linear => Interpolation::Linear,
            UpsamplingKernel::Idw => Interpolation::Idw,
            UpsamplingKernel::Gaussian => Interpolation::Gaussian,
        }
    }
}

impl From<Interpolation> for UpsamplingKernel {
    fn from(k: Interpolation) -> Self {
        match k {
            Interpolation::Linear => UpsamplingKernel::Linear,
            Interpolation::Idw => UpsamplingKernel::Idw,
            Interpolation::Gaussian => UpsamplingKernel::Gaussian,
        }
    }
}

impl std::str::FromStr for UpsamplingKernel {
    type Err = Error;
    /// idx_flow's names: linear, idw, gaussian.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "linear" => Ok(UpsamplingKernel::Linear),
            "idw" => Ok(UpsamplingKernel::Idw),
            "gaussian" => Ok(UpsamplingKernel::Gaussian),
            _ => Err(Error::arg(
                "interpolation",
                format!("unknown interpolation '{s}', expected one of linear, idw, gaussian"),
            )),
        }
    }
}

/// Configuration of a [`SpatialUpsampling`].
#[derive(Config, Debug)]
pub struct SpatialUpsamplingConfig {
    /// Interpolation kernel. Default: linear.
    #[config(default = "UpsamplingKernel::Linear")]
    pub interpolation: UpsamplingKernel,
    /// Kernel radius in kilometres; `None` (or 0, as in idx_flow) is the graph's
    /// largest distance. Used by linear and gaussian. Default: None.
    #[config(default = "None")]
    pub kernel_radius: Option<f64>,
}

/// idx_flow's `SpatialUpsampling`: a fixed distance-weighted average of each
/// output pixel's k neighbours, weights normalised per row (`interpolation_weights`).
#[derive(Module, Debug)]
pub struct SpatialUpsampling {
    /// The graph's connection indices (`connection_indices` buffer).
    pub indices: GraphIndices,
    /// `[N_out, k, 1]` (`interpolation_weights` buffer).
    pub interpolation_weights: Tensor<3>,
}

impl SpatialUpsamplingConfig {
    /// Builds the layer for `graph` on `device` (weights from the graph's
    /// distances in km, as idx_flow's `compute_connection_indices`).
    pub fn init(&self, graph: &ConnectionGraph, device: &Device) -> Result<SpatialUpsampling> {
        let w = upsampling_weights(
            &graph.distances_km(),
            graph.k(),
            self.interpolation.into(),
            self.kernel_radius,
        )?;
        Ok(SpatialUpsampling {
            indices: GraphIndices::new(graph, device),
            interpolation_weights: edge_weights(graph, &w, device),
        })
    }
}

impl SpatialUpsampling {
    /// `[B, N_in, C]` → `[B, N_out, C]`; a wrong input shape is an [`Error::Shape`].
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        check_dims(
            "SpatialUpsampling",
            &x.dims(),
            &[None, Some(self.indices.n_in()), None],
        )?;
        Ok(self.indices.weighted_sum(x, &self.interpolation_weights))
    }

    /// `[B, N_in, C]` → `[B, N_out, C]`.
    ///
    /// # Panics
    /// On a wrong input shape, with [`try_forward`](Self::try_forward)'s message.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }
}

impl TorchState for SpatialUpsampling {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        self.indices.visit(prefix, v);
        v.buffer(
            &key(prefix, "interpolation_weights"),
            &self.interpolation_weights,
        );
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(SpatialUpsampling {
            indices: self.indices.load(prefix, l)?,
            interpolation_weights: l.buffer(
                &key(prefix, "interpolation_weights"),
                self.interpolation_weights,
            )?,
        })
    }
}
