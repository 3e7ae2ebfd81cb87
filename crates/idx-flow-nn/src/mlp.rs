//! MLP layers: [`SpatialMlp`] (a shared MLP on each output pixel's flattened
//! neighbourhood, `[k·C_in]`) and [`GlobalMlp`] (a shared MLP on each point's channels).
//!
//! Per hidden layer `i`, as idx_flow: `Linear → BatchNorm1d (if enabled) →
//! activation → Dropout (not after the last layer)`; then, with `residual`, the
//! MLP input is added, through a linear projection `residual_proj` when its
//! width differs from the output's.
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use idx_flow_healpix::geometry::HealpixGrid;
//! use idx_flow_healpix::graphs::ConnectionGraph;
//! use idx_flow_nn::{Activation, GlobalMlpConfig, SpatialMlpConfig};
//!
//! let device = Device::default();
//! let graph = ConnectionGraph::knn(HealpixGrid::ring(4)?, HealpixGrid::ring(2)?, 4)?;
//! let local = SpatialMlpConfig::new(3)
//!     .with_hidden_units(vec![16, 8])
//!     .with_activations(vec![Activation::Gelu, Activation::Linear])
//!     .with_use_batch_norm(true)
//!     .with_residual(true)
//!     .init(&graph, &device)?;
//! let pointwise = GlobalMlpConfig::new(8).init(&device)?; // [64, 64], gelu then linear
//! let x = Tensor::<3>::random([2, 192, 3], Distribution::Normal(0.0, 1.0), &device);
//! let y = pointwise.forward(local.forward(x));
//! assert_eq!(y.dims(), [2, 48, 64]);
//! # Ok::<(), idx_flow_nn::Error>(())
//! ```

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Device, Tensor};

use super::activation::Activation;
use super::gather::GraphIndices;
use super::linear::{Linear, LinearConfig};
use super::norm::BatchNorm1d;
use super::{check_dims, check_positive, or_panic};
use crate::{Error, Result};
use idx_flow_core::init::{Initializer, WeightInit};
use idx_flow_core::state_dict::{StateLoader, StateVisitor, TorchState, key};
use idx_flow_healpix::graphs::ConnectionGraph;

/// The layer stack shared by [`SpatialMlp`] and [`GlobalMlp`], on rows `[M, D_in]`.
#[derive(Module, Debug)]
pub struct MlpStack {
    /// `mlp_layers.{i}`: weight `[out, in]`, bias zero at start.
    pub mlp_layers: Vec<Linear>,
    /// `bn_layers.{i}` (empty without batch norm).
    pub bn_layers: Vec<BatchNorm1d>,
    /// One dropout after every layer but the last (empty when the rate is 0).
    pub dropout_layers: Vec<Dropout>,
    /// `residual_proj` (when residual and the widths differ).
    pub residual_proj: Option<Linear>,
    /// Whether the input is added to the output.
    pub residual: bool,
    /// One activation per layer.
    #[module(skip)]
    pub activations: Vec<Activation>,
}

struct StackSpec<'a> {
    layer: &'static str,
    input_dim: usize,
    hidden_units: &'a [usize],
    activations: &'a [Activation],
    dropout: f64,
    use_batch_norm: bool,
    residual: bool,
    weight_init: WeightInit,
}

impl StackSpec<'_> {
    fn build(&self, device: &Device) -> Result<MlpStack> {
        if self.hidden_units.is_empty() {
            return Err(Error::arg(
                "hidden_units",
                format!("{}: expected at least one layer", self.layer),
            ));
        }
        if self.hidden_units.len() != self.activations.len() {
            return Err(Error::arg(
                "activations",
                format!(
                    "{}: length of hidden_units ({}) must match length of activations ({})",
                    self.layer,
                    self.hidden_units.len(),
                    self.activations.len()
                ),
            ));
        }
        for &h in self.hidden_units {
            check_positive("hidden_units", h)?;
        }
        if !(self.dropout.is_finite() && (0.0..1.0).contains(&self.dropout)) {
            return Err(Error::arg(
                "dropout",
                format!("got {}, expected a probability in [0, 1)", self.dropout),
            ));
        }
        let init = Initializer::new(self.weight_init);
        let mut mlp_layers = Vec::new();
        let mut bn_layers = Vec::new();
        let mut dropout_layers = Vec::new();
        let n = self.hidden_units.len();
        let mut prev = self.input_dim;
        for (i, &h) in self.hidden_units.iter().enumerate() {
            mlp_layers.push(
                LinearConfig::new(prev, h)
                    .with_initializer(Some(init.clone()))
                    .init(device)?,
            );
            if self.use_batch_norm {
                bn_layers.push(BatchNorm1d::new(h, 1e-5, 0.1, true, device)?);
            }
            if self.dropout > 0.0 && i + 1 < n {
                dropout_layers.push(DropoutConfig::new(self.dropout).init());
            }
            prev = h;
        }
        let out = self.hidden_units[n - 1];
        let residual_proj = if self.residual && self.input_dim != out {
            Some(
                LinearConfig::new(self.input_dim, out)
                    .with_initializer(Some(init))
                    .with_zero_bias(false)
                    .init(device)?,
            )
        } else {
            None
        };
        Ok(MlpStack {
            mlp_layers,
            bn_layers,
            dropout_layers,
            residual_proj,
            residual: self.residual,
            activations: self.activations.to_vec(),
        })
    }
}

