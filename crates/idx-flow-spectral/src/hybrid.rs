//! Blocks that combine several token mixers (spectrans' hybrid blocks). All
//! share the pre-norm pattern `h = x + mixed`, `out = h + ffn(norm2(h))`; they
//! differ in how `mixed` is made from the mixers:
//!
//! | block | `mixed` |
//! |---|---|
//! | [`AlternatingBlock`] | `layer1(norm1(x))` or `layer2(norm1(x))`, switchable ([`AlternatingBlock::set_layer`]) |
//! | [`AdaptiveBlock`] | `Σ_i w_i·layer_i(norm1(x))`, `w = softmax(gate(mean_n norm1(x)))` per sample ([`Gate::Soft`]), or its arg-max one-hot with the softmax's gradient ([`Gate::Hard`], straight-through) |
//! | [`MultiscaleBlock`] | the outputs of every layer on `norm1(x)`, fused by mean ([`Fusion::Add`]), softmax-weighted sum ([`Fusion::Weighted`]) or a linear map of their concatenation ([`Fusion::Concat`]) |
//! | [`CascadeBlock`] | the layers in sequence, `h ← h + layer_i(norm_i(h))`, norms shared or separate |
//!
//! Mixers of different types go in one block through the [`Mixer`](super::Mixer) enum.
//! spectrans' `HybridBlock` is their abstract base; its unused `norm3` does not exist here.
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use idx_flow_spectral::{AdaptiveBlockConfig, FourierMixing1d, Gate, GlobalFilterMixingConfig, Mixer};
//!
//! let device = Device::default();
//! let layers = vec![
//!     Mixer::from(FourierMixing1d::new()),
//!     Mixer::from(GlobalFilterMixingConfig::new(8, 48).init(&device)?),
//! ];
//! let block = AdaptiveBlockConfig::new(8).with_gate(Gate::Hard).init(layers, &device)?;
//! let x = Tensor::<3>::random([2, 48, 8], Distribution::Normal(0.0, 1.0), &device);
//! assert_eq!(block.try_forward(x)?.dims(), [2, 48, 8]);
//! # Ok::<(), idx_flow_spectral::Error>(())
//! ```

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{Device, Int, Tensor, activation};

use super::blocks::{FeedForward, FeedForwardConfig, mix, norm};
use super::{TokenMixer, check_tokens, positive};
use crate::{Error, Result};
use idx_flow_core::or_panic;
use idx_flow_core::state_dict::{StateLoader, StateVisitor, TorchState, key};
use idx_flow_nn::{Activation, LayerNorm, Linear, LinearConfig};

/// The parts every hybrid block shares: `norm2` and the feed-forward network.
#[derive(Module, Debug)]
struct Tail {
    norm2: LayerNorm,
    ffn: FeedForward,
}

impl Tail {
    fn new(
        h: usize,
        ffn: Option<usize>,
        act: Activation,
        eps: f64,
        device: &Device,
    ) -> Result<Self> {
        positive("hidden_dim", h)?;
        Ok(Tail {
            norm2: norm(h, eps, device)?,
            ffn: FeedForwardConfig::new(h, ffn.unwrap_or(4 * h))
                .with_activation(act)
                .init(device)?,
        })
    }

    /// `x + mixed`, then the feed-forward residual.
    fn finish(&self, x: Tensor<3>, mixed: Tensor<3>) -> Tensor<3> {
        self.residual(x + mixed)
    }

    /// `h + ffn(norm2(h))`.
    fn residual(&self, h: Tensor<3>) -> Tensor<3> {
        h.clone() + self.ffn.forward(self.norm2.forward(h))
    }

    fn visit<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        self.norm2.visit_state(&key(prefix, "norm2."), v);
        self.ffn.visit_state(&key(prefix, "ffn."), v);
    }

    fn load(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(Tail {
            norm2: self.norm2.load_state(&key(prefix, "norm2."), l)?,
            ffn: self.ffn.load_state(&key(prefix, "ffn."), l)?,
        })
    }
}

