//! Vision-transformer layers on the sphere: [`SpatialPatchEmbedding`] (a linear
//! map of each output pixel's flattened neighbourhood), [`SpatialTransformerBlock`]
//! (pre-norm attention and feed-forward, with residuals) and [`SpatialVit`]
//! (embedding + learned position table + blocks + final norm + optional projection).
//!
//! `SpatialVit`: `E = PatchEmbed(X) + pos_embed` → dropout → blocks → `LayerNorm`
//! → `output_proj` (when `output_dim ≠ embed_dim`). Each block:
//! `h = x + MHSA(LN₁(x))`, `y = h + FFN(LN₂(h))` with
//! `FFN = Linear → act → Dropout → Linear → Dropout` (`ffn.0`, `ffn.3`).
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use idx_flow_healpix::geometry::HealpixGrid;
//! use idx_flow_healpix::graphs::ConnectionGraph;
//! use idx_flow_nn::SpatialVitConfig;
//!
//! let device = Device::default();
//! let graph = ConnectionGraph::knn(HealpixGrid::ring(4)?, HealpixGrid::ring(2)?, 4)?;
//! let vit = SpatialVitConfig::new(3)
//!     .with_embed_dim(16)
//!     .with_depth(2)
//!     .with_num_heads(4)
//!     .with_output_dim(Some(5))
//!     .init(&graph, &device)?;
//! let x = Tensor::<3>::random([2, 192, 3], Distribution::Normal(0.0, 1.0), &device);
//! assert_eq!(vit.forward(x).dims(), [2, 48, 5]);
//! # Ok::<(), idx_flow_nn::Error>(())
//! ```

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Device, Tensor};

use super::activation::Activation;
use super::attention::{AttnBackend, SpatialSelfAttention, SpatialSelfAttentionConfig};
use super::gather::GraphIndices;
use super::linear::{Linear, LinearConfig};
use super::norm::LayerNorm;
use super::{check_dims, check_positive, or_panic};
use crate::{Error, Result};
use idx_flow_core::init::{Initializer, WeightInit, trunc_normal};
use idx_flow_core::state_dict::{StateLoader, StateVisitor, TorchState, key};
use idx_flow_healpix::graphs::ConnectionGraph;

fn check_dropout(p: f64) -> Result<()> {
    if p.is_finite() && (0.0..1.0).contains(&p) {
        Ok(())
    } else {
        Err(Error::arg(
            "dropout",
            format!("got {p}, expected a probability in [0, 1)"),
        ))
    }
}

/// Configuration of a [`SpatialPatchEmbedding`].
#[derive(Config, Debug)]
pub struct SpatialPatchEmbeddingConfig {
    /// Input channels `C_in`.
    pub in_channels: usize,
    /// Embedding width `E`. Default: 128.
    #[config(default = 128)]
    pub embed_dim: usize,
    /// Bias in the projection. Default: true.
    #[config(default = true)]
    pub bias: bool,
    /// Initialisation of the projection (bias zero). Default: xavier_uniform.
    #[config(default = "WeightInit::XavierUniform")]
    pub weight_init: WeightInit,
    /// Gain of xavier/orthogonal initialisation. Default: 1.
    #[config(default = 1.0)]
    pub weight_init_gain: f64,
}

/// idx_flow's `SpatialPatchEmbedding`: `E[b,p] = W·[X[b,idx[p,0]] ‖ … ‖ X[b,idx[p,k−1]]] + b`.
#[derive(Module, Debug)]
pub struct SpatialPatchEmbedding {
    /// The graph's connection indices (`connection_indices` buffer).
    pub indices: GraphIndices,
    /// `projection`: `[E, k·C_in]`.
    pub projection: Linear,
}

impl SpatialPatchEmbeddingConfig {
    /// Builds the layer for `graph` on `device`.
    pub fn init(&self, graph: &ConnectionGraph, device: &Device) -> Result<SpatialPatchEmbedding> {
        check_positive("in_channels", self.in_channels)?;
        check_positive("embed_dim", self.embed_dim)?;
        let init = Initializer::new(self.weight_init).with_gain(self.weight_init_gain);
        Ok(SpatialPatchEmbedding {
            indices: GraphIndices::new(graph, device),
            projection: LinearConfig::new(graph.k() * self.in_channels, self.embed_dim)
                .with_bias(self.bias)
                .with_initializer(Some(init))
                .init(device)?,
        })
    }
}