impl MlpStack {
    /// Input width.
    pub fn input_dim(&self) -> usize {
        self.mlp_layers[0].d_input()
    }

    /// Output width.
    pub fn output_dim(&self) -> usize {
        self.mlp_layers[self.mlp_layers.len() - 1].d_output()
    }

    /// `[M, D_in]` → `[M, D_out]`.
    pub fn forward_rows(&self, layer: &str, x: Tensor<2>) -> Result<Tensor<2>> {
        let first = self.mlp_layers[0].forward(x.clone());
        let residual = self.residual.then(|| match &self.residual_proj {
            Some(p) => p.forward(x),
            None => x,
        });
        self.forward_after_first(layer, first, residual)
    }

    /// The stack after the first linear layer's output `[M, hidden_units[0]]`,
    /// adding `residual` `[M, D_out]` at the end when there is one.
    fn forward_after_first(
        &self,
        layer: &str,
        first: Tensor<2>,
        residual: Option<Tensor<2>>,
    ) -> Result<Tensor<2>> {
        let mut out = first;
        for (i, lin) in self.mlp_layers.iter().enumerate() {
            if i > 0 {
                out = lin.forward(out);
            }
            if let Some(bn) = self.bn_layers.get(i) {
                out = bn.forward_rows(layer, out)?;
            }
            out = self.activations[i].forward(out);
            if let Some(d) = self.dropout_layers.get(i) {
                out = d.forward(out);
            }
        }
        if let Some(r) = residual {
            out = out + r;
        }
        Ok(out)
    }
}

impl TorchState for MlpStack {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        for (i, l) in self.mlp_layers.iter().enumerate() {
            l.visit_state(&key(prefix, &format!("mlp_layers.{i}.")), v);
        }
        for (i, b) in self.bn_layers.iter().enumerate() {
            b.visit_state(&key(prefix, &format!("bn_layers.{i}.")), v);
        }
        if let Some(p) = &self.residual_proj {
            p.visit_state(&key(prefix, "residual_proj."), v);
        }
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        let mlp_layers = self
            .mlp_layers
            .into_iter()
            .enumerate()
            .map(|(i, m)| m.load_state(&key(prefix, &format!("mlp_layers.{i}.")), l))
            .collect::<Result<_>>()?;
        let bn_layers = self
            .bn_layers
            .into_iter()
            .enumerate()
            .map(|(i, m)| m.load_state(&key(prefix, &format!("bn_layers.{i}.")), l))
            .collect::<Result<_>>()?;
        let residual_proj = match self.residual_proj {
            Some(p) => Some(p.load_state(&key(prefix, "residual_proj."), l)?),
            None => None,
        };
        Ok(MlpStack {
            mlp_layers,
            bn_layers,
            residual_proj,
            ..self
        })
    }
}

/// Configuration of a [`SpatialMlp`].
#[derive(Config, Debug)]
pub struct SpatialMlpConfig {
    /// Input channels `C_in` (the MLP input is `k·C_in` wide).
    pub in_channels: usize,
    /// Width of each layer; the last is the output width. Default: [32, 32, 32].
    #[config(default = "vec![32, 32, 32]")]
    pub hidden_units: Vec<usize>,
    /// One activation per layer. Default: [linear, linear, linear].
    #[config(default = "vec![Activation::Linear; 3]")]
    pub activations: Vec<Activation>,
    /// Dropout rate after every layer but the last, in `[0, 1)`. Default: 0.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Batch norm after every linear layer. Default: false.
    #[config(default = false)]
    pub use_batch_norm: bool,
    /// Add the flattened neighbourhood (projected if needed) to the output. Default: false.
    #[config(default = false)]
    pub residual: bool,
    /// Initialisation of the linear weights (biases start at zero). Default: xavier_uniform.
    #[config(default = "WeightInit::XavierUniform")]
    pub weight_init: WeightInit,
}

/// idx_flow's `SpatialMLP`: `Y[b,p] = MLP([X[b,idx[p,0]] ‖ … ‖ X[b,idx[p,k−1]]])`.
#[derive(Module, Debug)]
pub struct SpatialMlp {
    /// The graph's connection indices (`connection_indices` buffer).
    pub indices: GraphIndices,
    /// The layers.
    pub mlp: MlpStack,
}