macro_rules! hybrid_config {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident : $ty:ty = $default:expr),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Config, Debug)]
        pub struct $name {
            /// Hidden width `H`.
            pub hidden_dim: usize,
            /// Feed-forward inner width; `None` is `4·H`. Default: None.
            #[config(default = "None")]
            pub ffn_hidden_dim: Option<usize>,
            /// Feed-forward activation. Default: GELU.
            #[config(default = "Activation::Gelu")]
            pub activation: Activation,
            /// Layer-norm epsilon. Default: 1e-12 (spectrans').
            #[config(default = 1e-12)]
            pub norm_eps: f64,
            $($(#[$fdoc])* #[config(default = $default)] pub $field: $ty,)*
        }

        impl $name {
            fn tail(&self, device: &Device) -> Result<Tail> {
                Tail::new(self.hidden_dim, self.ffn_hidden_dim, self.activation, self.norm_eps, device)
            }
        }
    };
}

fn need_layers(n: usize) -> Result<()> {
    if n == 0 {
        Err(Error::arg("layers", "got no mixer, expected at least one"))
    } else {
        Ok(())
    }
}

hybrid_config!(
    /// Configuration of an [`AlternatingBlock`].
    AlternatingBlockConfig {
        /// Start with `layer1`. Default: true.
        use_layer1: bool = true,
    }
);

/// One of two mixers, switchable: `h = x + layer(norm1(x))`, then the FFN residual.
#[derive(Module, Debug)]
pub struct AlternatingBlock<A: TokenMixer, B: TokenMixer> {
    /// `layer1`.
    pub layer1: A,
    /// `layer2`.
    pub layer2: B,
    /// `norm1`.
    pub norm1: LayerNorm,
    tail: Tail,
    /// Whether `layer1` is in use.
    pub use_layer1: bool,
}

impl AlternatingBlockConfig {
    /// Builds the block around `layer1` and `layer2`.
    pub fn init<A: TokenMixer, B: TokenMixer>(
        &self,
        layer1: A,
        layer2: B,
        device: &Device,
    ) -> Result<AlternatingBlock<A, B>> {
        Ok(AlternatingBlock {
            tail: self.tail(device)?,
            norm1: norm(self.hidden_dim, self.norm_eps, device)?,
            layer1,
            layer2,
            use_layer1: self.use_layer1,
        })
    }
}

impl<A: TokenMixer, B: TokenMixer> AlternatingBlock<A, B> {
    /// Switches the mixer in use.
    pub fn set_layer(&mut self, use_layer1: bool) {
        self.use_layer1 = use_layer1;
    }

    /// `[B, N, H]` → `[B, N, H]`.
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        check_tokens("AlternatingBlock", &x, Some(self.norm1.num_features))?;
        let n = self.norm1.forward(x.clone());
        let mixed = if self.use_layer1 {
            mix("AlternatingBlock", &self.layer1, n)?
        } else {
            mix("AlternatingBlock", &self.layer2, n)?
        };
        Ok(self.tail.finish(x, mixed))
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }
}

impl<A: TokenMixer, B: TokenMixer> TorchState for AlternatingBlock<A, B> {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        self.layer1.visit_state(&key(prefix, "layer1."), v);
        self.layer2.visit_state(&key(prefix, "layer2."), v);
        self.norm1.visit_state(&key(prefix, "norm1."), v);
        self.tail.visit(prefix, v);
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(AlternatingBlock {
            layer1: self.layer1.load_state(&key(prefix, "layer1."), l)?,
            layer2: self.layer2.load_state(&key(prefix, "layer2."), l)?,
            norm1: self.norm1.load_state(&key(prefix, "norm1."), l)?,
            tail: self.tail.load(prefix, l)?,
            use_layer1: self.use_layer1,
        })
    }
}

