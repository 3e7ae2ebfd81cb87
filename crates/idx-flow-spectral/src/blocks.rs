//! Transformer blocks around any [`TokenMixer`]: [`TransformerBlock`]
//! (pre-norm or post-norm, with or without a feed-forward network) and
//! [`ParallelBlock`] (mixer and feed-forward side by side), as spectrans'
//! `TransformerBlock`, `PreNormBlock`, `PostNormBlock` and `ParallelBlock`.
//!
//! - pre-norm: `h = x + mix(norm1(x))`, `out = h + ffn(norm2(h))`
//! - post-norm: `h = norm1(x + mix(x))`, `out = norm2(h + ffn(h))`
//! - parallel: `n = norm(x)`, `out = x + mix(n) + ffn(n)`
//!
//! Layer norms use spectrans' `eps = 1e-12` by default; the feed-forward
//! network is `fc2(act(fc1(x)))` (`ffn.fc1`, `ffn.fc2`, GELU by default).
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use idx_flow_spectral::{FourierMixing, TransformerBlockConfig};
//!
//! let device = Device::default();
//! // An FNet encoder block (post-norm, as in the FNet paper).
//! let block = TransformerBlockConfig::new(8)
//!     .with_pre_norm(false)
//!     .with_ffn_hidden_dim(Some(32))
//!     .init(FourierMixing::new(), &device)?;
//! let x = Tensor::<3>::random([2, 48, 8], Distribution::Normal(0.0, 1.0), &device);
//! assert_eq!(block.try_forward(x)?.dims(), [2, 48, 8]);
//! # Ok::<(), idx_flow_spectral::Error>(())
//! ```

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::{TokenMixer, check_tokens, positive};
use crate::{Error, Result};
use idx_flow_core::or_panic;
use idx_flow_core::state_dict::{StateLoader, StateVisitor, TorchState, key};
use idx_flow_nn::{Activation, LayerNorm, Linear, LinearConfig};

/// Configuration of a [`FeedForward`].
#[derive(Config, Debug)]
pub struct FeedForwardConfig {
    /// Width `H` in and out.
    pub hidden_dim: usize,
    /// Inner width.
    pub ffn_hidden_dim: usize,
    /// Activation between the layers. Default: GELU (exact).
    #[config(default = "Activation::Gelu")]
    pub activation: Activation,
}

/// `fc2(act(fc1(x)))` (spectrans' `FeedForwardNetwork`, PyTorch `Linear` initialisation).
#[derive(Module, Debug)]
pub struct FeedForward {
    /// `fc1` `[F, H]`.
    pub fc1: Linear,
    /// `fc2` `[H, F]`.
    pub fc2: Linear,
    /// Activation.
    #[module(skip)]
    pub activation: Activation,
}

impl FeedForwardConfig {
    /// Builds the network on `device`.
    pub fn init(&self, device: &Device) -> Result<FeedForward> {
        positive("hidden_dim", self.hidden_dim)?;
        positive("ffn_hidden_dim", self.ffn_hidden_dim)?;
        Ok(FeedForward {
            fc1: LinearConfig::new(self.hidden_dim, self.ffn_hidden_dim).init(device)?,
            fc2: LinearConfig::new(self.ffn_hidden_dim, self.hidden_dim).init(device)?,
            activation: self.activation,
        })
    }
}

impl FeedForward {
    /// `[..., H]` → `[..., H]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.fc2
            .forward(self.activation.forward(self.fc1.forward(x)))
    }
}

impl TorchState for FeedForward {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        self.fc1.visit_state(&key(prefix, "fc1."), v);
        self.fc2.visit_state(&key(prefix, "fc2."), v);
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(FeedForward {
            fc1: self.fc1.load_state(&key(prefix, "fc1."), l)?,
            fc2: self.fc2.load_state(&key(prefix, "fc2."), l)?,
            activation: self.activation,
        })
    }
}

/// An affine layer norm of a block.
pub(crate) fn norm(hidden: usize, eps: f64, device: &Device) -> Result<LayerNorm> {
    LayerNorm::new(hidden, eps, true, device)
}

/// Configuration of a [`TransformerBlock`] or [`ParallelBlock`].
#[derive(Config, Debug)]
pub struct TransformerBlockConfig {
    /// Hidden width `H`.
    pub hidden_dim: usize,
    /// Feed-forward inner width; `None` is `4·H`. Default: None.
    #[config(default = "None")]
    pub ffn_hidden_dim: Option<usize>,
    /// Whether there is a feed-forward network (a [`ParallelBlock`] always has one). Default: true.
    #[config(default = true)]
    pub ffn: bool,
    /// Pre-norm (true) or post-norm. Default: true.
    #[config(default = true)]
    pub pre_norm: bool,
    /// Feed-forward activation. Default: GELU.
    #[config(default = "Activation::Gelu")]
    pub activation: Activation,
    /// Layer-norm epsilon. Default: 1e-12 (spectrans').
    #[config(default = 1e-12)]
    pub norm_eps: f64,
}

/// Pre- or post-norm transformer block around a token mixer.
#[derive(Module, Debug)]
pub struct TransformerBlock<M: TokenMixer> {
    /// The mixer (`mixing_layer`).
    pub mixer: M,
    /// `norm1`.
    pub norm1: LayerNorm,
    /// `norm2` (with the feed-forward network).
    pub norm2: Option<LayerNorm>,
    /// `ffn`.
    pub ffn: Option<FeedForward>,
    /// Pre-norm (true) or post-norm.
    pub pre_norm: bool,
}