impl SpatialPatchEmbedding {
    fn run(&self, layer: &str, x: Tensor<3>) -> Result<Tensor<3>> {
        let c = self.projection.d_input() / self.indices.k();
        check_dims(
            layer,
            &x.dims(),
            &[None, Some(self.indices.n_in()), Some(c)],
        )?;
        let b = x.dims()[0];
        let rows = self.projection.forward_gathered(&self.indices, x);
        Ok(rows.reshape([b, self.indices.n_out(), self.projection.d_output()]))
    }

    /// `[B, N_in, C_in]` → `[B, N_out, E]`; a wrong input shape is an [`Error::Shape`].
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        self.run("SpatialPatchEmbedding", x)
    }

    /// `[B, N_in, C_in]` → `[B, N_out, E]`.
    ///
    /// # Panics
    /// On a wrong input shape, with [`try_forward`](Self::try_forward)'s message.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }
}

impl TorchState for SpatialPatchEmbedding {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        self.indices.visit(prefix, v);
        self.projection.visit_state(&key(prefix, "projection."), v);
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(SpatialPatchEmbedding {
            indices: self.indices.load(prefix, l)?,
            projection: self.projection.load_state(&key(prefix, "projection."), l)?,
        })
    }
}

/// Configuration of a [`SpatialTransformerBlock`].
#[derive(Config, Debug)]
pub struct SpatialTransformerBlockConfig {
    /// Embedding width `E` (divisible by the heads).
    pub embed_dim: usize,
    /// Heads.
    pub num_heads: usize,
    /// Feed-forward width `floor(E·mlp_ratio)`. Default: 4.
    #[config(default = 4.0)]
    pub mlp_ratio: f64,
    /// Dropout in attention and feed-forward, in `[0, 1)`. Default: 0.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Feed-forward activation. Default: gelu.
    #[config(default = "Activation::Gelu")]
    pub activation: Activation,
    /// Biases in all linear maps. Default: true.
    #[config(default = true)]
    pub bias: bool,
    /// Layer norm epsilon. Default: 1e-6.
    #[config(default = 1e-6)]
    pub norm_eps: f64,
    /// Attention computation. Default: auto.
    #[config(default = "AttnBackend::Auto")]
    pub attn_backend: AttnBackend,
}

/// idx_flow's `SpatialTransformerBlock` (pre-norm).
#[derive(Module, Debug)]
pub struct SpatialTransformerBlock {
    /// `norm1`.
    pub norm1: LayerNorm,
    /// `norm2`.
    pub norm2: LayerNorm,
    /// `attn`.
    pub attn: SpatialSelfAttention,
    /// `ffn.0`: `[hidden, E]`.
    pub ffn_in: Linear,
    /// `ffn.3`: `[E, hidden]`.
    pub ffn_out: Linear,
    /// `ffn.2`.
    pub ffn_drop1: Dropout,
    /// `ffn.4`.
    pub ffn_drop2: Dropout,
    /// `ffn.1`.
    #[module(skip)]
    pub activation: Activation,
}

impl SpatialTransformerBlockConfig {
    /// Builds the block on `device`.
    pub fn init(&self, device: &Device) -> Result<SpatialTransformerBlock> {
        check_dropout(self.dropout)?;
        let e = self.embed_dim;
        let hidden = (e as f64 * self.mlp_ratio).floor();
        if !(self.mlp_ratio.is_finite() && hidden >= 1.0) {
            return Err(Error::arg(
                "mlp_ratio",
                format!("got {}, expected embed_dim·mlp_ratio >= 1", self.mlp_ratio),
            ));
        }
        let hidden = hidden as usize;
        let attn = SpatialSelfAttentionConfig::new(e, self.num_heads)
            .with_dropout(self.dropout)
            .with_bias(self.bias)
            .with_attn_backend(self.attn_backend)
            .init(device)?;
        Ok(SpatialTransformerBlock {
            norm1: LayerNorm::new(e, self.norm_eps, true, device)?,
            norm2: LayerNorm::new(e, self.norm_eps, true, device)?,
            attn,
            ffn_in: LinearConfig::new(e, hidden)
                .with_bias(self.bias)
                .init(device)?,
            ffn_out: LinearConfig::new(hidden, e)
                .with_bias(self.bias)
                .init(device)?,
            ffn_drop1: DropoutConfig::new(self.dropout).init(),
            ffn_drop2: DropoutConfig::new(self.dropout).init(),
            activation: self.activation,
        })
    }
}