/// How an [`AdaptiveBlock`] weighs its mixers.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Softmax weights.
    Soft,
    /// The arg-max mixer alone in the forward pass, the softmax's gradient in
    /// the backward pass (straight-through estimator).
    Hard,
}

hybrid_config!(
    /// Configuration of an [`AdaptiveBlock`].
    AdaptiveBlockConfig {
        /// Gate. Default: soft.
        gate: Gate = "Gate::Soft",
    }
);

/// Input-dependent mixture of mixers: `w = softmax(gate(mean_n norm1(x)))`.
#[derive(Module, Debug)]
pub struct AdaptiveBlock<M: TokenMixer> {
    /// `layers.{i}`.
    pub layers: Vec<M>,
    /// `gate` `[L, H]`.
    pub gate: Linear,
    /// `norm1`.
    pub norm1: LayerNorm,
    tail: Tail,
    /// Soft or hard gate.
    #[module(skip)]
    pub gate_type: Gate,
}

impl AdaptiveBlockConfig {
    /// Builds the block around `layers` (at least one); the gate has PyTorch's
    /// default `Linear` initialisation (spectrans zeroes it).
    pub fn init<M: TokenMixer>(&self, layers: Vec<M>, device: &Device) -> Result<AdaptiveBlock<M>> {
        need_layers(layers.len())?;
        Ok(AdaptiveBlock {
            tail: self.tail(device)?,
            gate: LinearConfig::new(self.hidden_dim, layers.len()).init(device)?,
            norm1: norm(self.hidden_dim, self.norm_eps, device)?,
            layers,
            gate_type: self.gate,
        })
    }
}

impl<M: TokenMixer> AdaptiveBlock<M> {
    /// The mixing weights `[B, L]` of an input (after `norm1`).
    pub fn weights(&self, normed: Tensor<3>) -> Tensor<2> {
        let [b, _, h] = normed.dims();
        let logits = self.gate.forward(normed.mean_dim(1).reshape([b, h]));
        let soft = activation::softmax(logits.clone(), 1);
        match self.gate_type {
            Gate::Soft => soft,
            Gate::Hard => {
                let l = self.layers.len();
                let device = logits.device();
                let idx = logits.argmax(1).expand([b, l]);
                let classes = Tensor::<1, Int>::arange(0..l as i64, &device)
                    .reshape([1, l])
                    .expand([b, l]);
                let hard = idx.equal(classes).float();
                // Forward: the one-hot (soft − soft is exactly 0); backward:
                // the softmax's gradient.
                hard + (soft.clone() - soft.detach())
            }
        }
    }

    /// `[B, N, H]` → `[B, N, H]`.
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        let [b, _, _] = check_tokens("AdaptiveBlock", &x, Some(self.norm1.num_features))?;
        let normed = self.norm1.forward(x.clone());
        let w = self.weights(normed.clone());
        let mut mixed: Option<Tensor<3>> = None;
        for (i, layer) in self.layers.iter().enumerate() {
            let wi = w.clone().narrow(1, i, 1).reshape([b, 1, 1]);
            let term = mix("AdaptiveBlock", layer, normed.clone())? * wi;
            mixed = Some(match mixed {
                Some(m) => m + term,
                None => term,
            });
        }
        let mixed = mixed.ok_or_else(|| Error::arg("layers", "the block has no mixer"))?;
        Ok(self.tail.finish(x, mixed))
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }
}

fn visit_layers<M: TokenMixer, V: StateVisitor>(layers: &[M], prefix: &str, v: &mut V) {
    for (i, m) in layers.iter().enumerate() {
        m.visit_state(&key(prefix, &format!("layers.{i}.")), v);
    }
}

fn load_layers<M: TokenMixer>(
    layers: Vec<M>,
    prefix: &str,
    l: &mut StateLoader<'_>,
) -> Result<Vec<M>> {
    layers
        .into_iter()
        .enumerate()
        .map(|(i, m)| m.load_state(&key(prefix, &format!("layers.{i}.")), l))
        .collect()
}