impl TransformerBlockConfig {
    fn ffn_config(&self) -> FeedForwardConfig {
        FeedForwardConfig::new(
            self.hidden_dim,
            self.ffn_hidden_dim.unwrap_or(4 * self.hidden_dim),
        )
        .with_activation(self.activation)
    }

    /// A pre- or post-norm block around `mixer`.
    pub fn init<M: TokenMixer>(&self, mixer: M, device: &Device) -> Result<TransformerBlock<M>> {
        let h = self.hidden_dim;
        positive("hidden_dim", h)?;
        let (norm2, ffn) = if self.ffn {
            (
                Some(norm(h, self.norm_eps, device)?),
                Some(self.ffn_config().init(device)?),
            )
        } else {
            (None, None)
        };
        Ok(TransformerBlock {
            mixer,
            norm1: norm(h, self.norm_eps, device)?,
            norm2,
            ffn,
            pre_norm: self.pre_norm,
        })
    }

    /// A parallel block around `mixer` (the feed-forward network is always there).
    pub fn init_parallel<M: TokenMixer>(
        &self,
        mixer: M,
        device: &Device,
    ) -> Result<ParallelBlock<M>> {
        positive("hidden_dim", self.hidden_dim)?;
        Ok(ParallelBlock {
            mixer,
            norm: norm(self.hidden_dim, self.norm_eps, device)?,
            ffn: self.ffn_config().init(device)?,
        })
    }
}

/// Calls the mixer, naming the block when its output has the wrong shape
/// (a mixer must map `[B, N, H]` to `[B, N, H]`).
pub(crate) fn mix<M: TokenMixer>(block: &str, m: &M, x: Tensor<3>) -> Result<Tensor<3>> {
    let dims = x.dims();
    let y = m.try_forward(x)?;
    if y.dims() != dims {
        return Err(Error::Shape {
            context: format!("{block}: mixer output"),
            expected: format!("{dims:?} (the input's shape)"),
            got: format!("{:?}", y.dims()),
        });
    }
    Ok(y)
}

impl<M: TokenMixer> TransformerBlock<M> {
    /// `[B, N, H]` → `[B, N, H]`.
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        check_tokens("TransformerBlock", &x, Some(self.norm1.num_features))?;
        let ffn = self.ffn.as_ref().zip(self.norm2.as_ref());
        Ok(if self.pre_norm {
            let h = x.clone() + mix("TransformerBlock", &self.mixer, self.norm1.forward(x))?;
            match ffn {
                Some((f, n2)) => h.clone() + f.forward(n2.forward(h)),
                None => h,
            }
        } else {
            let h = self
                .norm1
                .forward(x.clone() + mix("TransformerBlock", &self.mixer, x)?);
            match ffn {
                Some((f, n2)) => n2.forward(h.clone() + f.forward(h)),
                None => h,
            }
        })
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }
}

impl<M: TokenMixer> TorchState for TransformerBlock<M> {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        self.mixer.visit_state(&key(prefix, "mixing_layer."), v);
        self.norm1.visit_state(&key(prefix, "norm1."), v);
        if let Some(n) = &self.norm2 {
            n.visit_state(&key(prefix, "norm2."), v);
        }
        if let Some(f) = &self.ffn {
            f.visit_state(&key(prefix, "ffn."), v);
        }
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(TransformerBlock {
            mixer: self.mixer.load_state(&key(prefix, "mixing_layer."), l)?,
            norm1: self.norm1.load_state(&key(prefix, "norm1."), l)?,
            norm2: match self.norm2 {
                Some(n) => Some(n.load_state(&key(prefix, "norm2."), l)?),
                None => None,
            },
            ffn: match self.ffn {
                Some(f) => Some(f.load_state(&key(prefix, "ffn."), l)?),
                None => None,
            },
            pre_norm: self.pre_norm,
        })
    }
}

/// Configuration alias: a [`ParallelBlock`] is built by
/// [`TransformerBlockConfig::init_parallel`].
pub type ParallelBlockConfig = TransformerBlockConfig;

/// `out = x + mix(norm(x)) + ffn(norm(x))`.
#[derive(Module, Debug)]
pub struct ParallelBlock<M: TokenMixer> {
    /// The mixer (`mixing_layer`).
    pub mixer: M,
    /// `norm`.
    pub norm: LayerNorm,
    /// `ffn`.
    pub ffn: FeedForward,
}

impl<M: TokenMixer> ParallelBlock<M> {
    /// `[B, N, H]` → `[B, N, H]`.
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        check_tokens("ParallelBlock", &x, Some(self.norm.num_features))?;
        let n = self.norm.forward(x.clone());
        Ok(x + mix("ParallelBlock", &self.mixer, n.clone())? + self.ffn.forward(n))
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }
}

impl<M: TokenMixer> TorchState for ParallelBlock<M> {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        self.mixer.visit_state(&key(prefix, "mixing_layer."), v);
        self.norm.visit_state(&key(prefix, "norm."), v);
        self.ffn.visit_state(&key(prefix, "ffn."), v);
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(ParallelBlock {
            mixer: self.mixer.load_state(&key(prefix, "mixing_layer."), l)?,
            norm: self.norm.load_state(&key(prefix, "norm."), l)?,
            ffn: self.ffn.load_state(&key(prefix, "ffn."), l)?,
        })
    }
}