impl SpatialMlpConfig {
    /// Builds the layer for `graph` on `device`.
    pub fn init(&self, graph: &ConnectionGraph, device: &Device) -> Result<SpatialMlp> {
        check_positive("in_channels", self.in_channels)?;
        let mlp = StackSpec {
            layer: "SpatialMLP",
            input_dim: graph.k() * self.in_channels,
            hidden_units: &self.hidden_units,
            activations: &self.activations,
            dropout: self.dropout,
            use_batch_norm: self.use_batch_norm,
            residual: self.residual,
            weight_init: self.weight_init,
        }
        .build(device)?;
        Ok(SpatialMlp {
            indices: GraphIndices::new(graph, device),
            mlp,
        })
    }
}

impl SpatialMlp {
    /// `[B, N_in, C_in]` → `[B, N_out, hidden_units[-1]]`; a wrong input shape is an [`Error::Shape`].
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        let c = self.mlp.input_dim() / self.indices.k();
        check_dims(
            "SpatialMLP",
            &x.dims(),
            &[None, Some(self.indices.n_in()), Some(c)],
        )?;
        let b = x.dims()[0];
        let mlp = &self.mlp;
        let out = if mlp.residual && mlp.residual_proj.is_none() {
            // The identity residual adds the gathered rows themselves.
            mlp.forward_rows("SpatialMLP", self.indices.gather_rows(x))?
        } else {
            // Both linear maps of the gathered rows run fused.
            let first = mlp.mlp_layers[0].forward_gathered(&self.indices, x.clone());
            let residual = mlp
                .residual_proj
                .as_ref()
                .filter(|_| mlp.residual)
                .map(|p| p.forward_gathered(&self.indices, x));
            mlp.forward_after_first("SpatialMLP", first, residual)?
        };
        Ok(out.reshape([b, self.indices.n_out(), self.mlp.output_dim()]))
    }

    /// `[B, N_in, C_in]` → `[B, N_out, hidden_units[-1]]`.
    ///
    /// # Panics
    /// On a wrong input shape, with [`try_forward`](Self::try_forward)'s message.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }
}

impl TorchState for SpatialMlp {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        self.indices.visit(prefix, v);
        self.mlp.visit_state(prefix, v);
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(SpatialMlp {
            indices: self.indices.load(prefix, l)?,
            mlp: self.mlp.load_state(prefix, l)?,
        })
    }
}

/// Configuration of a [`GlobalMlp`].
#[derive(Config, Debug)]
pub struct GlobalMlpConfig {
    /// Input channels `C_in`.
    pub in_channels: usize,
    /// Width of each layer; the last is the output width. Default: [64, 64].
    #[config(default = "vec![64, 64]")]
    pub hidden_units: Vec<usize>,
    /// One activation per layer. Default: [gelu, linear].
    #[config(default = "vec![Activation::Gelu, Activation::Linear]")]
    pub activations: Vec<Activation>,
    /// Dropout rate after every layer but the last, in `[0, 1)`. Default: 0.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Batch norm after every linear layer. Default: false.
    #[config(default = false)]
    pub use_batch_norm: bool,
    /// Add the input (projected if needed) to the output. Default: false.
    #[config(default = false)]
    pub residual: bool,
    /// Initialisation of the linear weights (biases start at zero). Default: xavier_uniform.
    #[config(default = "WeightInit::XavierUniform")]
    pub weight_init: WeightInit,
}

/// idx_flow's `GlobalMLP`: `Y[b,n] = MLP(X[b,n])` for every point.
#[derive(Module, Debug)]
pub struct GlobalMlp {
    /// The layers.
    pub mlp: MlpStack,
}

impl GlobalMlpConfig {
    /// Builds the layer on `device`.
    pub fn init(&self, device: &Device) -> Result<GlobalMlp> {
        check_positive("in_channels", self.in_channels)?;
        let mlp = StackSpec {
            layer: "GlobalMLP",
            input_dim: self.in_channels,
            hidden_units: &self.hidden_units,
            activations: &self.activations,
            dropout: self.dropout,
            use_batch_norm: self.use_batch_norm,
            residual: self.residual,
            weight_init: self.weight_init,
        }
        .build(device)?;
        Ok(GlobalMlp { mlp })
    }
}

impl GlobalMlp {
    /// `[B, N, C_in]` → `[B, N, hidden_units[-1]]`; a wrong input shape is an [`Error::Shape`].
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        check_dims(
            "GlobalMLP",
            &x.dims(),
            &[None, None, Some(self.mlp.input_dim())],
        )?;
        let [b, n, c] = x.dims();
        let out = self.mlp.forward_rows("GlobalMLP", x.reshape([b * n, c]))?;
        Ok(out.reshape([b, n, self.mlp.output_dim()]))
    }

    /// `[B, N, C_in]` → `[B, N, hidden_units[-1]]`.
    ///
    /// # Panics
    /// On a wrong input shape, with [`try_forward`](Self::try_forward)'s message.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }
}

impl TorchState for GlobalMlp {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        self.mlp.visit_state(prefix, v);
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(GlobalMlp {
            mlp: self.mlp.load_state(prefix, l)?,
        })
    }
}