impl<M: TokenMixer> TorchState for AdaptiveBlock<M> {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        visit_layers(&self.layers, prefix, v);
        self.gate.visit_state(&key(prefix, "gate."), v);
        self.norm1.visit_state(&key(prefix, "norm1."), v);
        self.tail.visit(prefix, v);
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(AdaptiveBlock {
            layers: load_layers(self.layers, prefix, l)?,
            gate: self.gate.load_state(&key(prefix, "gate."), l)?,
            norm1: self.norm1.load_state(&key(prefix, "norm1."), l)?,
            tail: self.tail.load(prefix, l)?,
            gate_type: self.gate_type,
        })
    }
}

/// How a [`MultiscaleBlock`] fuses its mixers' outputs.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Fusion {
    /// The mean.
    Add,
    /// `Σ softmax(fusion_weights)_i · out_i` (weights `1/L` at start).
    Weighted,
    /// `fusion_proj(concat(out_1, …, out_L))`, `fusion_proj` `[H, L·H]`.
    Concat,
}

hybrid_config!(
    /// Configuration of a [`MultiscaleBlock`].
    MultiscaleBlockConfig {
        /// Fusion. Default: add.
        fusion: Fusion = "Fusion::Add",
    }
);

/// Every mixer on the same normalised input, fused.
#[derive(Module, Debug)]
pub struct MultiscaleBlock<M: TokenMixer> {
    /// `layers.{i}`.
    pub layers: Vec<M>,
    /// `fusion_weights` `[L]` (weighted fusion).
    pub fusion_weights: Option<Param<Tensor<1>>>,
    /// `fusion_proj` (concat fusion).
    pub fusion_proj: Option<Linear>,
    /// `norm1`.
    pub norm1: LayerNorm,
    tail: Tail,
    /// Fusion.
    #[module(skip)]
    pub fusion: Fusion,
}

impl MultiscaleBlockConfig {
    /// Builds the block around `layers` (at least one).
    pub fn init<M: TokenMixer>(
        &self,
        layers: Vec<M>,
        device: &Device,
    ) -> Result<MultiscaleBlock<M>> {
        need_layers(layers.len())?;
        let l = layers.len();
        Ok(MultiscaleBlock {
            tail: self.tail(device)?,
            norm1: norm(self.hidden_dim, self.norm_eps, device)?,
            fusion_weights: (self.fusion == Fusion::Weighted)
                .then(|| Param::from_tensor(Tensor::ones([l], device) / l as f64)),
            fusion_proj: match self.fusion {
                Fusion::Concat => {
                    Some(LinearConfig::new(l * self.hidden_dim, self.hidden_dim).init(device)?)
                }
                _ => None,
            },
            layers,
            fusion: self.fusion,
        })
    }
}

impl<M: TokenMixer> MultiscaleBlock<M> {
    /// `[B, N, H]` → `[B, N, H]`.
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        check_tokens("MultiscaleBlock", &x, Some(self.norm1.num_features))?;
        let normed = self.norm1.forward(x.clone());
        let outs = self
            .layers
            .iter()
            .map(|m| mix("MultiscaleBlock", m, normed.clone()))
            .collect::<Result<Vec<_>>>()?;
        let l = outs.len();
        let mixed = match (self.fusion, &self.fusion_weights, &self.fusion_proj) {
            (Fusion::Weighted, Some(fw), _) => {
                let w = activation::softmax(fw.val(), 0);
                let stacked = Tensor::stack::<4>(outs, 0); // [L, B, N, H]
                (stacked * w.reshape([l, 1, 1, 1]))
                    .sum_dim(0)
                    .squeeze_dim::<3>(0)
            }
            (Fusion::Concat, _, Some(proj)) => proj.forward(Tensor::cat(outs, 2)),
            _ => {
                let stacked = Tensor::stack::<4>(outs, 0);
                stacked.sum_dim(0).squeeze_dim::<3>(0) / l as f64
            }
        };
        Ok(self.tail.finish(x, mixed))
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }
}

