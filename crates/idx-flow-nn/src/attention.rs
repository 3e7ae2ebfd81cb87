//! Multi-head self-attention over the points of a `[B, N, E]` tensor
//! (idx_flow's `SpatialSelfAttention`): one `qkv_proj` `[3E, E]`, heads of
//! width `E/H`, `softmax(QKᵀ/√(E/H))·V`, then `out_proj`.
//!
//! Two computations of the same result, chosen by [`AttnBackend`]: burn's fused
//! `attention` (idx_flow's "sdpa") and the explicit matmul–softmax–matmul path
//! ("manual", the only one with dropout on the attention weights).
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use idx_flow_nn::{AttnBackend, SpatialSelfAttentionConfig};
//!
//! let device = Device::default();
//! let fused = SpatialSelfAttentionConfig::new(16, 4).init(&device)?;
//! let manual = fused.clone().with_backend(AttnBackend::Manual);
//! let x = Tensor::<3>::random([2, 48, 16], Distribution::Normal(0.0, 1.0), &device);
//! let (a, b) = (fused.forward(x.clone()), manual.forward(x));
//! assert!((a - b).abs().max().into_scalar::<f32>() < 1e-5);
//! # Ok::<(), idx_flow_nn::Error>(())
//! ```

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Tensor, activation};

use super::linear::{Linear, LinearConfig};
use super::{check_dims, check_positive, is_training, or_panic};
use crate::{Error, Result};
use idx_flow_core::state_dict::{StateLoader, StateVisitor, TorchState, key};

/// How the attention is computed (idx_flow's `attn_backend`).
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum AttnBackend {
    /// Fused unless attention dropout is active (training with `dropout > 0`),
    /// where the manual path applies it.
    Auto,
    /// burn's fused `attention` (no attention dropout: with dropout active,
    /// `try_forward` returns an error rather than silently skipping it).
    Fused,
    /// Explicit `softmax(QKᵀ·scale)` → dropout → `·V`.
    Manual,
}

impl std::str::FromStr for AttnBackend {
    type Err = Error;
    /// idx_flow's names: auto, fused, sdpa, manual.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(AttnBackend::Auto),
            "fused" => Ok(AttnBackend::Fused),
            "sdpa" => Ok(AttnBackend::Fused),
            "manual" => Ok(AttnBackend::Manual),
            _ => Err(Error::arg(
                "attn_backend",
                format!("unknown attn_backend '{s}', expected one of auto, fused, sdpa, manual"),
            )),
        }
    }
}

/// Configuration of a [`SpatialSelfAttention`].
#[derive(Config, Debug)]
pub struct SpatialSelfAttentionConfig {
    /// Embedding width `E` (divisible by the heads).
    pub embed_dim: usize,
    /// Heads `H`.
    pub num_heads: usize,
    /// Dropout on the attention weights, in `[0, 1)`. Default: 0.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Biases in the projections. Default: true.
    #[config(default = true)]
    pub bias: bool,
    /// Computation. Default: auto.
    #[config(default = "AttnBackend::Auto")]
    pub attn_backend: AttnBackend,
}

/// idx_flow's `SpatialSelfAttention` (PyTorch default initialisation of both projections).
#[derive(Module, Debug)]
pub struct SpatialSelfAttention {
    /// `qkv_proj`: `[3E, E]`, rows `[q; k; v]`, head-major within each.
    pub qkv_proj: Linear,
    /// `out_proj`: `[E, E]`.
    pub out_proj: Linear,
    /// Dropout on the attention weights (manual path).
    pub dropout: Dropout,
    /// Heads.
    pub num_heads: usize,
    /// Computation.
    #[module(skip)]
    pub backend: AttnBackend,
}

impl SpatialSelfAttentionConfig {
    /// Builds the layer on `device`.
    pub fn init(&self, device: &Device) -> Result<SpatialSelfAttention> {
        check_positive("embed_dim", self.embed_dim)?;
        check_positive("num_heads", self.num_heads)?;
        if !self.embed_dim.is_multiple_of(self.num_heads) {
            return Err(Error::arg(
                "num_heads",
                format!(
                    "embed_dim ({}) must be divisible by num_heads ({})",
                    self.embed_dim, self.num_heads
                ),
            ));
        }
        if !(self.dropout.is_finite() && (0.0..1.0).contains(&self.dropout)) {
            return Err(Error::arg(
                "dropout",
                format!("got {}, expected a probability in [0, 1)", self.dropout),
            ));
        }
        let e = self.embed_dim;
        Ok(SpatialSelfAttention {
            qkv_proj: LinearConfig::new(e, 3 * e)
                .with_bias(self.bias)
                .init(device)?,
            out_proj: LinearConfig::new(e, e).with_bias(self.bias).init(device)?,
            dropout: DropoutConfig::new(self.dropout).init(),
            num_heads: self.num_heads,
            backend: self.attn_backend,
        })
    }
}

impl SpatialSelfAttention {
    /// The same layer with another computation.
    pub fn with_backend(mut self, backend: AttnBackend) -> Self {
        self.backend = backend;
        self
    }

    /// Embedding width.
    pub fn embed_dim(&self) -> usize {
        self.out_proj.d_output()
    }

    /// `[B, N, E]` → `[B, N, E]`; a wrong input shape is an [`Error::Shape`],
    /// fused attention with active dropout an [`Error::InvalidArgument`].
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        let e = self.embed_dim();
        check_dims("SpatialSelfAttention", &x.dims(), &[None, None, Some(e)])?;
        let [b, n, _] = x.dims();
        let (h, hd) = (self.num_heads, e / self.num_heads);
        let dropout_active = self.dropout.prob > 0.0 && is_training(&self.dropout.training, &x);
        let fused = match self.backend {
            AttnBackend::Auto => !dropout_active,
            AttnBackend::Fused if dropout_active => {
                return Err(Error::arg(
                    "attn_backend",
                    "fused attention has no attention dropout; use Auto or Manual while training with dropout > 0",
                ));
            }
            AttnBackend::Fused => true,
            AttnBackend::Manual => false,
        };
        // [B, N, 3E] → [3, B, H, N, hd]
        let qkv = self
            .qkv_proj
            .forward(x)
            .reshape([b, n, 3, h, hd])
            .permute([2, 0, 3, 1, 4]);
        let part = |i: usize| -> Tensor<4> { qkv.clone().narrow(0, i, 1).squeeze_dim::<4>(0) };
        let (q, k, v) = (part(0), part(1), part(2));
        let out = if fused {
            burn::tensor::module::attention(q, k, v, None, None, AttentionModuleOptions::default())
        } else {
            let scale = (hd as f64).powf(-0.5);
            let attn = q.matmul(k.swap_dims(2, 3)) * scale;
            let attn = self.dropout.forward(activation::softmax(attn, 3));
            attn.matmul(v)
        };
        let out = out.swap_dims(1, 2).reshape([b, n, e]);
        Ok(self.out_proj.forward(out))
    }

    /// `[B, N, E]` → `[B, N, E]`.
    ///
    /// # Panics
    /// On a wrong input shape, with [`try_forward`](Self::try_forward)'s message.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }
}

impl TorchState for SpatialSelfAttention {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        self.qkv_proj.visit_state(&key(prefix, "qkv_proj."), v);
        self.out_proj.visit_state(&key(prefix, "out_proj."), v);
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(SpatialSelfAttention {
            qkv_proj: self.qkv_proj.load_state(&key(prefix, "qkv_proj."), l)?,
            out_proj: self.out_proj.load_state(&key(prefix, "out_proj."), l)?,
            ..self
        })
    }
}
