//! Structured dropouts: [`SpatialDropout`] drops whole points (all channels of
//! a pixel), [`ChannelDropout`] whole channels (all pixels of a channel), per
//! sample; kept values are scaled by `1/(1−p)`. Identity in evaluation.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use idx_flow_nn::{SpatialDropoutConfig, set_training};
//!
//! let device = Device::default().autodiff();
//! let drop = SpatialDropoutConfig::new().with_p(0.5).init()?;
//! let y = drop.forward(Tensor::<3>::ones([2, 48, 4], &device));
//! // Every point is either all zeros or all 2 = 1/(1 - 0.5).
//! let v: Vec<f32> = y.into_data().iter::<f32>().collect();
//! assert!(v.chunks(4).all(|p| p == [0.0; 4] || p == [2.0; 4]));
//! // Evaluation: the identity.
//! let drop = set_training(drop, false);
//! assert_eq!(drop.forward(Tensor::<3>::ones([2, 48, 4], &device)).sum().into_scalar::<f32>(), 384.0);
//! # Ok::<(), idx_flow_nn::Error>(())
//! ```

use burn::config::Config;
use burn::module::{Flag, Module, Param};
use burn::tensor::{Distribution, Tensor};

use super::{check_prob, is_training, or_panic};
use crate::Result;
use idx_flow_core::state_dict::{StateLoader, StateVisitor, TorchState};

/// Configuration of a [`SpatialDropout`].
#[derive(Config, Debug)]
pub struct SpatialDropoutConfig {
    /// Probability of dropping a point, in `[0, 1]`. Default: 0.1.
    #[config(default = 0.1)]
    pub p: f64,
}

/// Configuration of a [`ChannelDropout`].
#[derive(Config, Debug)]
pub struct ChannelDropoutConfig {
    /// Probability of dropping a channel, in `[0, 1]`. Default: 0.1.
    #[config(default = 0.1)]
    pub p: f64,
}

/// idx_flow's `SpatialDropout`: a `[B, N, 1]` Bernoulli(1−p) mask.
#[derive(Module, Debug)]
pub struct SpatialDropout {
    /// Drop probability.
    pub p: f64,
    /// Whether the layer drops (on an autodiff device).
    pub training: Param<Flag>,
}

/// idx_flow's `ChannelDropout`: a `[B, 1, C]` Bernoulli(1−p) mask.
#[derive(Module, Debug)]
pub struct ChannelDropout {
    /// Drop probability.
    pub p: f64,
    /// Whether the layer drops (on an autodiff device).
    pub training: Param<Flag>,
}

impl SpatialDropoutConfig {
    /// Builds the layer (an error unless `0 ≤ p ≤ 1`).
    pub fn init(&self) -> Result<SpatialDropout> {
        check_prob("p", self.p)?;
        Ok(SpatialDropout {
            p: self.p,
            training: Param::from_bool(true),
        })
    }
}

impl ChannelDropoutConfig {
    /// Builds the layer (an error unless `0 ≤ p ≤ 1`).
    pub fn init(&self) -> Result<ChannelDropout> {
        check_prob("p", self.p)?;
        Ok(ChannelDropout {
            p: self.p,
            training: Param::from_bool(true),
        })
    }
}

/// `x·mask/(1−p)` with `mask` Bernoulli(1−p) of `mask_shape`, broadcast.
/// `p = 1` gives zeros (idx_flow computes 0/0 there).
fn drop(x: Tensor<3>, p: f64, mask_shape: [usize; 3]) -> Tensor<3> {
    if p >= 1.0 {
        return x.zeros_like();
    }
    let mask = Tensor::<3>::random(mask_shape, Distribution::Bernoulli(1.0 - p), &x.device());
    x * mask / (1.0 - p)
}

impl SpatialDropout {
    /// Whether the training flag is on.
    pub fn is_training(&self) -> bool {
        self.training.is_enabled()
    }

    /// `[B, N, C]` → `[B, N, C]` (any sizes; never an error, the `Result` keeps
    /// the layers' common `try_forward` signature).
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        if !is_training(&self.training, &x) || self.p == 0.0 {
            return Ok(x);
        }
        let [b, n, _] = x.dims();
        Ok(drop(x, self.p, [b, n, 1]))
    }

    /// `[B, N, C]` → `[B, N, C]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }
}

impl ChannelDropout {
    /// Whether the training flag is on.
    pub fn is_training(&self) -> bool {
        self.training.is_enabled()
    }

    /// `[B, N, C]` → `[B, N, C]` (any sizes; never an error, the `Result` keeps
    /// the layers' common `try_forward` signature).
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        if !is_training(&self.training, &x) || self.p == 0.0 {
            return Ok(x);
        }
        let [b, _, c] = x.dims();
        Ok(drop(x, self.p, [b, 1, c]))
    }

    /// `[B, N, C]` → `[B, N, C]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }
}

impl TorchState for SpatialDropout {
    fn visit_state<V: StateVisitor>(&self, _: &str, _: &mut V) {}
    fn load_state(self, _: &str, _: &mut StateLoader<'_>) -> Result<Self> {
        Ok(self)
    }
}

impl TorchState for ChannelDropout {
    fn visit_state<V: StateVisitor>(&self, _: &str, _: &mut V) {}
    fn load_state(self, _: &str, _: &mut StateLoader<'_>) -> Result<Self> {
        Ok(self)
    }
}