impl<M: TokenMixer> TorchState for MultiscaleBlock<M> {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        visit_layers(&self.layers, prefix, v);
        if let Some(w) = &self.fusion_weights {
            v.param(&key(prefix, "fusion_weights"), w);
        }
        if let Some(p) = &self.fusion_proj {
            p.visit_state(&key(prefix, "fusion_proj."), v);
        }
        self.norm1.visit_state(&key(prefix, "norm1."), v);
        self.tail.visit(prefix, v);
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(MultiscaleBlock {
            layers: load_layers(self.layers, prefix, l)?,
            fusion_weights: match self.fusion_weights {
                Some(w) => Some(l.param(&key(prefix, "fusion_weights"), w)?),
                None => None,
            },
            fusion_proj: match self.fusion_proj {
                Some(p) => Some(p.load_state(&key(prefix, "fusion_proj."), l)?),
                None => None,
            },
            norm1: self.norm1.load_state(&key(prefix, "norm1."), l)?,
            tail: self.tail.load(prefix, l)?,
            fusion: self.fusion,
        })
    }
}

hybrid_config!(
    /// Configuration of a [`CascadeBlock`].
    CascadeBlockConfig {
        /// One norm for every stage (`norm1`) rather than one per stage (`norms.{i}`). Default: false.
        share_norm: bool = false,
    }
);

/// The mixers in sequence: `h ← h + layer_i(norm_i(h))`, then the FFN residual.
#[derive(Module, Debug)]
pub struct CascadeBlock<M: TokenMixer> {
    /// `layers.{i}`.
    pub layers: Vec<M>,
    /// One shared norm (`norm1`) or one per stage (`norms.{i}`).
    pub norms: Vec<LayerNorm>,
    tail: Tail,
    /// Whether every stage uses `norms[0]` (`norm1`).
    pub share_norm: bool,
}

impl CascadeBlockConfig {
    /// Builds the block around `layers` (at least one).
    pub fn init<M: TokenMixer>(&self, layers: Vec<M>, device: &Device) -> Result<CascadeBlock<M>> {
        need_layers(layers.len())?;
        let count = if self.share_norm { 1 } else { layers.len() };
        Ok(CascadeBlock {
            tail: self.tail(device)?,
            norms: (0..count)
                .map(|_| norm(self.hidden_dim, self.norm_eps, device))
                .collect::<Result<_>>()?,
            layers,
            share_norm: self.share_norm,
        })
    }
}

impl<M: TokenMixer> CascadeBlock<M> {
    /// `[B, N, H]` → `[B, N, H]`.
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        check_tokens("CascadeBlock", &x, Some(self.norms[0].num_features))?;
        let mut h = x;
        for (i, layer) in self.layers.iter().enumerate() {
            let n = &self.norms[i.min(self.norms.len() - 1)];
            h = h.clone() + mix("CascadeBlock", layer, n.forward(h))?;
        }
        Ok(self.tail.residual(h))
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }

    fn norm_name(&self, i: usize) -> String {
        if self.share_norm {
            "norm1.".into()
        } else {
            format!("norms.{i}.")
        }
    }
}

impl<M: TokenMixer> TorchState for CascadeBlock<M> {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        visit_layers(&self.layers, prefix, v);
        for (i, n) in self.norms.iter().enumerate() {
            n.visit_state(&key(prefix, &self.norm_name(i)), v);
        }
        self.tail.visit(prefix, v);
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        let names: Vec<String> = (0..self.norms.len()).map(|i| self.norm_name(i)).collect();
        Ok(CascadeBlock {
            layers: load_layers(self.layers, prefix, l)?,
            norms: self
                .norms
                .into_iter()
                .zip(&names)
                .map(|(n, name)| n.load_state(&key(prefix, name), l))
                .collect::<Result<_>>()?,
            tail: self.tail.load(prefix, l)?,
            share_norm: self.share_norm,
        })
    }
}
