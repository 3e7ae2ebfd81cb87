//! A linear layer in PyTorch's layout (`weight` `[out, in]`), so that idx_flow's
//! `nn.Linear` entries (`mlp_layers.0.weight`, `qkv_proj.weight`, ...) load as they are.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use idx_flow_nn::LinearConfig;
//!
//! let device = Device::default();
//! let linear = LinearConfig::new(12, 8).init(&device)?;
//! assert_eq!(linear.weight.val().dims(), [8, 12]);
//! let y = linear.forward(Tensor::<3>::ones([2, 5, 12], &device));
//! assert_eq!(y.dims(), [2, 5, 8]);
//! # Ok::<(), idx_flow_nn::Error>(())
//! ```

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};

use super::check_positive;
use super::gather::GraphIndices;
use crate::{Error, Result};
use idx_flow_core::init::{Initializer, torch_linear_default};
use idx_flow_core::reduce::add_bias;
use idx_flow_core::state_dict::{StateLoader, StateVisitor, TorchState, key};
use idx_flow_kernels::{dense, skinny};

/// Configuration of a [`Linear`] layer.
#[derive(Config, Debug)]
pub struct LinearConfig {
    /// Input features.
    pub d_input: usize,
    /// Output features.
    pub d_output: usize,
    /// Whether there is a bias. Default: true.
    #[config(default = true)]
    pub bias: bool,
    /// Weight initialiser, applied to `[out, in]`; `None` is PyTorch's default
    /// `nn.Linear` initialisation (`U(±1/√in)` for weight and bias). Default: None.
    #[config(default = "None")]
    pub initializer: Option<Initializer>,
    /// With an initialiser, whether the bias starts at zero (idx_flow's MLP and
    /// patch layers) rather than PyTorch's `U(±1/√in)` (idx_flow's residual projection).
    /// Default: true.
    #[config(default = true)]
    pub zero_bias: bool,
}

/// `y = x Wᵀ + b` with `W` stored as `[out, in]` (PyTorch's `nn.Linear`).
#[derive(Module, Debug)]
pub struct Linear {
    /// `[d_output, d_input]`.
    pub weight: Param<Tensor<2>>,
    /// `[d_output]`.
    pub bias: Option<Param<Tensor<1>>>,
}

impl LinearConfig {
    /// Builds the layer on `device`.
    pub fn init(&self, device: &Device) -> Result<Linear> {
        check_positive("d_input", self.d_input)?;
        check_positive("d_output", self.d_output)?;
        let (w0, b0) = torch_linear_default(self.d_input, self.d_output, device);
        let weight = match &self.initializer {
            None => w0,
            Some(init) => init.init([self.d_output, self.d_input], device)?,
        };
        let bias = match (&self.initializer, self.zero_bias) {
            (Some(_), true) => Tensor::zeros([self.d_output], device),
            _ => b0,
        };
        Ok(Linear {
            weight: Param::from_tensor(weight),
            bias: self.bias.then(|| Param::from_tensor(bias)),
        })
    }
}

impl Linear {
    /// Input features.
    pub fn d_input(&self) -> usize {
        self.weight.val().dims()[1]
    }

    /// Output features.
    pub fn d_output(&self) -> usize {
        self.weight.val().dims()[0]
    }

    /// `[..., d_input]` → `[..., d_output]`.
    ///
    /// # Panics
    /// If the last axis is not `d_input` (the calling layers check their inputs).
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dims = x.dims();
        if dims[D - 1] != self.d_input() {
            panic!(
                "{}",
                Error::Shape {
                    context: "Linear input".into(),
                    expected: format!("[..., {}]", self.d_input()),
                    got: format!("{dims:?}"),
                }
            );
        }
        let y = self.product(x);
        match &self.bias {
            Some(b) => add_bias(y, b.val()),
            None => y,
        }
    }

    /// `x Wᵀ`. On the CPU, a few rows against a large weight (a batch of
    /// flattened spectra through spectrans' AFNO MLP) go through the skinny
    /// kernel, which streams `W` once instead of packing it on every call,
    /// and any other product through the dense one.
    fn product<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dims = x.dims();
        let (d_in, d_out) = (self.d_input(), self.d_output());
        let rows = dims[..D - 1].iter().product::<usize>();
        let mut out = dims;
        out[D - 1] = d_out;
        if dense::available(&x.device()) {
            let x = x.reshape([rows, d_in]);
            let y = if skinny::worthwhile(rows, d_in * d_out) {
                skinny::linear(x, self.weight.val())
            } else {
                // burn's product, without its zeroed and realigned result.
                dense::linear(x, self.weight.val())
            };
            return y
                .expect("the input's last axis was checked against the weight")
                .reshape(out);
        }
        burn::tensor::module::linear(x, self.weight.val().transpose(), None)
    }

    /// The layer applied to each output pixel's gathered neighbourhood:
    /// `x` `[B, N_in, C]` with `d_input = k·C` → `[B·N_out, d_output]`, i.e.
    /// `forward(indices.gather_rows(x))`, contracted without the gathered copy.
    pub(crate) fn forward_gathered(&self, indices: &GraphIndices, x: Tensor<3>) -> Tensor<2> {
        indices.contract_rows(
            x,
            self.weight.val().transpose(),
            self.bias.as_ref().map(|b| b.val()),
        )
    }
}

impl TorchState for Linear {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        v.param(&key(prefix, "weight"), &self.weight);
        if let Some(b) = &self.bias {
            v.param(&key(prefix, "bias"), b);
        }
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(Linear {
            weight: l.param(&key(prefix, "weight"), self.weight)?,
            bias: match self.bias {
                Some(b) => Some(l.param(&key(prefix, "bias"), b)?),
                None => None,
            },
        })
    }
}