impl SpatialTransformerBlock {
    /// `[B, N, E]` → `[B, N, E]`; a wrong input shape is an [`Error::Shape`].
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        let e = self.norm1.num_features;
        check_dims("SpatialTransformerBlock", &x.dims(), &[None, None, Some(e)])?;
        let x = x.clone() + self.attn.try_forward(self.norm1.forward(x))?;
        let f = self.ffn_in.forward(self.norm2.forward(x.clone()));
        let f = self.ffn_drop1.forward(self.activation.forward(f));
        let f = self.ffn_drop2.forward(self.ffn_out.forward(f));
        Ok(x + f)
    }

    /// `[B, N, E]` → `[B, N, E]`.
    ///
    /// # Panics
    /// On a wrong input shape, with [`try_forward`](Self::try_forward)'s message.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }
}

impl TorchState for SpatialTransformerBlock {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        self.norm1.visit_state(&key(prefix, "norm1."), v);
        self.norm2.visit_state(&key(prefix, "norm2."), v);
        self.attn.visit_state(&key(prefix, "attn."), v);
        self.ffn_in.visit_state(&key(prefix, "ffn.0."), v);
        self.ffn_out.visit_state(&key(prefix, "ffn.3."), v);
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(SpatialTransformerBlock {
            norm1: self.norm1.load_state(&key(prefix, "norm1."), l)?,
            norm2: self.norm2.load_state(&key(prefix, "norm2."), l)?,
            attn: self.attn.load_state(&key(prefix, "attn."), l)?,
            ffn_in: self.ffn_in.load_state(&key(prefix, "ffn.0."), l)?,
            ffn_out: self.ffn_out.load_state(&key(prefix, "ffn.3."), l)?,
            ..self
        })
    }
}

/// Configuration of a [`SpatialVit`].
#[derive(Config, Debug)]
pub struct SpatialVitConfig {
    /// Input channels `C_in`.
    pub in_channels: usize,
    /// Embedding width `E`. Default: 128.
    #[config(default = 128)]
    pub embed_dim: usize,
    /// Transformer blocks. Default: 4.
    #[config(default = 4)]
    pub depth: usize,
    /// Heads per block. Default: 8.
    #[config(default = 8)]
    pub num_heads: usize,
    /// Feed-forward width ratio. Default: 4.
    #[config(default = 4.0)]
    pub mlp_ratio: f64,
    /// Output width; `None` is `embed_dim` (no projection). Default: None.
    #[config(default = "None")]
    pub output_dim: Option<usize>,
    /// Dropout (embedding, attention, feed-forward), in `[0, 1)`. Default: 0.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Feed-forward activation. Default: gelu.
    #[config(default = "Activation::Gelu")]
    pub activation: Activation,
    /// Biases in all linear maps. Default: true.
    #[config(default = true)]
    pub bias: bool,
    /// Initialisation of the patch and output projections. Default: xavier_uniform.
    #[config(default = "WeightInit::XavierUniform")]
    pub weight_init: WeightInit,
    /// Layer norm epsilon. Default: 1e-6.
    #[config(default = 1e-6)]
    pub norm_eps: f64,
    /// Attention computation of every block. Default: auto.
    #[config(default = "AttnBackend::Auto")]
    pub attn_backend: AttnBackend,
}

/// idx_flow's `SpatialViT`.
#[derive(Module, Debug)]
pub struct SpatialVit {
    /// `patch_embed`.
    pub patch_embed: SpatialPatchEmbedding,
    /// `pos_embed`: `[1, N_out, E]`, truncated normal (std 0.02) at start.
    pub pos_embed: Param<Tensor<3>>,
    /// Dropout after the position embedding.
    pub embed_dropout: Dropout,
    /// `blocks.{i}`.
    pub blocks: Vec<SpatialTransformerBlock>,
    /// `norm`.
    pub norm: LayerNorm,
    /// `output_proj` (when `output_dim ≠ embed_dim`).
    pub output_proj: Option<Linear>,
}

