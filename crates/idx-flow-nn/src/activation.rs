//! Activations of idx_flow's `get_activation` (PyTorch's modules and defaults).
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use idx_flow_nn::Activation;
//!
//! let x = Tensor::<1>::from_floats([-1.0, 0.0, 2.0], &Device::default());
//! let y = "leaky_relu".parse::<Activation>()?.forward(x);
//! let v: Vec<f32> = y.into_data().iter::<f32>().collect();
//! assert_eq!(v, [-0.01, 0.0, 2.0]);
//! # Ok::<(), idx_flow_nn::Error>(())
//! ```

use std::str::FromStr;

use burn::config::Config;
use burn::tensor::{Tensor, activation as act};

use crate::{Error, Result};
use idx_flow_kernels::pointwise::{Activation as Kernel, activation};

/// idx_flow's `ActivationType` (`None` there is [`Activation::Linear`] here).
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `max(0, x)`.
    Relu,
    /// `λ·(max(0,x) + min(0, α(eˣ−1)))`, PyTorch's constants.
    Selu,
    /// `max(0,x) + 0.01·min(0,x)`.
    LeakyRelu,
    /// Exact GELU, `x·Φ(x)` (PyTorch's default, not the tanh approximation).
    Gelu,
    /// `x` for `x > 0`, `eˣ − 1` otherwise (α = 1).
    Elu,
    /// `tanh(x)`.
    Tanh,
    /// `1 / (1 + e⁻ˣ)`.
    Sigmoid,
    /// `x·sigmoid(x)` (SiLU).
    Swish,
    /// `x·tanh(softplus(x))`.
    Mish,
    /// The identity.
    Linear,
}

impl Activation {
    /// All activations, in idx_flow's order.
    pub const ALL: [Activation; 10] = [
        Activation::Relu,
        Activation::Selu,
        Activation::LeakyRelu,
        Activation::Gelu,
        Activation::Elu,
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Swish,
        Activation::Mish,
        Activation::Linear,
    ];

    /// idx_flow's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Selu => "selu",
            Activation::LeakyRelu => "leaky_relu",
            Activation::Gelu => "gelu",
            Activation::Elu => "elu",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::Swish => "swish",
            Activation::Mish => "mish",
            Activation::Linear => "linear",
        }
    }

    /// Applies the activation element-wise (any shape).
    pub fn forward<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::Relu => act::relu(x),
            Activation::Selu => activation(x, Kernel::Selu),
            Activation::LeakyRelu => act::leaky_relu(x, 0.01),
            // Fused kernels on the CPU (idx_flow_kernels::pointwise).
            Activation::Gelu => activation(x, Kernel::GeluErf),
            Activation::Elu => activation(x, Kernel::Elu),
            Activation::Tanh => activation(x, Kernel::Tanh),
            Activation::Sigmoid => activation(x, Kernel::Sigmoid),
            Activation::Swish => activation(x, Kernel::Silu),
            Activation::Mish => act::mish(x),
            Activation::Linear => x,
        }
    }
}

impl FromStr for Activation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s).ok_or_else(|| {
            Error::arg(
                "activation",
                format!(
                    "unknown activation '{s}', expected one of relu, selu, leaky_relu, gelu, elu, \
                     tanh, sigmoid, swish, mish, linear"
                ),
            )
        })
    }
}