impl SpatialVitConfig {
    /// Builds the model for `graph` on `device`.
    pub fn init(&self, graph: &ConnectionGraph, device: &Device) -> Result<SpatialVit> {
        check_positive("embed_dim", self.embed_dim)?;
        check_positive("num_heads", self.num_heads)?;
        check_dropout(self.dropout)?;
        if !self.embed_dim.is_multiple_of(self.num_heads) {
            return Err(Error::arg(
                "num_heads",
                format!(
                    "embed_dim ({}) must be divisible by num_heads ({})",
                    self.embed_dim, self.num_heads
                ),
            ));
        }
        let e = self.embed_dim;
        let out = self.output_dim.unwrap_or(e);
        check_positive("output_dim", out)?;
        let patch_embed = SpatialPatchEmbeddingConfig::new(self.in_channels)
            .with_embed_dim(e)
            .with_bias(self.bias)
            .with_weight_init(self.weight_init)
            .init(graph, device)?;
        let block = SpatialTransformerBlockConfig::new(e, self.num_heads)
            .with_mlp_ratio(self.mlp_ratio)
            .with_dropout(self.dropout)
            .with_activation(self.activation)
            .with_bias(self.bias)
            .with_norm_eps(self.norm_eps)
            .with_attn_backend(self.attn_backend);
        let blocks = (0..self.depth)
            .map(|_| block.init(device))
            .collect::<Result<_>>()?;
        let output_proj = if out != e {
            Some(
                LinearConfig::new(e, out)
                    .with_bias(self.bias)
                    .with_initializer(Some(Initializer::new(self.weight_init)))
                    .init(device)?,
            )
        } else {
            None
        };
        Ok(SpatialVit {
            patch_embed,
            pos_embed: Param::from_tensor(trunc_normal(
                [1, graph.n_out(), e],
                0.02,
                -2.0,
                2.0,
                device,
            )),
            embed_dropout: DropoutConfig::new(self.dropout).init(),
            blocks,
            norm: LayerNorm::new(e, self.norm_eps, true, device)?,
            output_proj,
        })
    }
}

impl SpatialVit {
    /// `[B, N_in, C_in]` → `[B, N_out, output_dim]`; a wrong input shape is an [`Error::Shape`].
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        let x = self.patch_embed.run("SpatialViT", x)?;
        let mut x = self.embed_dropout.forward(x + self.pos_embed.val());
        for block in &self.blocks {
            x = block.try_forward(x)?;
        }
        let x = self.norm.forward(x);
        Ok(match &self.output_proj {
            Some(p) => p.forward(x),
            None => x,
        })
    }

    /// `[B, N_in, C_in]` → `[B, N_out, output_dim]`.
    ///
    /// # Panics
    /// On a wrong input shape, with [`try_forward`](Self::try_forward)'s message.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }
}

impl TorchState for SpatialVit {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        self.patch_embed
            .visit_state(&key(prefix, "patch_embed."), v);
        v.param(&key(prefix, "pos_embed"), &self.pos_embed);
        for (i, b) in self.blocks.iter().enumerate() {
            b.visit_state(&key(prefix, &format!("blocks.{i}.")), v);
        }
        self.norm.visit_state(&key(prefix, "norm."), v);
        if let Some(p) = &self.output_proj {
            p.visit_state(&key(prefix, "output_proj."), v);
        }
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        let blocks = self
            .blocks
            .into_iter()
            .enumerate()
            .map(|(i, b)| b.load_state(&key(prefix, &format!("blocks.{i}.")), l))
            .collect::<Result<_>>()?;
        Ok(SpatialVit {
            patch_embed: self
                .patch_embed
                .load_state(&key(prefix, "patch_embed."), l)?,
            pos_embed: l.param(&key(prefix, "pos_embed"), self.pos_embed)?,
            embed_dropout: self.embed_dropout,
            blocks,
            norm: self.norm.load_state(&key(prefix, "norm."), l)?,
            output_proj: match self.output_proj {
                Some(p) => Some(p.load_state(&key(prefix, "output_proj."), l)?),
                None => None,
            },
        })
    }
}
