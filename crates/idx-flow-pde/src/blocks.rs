//! pdequinox's blocks: the units that its architectures stack.
//!
//! | block | computation (`σ` the activation, `N` group norm or the identity) |
//! |---|---|
//! | [`ClassicDoubleConvBlock`] | `σ(N₂(conv₂ σ(N₁(conv₁ x))))` (UNet) |
//! | [`ClassicResBlock`] | `σ(N₂(conv₂ σ(N₁(conv₁ x))) + N_b(bypass x))` (post-activation ResNet) |
//! | [`ModernResBlock`] | `conv₂ σ(N₂(conv₁ σ(N₁ x))) + bypass(N_b x)` (pre-activation ResNet) |
//! | [`DilatedResBlock`] | `σ(conv_L(N_L … σ(conv₁(N₁ x)))) + bypass(N_b x)`, dilations `1, 2, 4, 8, 4, 2, 1` |
//! | [`ClassicSpectralBlock`] | `σ(spectral_conv x + by_pass_conv x)` (FNO layer) |
//!
//! The bypass is the identity when `C_in = C_out`, else a 1×1
//! [`PointwiseLinearConv`] (without bias, except in the dilated block) and, with
//! normalisation, a group norm. Group norms are Equinox's ([`GroupNorm`]:
//! statistics over the channels of a group and all cells of one sample, eps
//! 1e-5, a scale and shift per channel). Parameter names are pdequinox's
//! (`conv_1.weight`, `norm_1.bias`, `bypass_conv.weight`,
//! `conv_layers.3.bias`, `spectral_conv.weights_real`, `by_pass_conv.bias`).
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use idx_flow_pde::{BoundaryMode, ClassicSpectralBlockConfig, ModernResBlockConfig};
//!
//! let device = Device::default();
//! let res = ModernResBlockConfig::new(2, 3, 8, BoundaryMode::Periodic).init(&device)?;
//! let fno = ClassicSpectralBlockConfig::new(2, 8, 8).with_num_modes(vec![4]).init(&device)?;
//! let x = Tensor::<4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
//! assert_eq!(fno.try_forward(res.try_forward(x)?)?.dims(), [2, 8, 16, 16]);
//! assert_eq!(res.receptive_field(), [(2.0, 2.0), (2.0, 2.0)]);
//! # Ok::<(), idx_flow_pde::Error>(())
//! ```

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, activation as act};
use idx_flow_kernels::norm as fused_norm;

use super::boundary::BoundaryMode;
use super::conv::{PhysicsConv, PhysicsConvConfig, PointwiseLinearConv, PointwiseLinearConvConfig};
use super::spectral::{SpectralConv, SpectralConvConfig};
use super::{check_input, check_spatial_dims};
use crate::{Error, Result};
use idx_flow_core::check_positive;
use idx_flow_core::state_dict::{StateLoader, StateVisitor, TorchState, key};
use idx_flow_kernels::pointwise::{Activation, activation};

/// The activations of pdequinox's blocks (functions of `jax.nn`).
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum PdeActivation {
    /// `max(0, x)` (`jax.nn.relu`, the default of the convolutional blocks).
    Relu,
    /// `jax.nn.gelu` with its default `approximate=True`:
    /// `x/2·(1 + tanh(√(2/π)(x + 0.044715x³)))` (the default of the spectral block).
    Gelu,
    /// The exact GELU `x·Φ(x)` (`jax.nn.gelu(approximate=False)`).
    GeluExact,
    /// `tanh(x)`.
    Tanh,
    /// `x·sigmoid(x)` (`jax.nn.silu`).
    Silu,
    /// The identity.
    Identity,
}

impl PdeActivation {
    /// Applies the activation.
    pub fn forward<const R: usize>(self, x: Tensor<R>) -> Tensor<R> {
        match self {
            PdeActivation::Relu => act::relu(x),
            // Fused kernels on the CPU (idx_flow_kernels::pointwise).
            PdeActivation::Gelu => activation(x, Activation::GeluTanh),
            PdeActivation::GeluExact => activation(x, Activation::GeluErf),
            PdeActivation::Tanh => activation(x, Activation::Tanh),
            PdeActivation::Silu => activation(x, Activation::Silu),
            PdeActivation::Identity => x,
        }
    }
}

/// Configuration of a [`GroupNorm`] (Equinox's `GroupNorm`).
#[derive(Config, Debug)]
pub struct GroupNormConfig {
    /// Groups; divides the channels.
    pub groups: usize,
    /// Channels `C`.
    pub channels: usize,
    /// Added to the variance. Default: 1e-5.
    #[config(default = 1e-5)]
    pub eps: f64,
}

/// Equinox's `GroupNorm` on `[B, C, *spatial]`: each sample's channels are
/// split into groups, normalised by the (biased) mean and variance over the
/// group's channels and all cells, then scaled and shifted per channel.
#[derive(Module, Debug)]
pub struct GroupNorm {
    /// `[C]`, ones at start (`weight`).
    pub weight: Param<Tensor<1>>,
    /// `[C]`, zeros at start (`bias`).
    pub bias: Param<Tensor<1>>,
    /// Groups.
    pub groups: usize,
    /// Added to the variance.
    pub eps: f64,
}

impl GroupNormConfig {
    /// Builds the norm on `device`.
    pub fn init(&self, device: &Device) -> Result<GroupNorm> {
        check_positive("groups", self.groups)?;
        check_positive("channels", self.channels)?;
        if !self.channels.is_multiple_of(self.groups) {
            return Err(Error::arg(
                "num_groups",
                format!(
                    "got {}, expected a divisor of the {} channels",
                    self.groups, self.channels
                ),
            ));
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(Error::arg(
                "eps",
                format!("got {}, expected a finite positive number", self.eps),
            ));
        }
        Ok(GroupNorm {
            weight: Param::from_tensor(Tensor::ones([self.channels], device)),
            bias: Param::from_tensor(Tensor::zeros([self.channels], device)),
            groups: self.groups,
            eps: self.eps,
        })
    }
}

impl GroupNorm {
    /// Channels.
    pub fn channels(&self) -> usize {
        self.weight.val().dims()[0]
    }

    /// `[B, C, *spatial]` → the same shape; an error for a wrong channel count.
    pub fn try_forward<const R: usize>(&self, x: Tensor<R>) -> Result<Tensor<R>> {
        let dims = x.dims();
        let c = self.channels();
        if R < 2 || dims[1] != c {
            return Err(Error::Shape {
                context: "GroupNorm input".into(),
                expected: format!("[B, {c}, ...]"),
                got: format!("{dims:?}"),
            });
        }
        if fused_norm::available(&x.device()) {
            // One fused pass each way on the CPU (idx_flow_kernels::norm).
            return fused_norm::group_norm(
                x,
                self.groups,
                Some(self.weight.val()),
                Some(self.bias.val()),
                self.eps,
            );
        }
        let (b, g) = (dims[0], self.groups);
        let cells: usize = dims[2..].iter().product();
        let xg: Tensor<3> = x.reshape([b, g, c / g * cells]);
        let mean = xg.clone().mean_dim(2);
        let centred = xg - mean;
        let var = centred.clone().powi_scalar(2).mean_dim(2);
        let y = (centred / (var + self.eps).sqrt()).reshape([b, c, cells]);
        let y = y * self.weight.val().reshape([1, c, 1]) + self.bias.val().reshape([1, c, 1]);
        Ok(y.reshape(dims))
    }
}

impl TorchState for GroupNorm {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        v.param(&key(prefix, "weight"), &self.weight);
        v.param(&key(prefix, "bias"), &self.bias);
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(GroupNorm {
            weight: l.param(&key(prefix, "weight"), self.weight)?,
            bias: l.param(&key(prefix, "bias"), self.bias)?,
            ..self
        })
    }
}

/// Group norm or the identity.
fn norm<const R: usize>(n: &Option<GroupNorm>, x: Tensor<R>) -> Result<Tensor<R>> {
    match n {
        Some(n) => n.try_forward(x),
        None => Ok(x),
    }
}

fn make_norm(
    use_norm: bool,
    groups: usize,
    c: usize,
    device: &Device,
) -> Result<Option<GroupNorm>> {
    if use_norm {
        Ok(Some(GroupNormConfig::new(groups, c).init(device)?))
    } else {
        Ok(None)
    }
}

fn visit_opt<M: TorchState, V: StateVisitor>(m: &Option<M>, prefix: &str, v: &mut V) {
    if let Some(m) = m {
        m.visit_state(prefix, v);
    }
}

fn load_opt<M: TorchState>(
    m: Option<M>,
    prefix: &str,
    l: &mut StateLoader<'_>,
) -> Result<Option<M>> {
    m.map(|m| m.load_state(prefix, l)).transpose()
}

/// Sums receptive fields of convolutions applied one after another.
fn chain(fields: &[Vec<(f64, f64)>]) -> Vec<(f64, f64)> {
    let d = fields[0].len();
    (0..d)
        .map(|a| {
            fields
                .iter()
                .fold((0.0, 0.0), |(l, r), f| (l + f[a].0, r + f[a].1))
        })
        .collect()
}

/// The settings every convolutional block shares.
struct ConvSettings {
    d: usize,
    kernel: usize,
    mode: BoundaryMode,
    bias: bool,
    zero_bias: bool,
}

impl ConvSettings {
    fn conv(&self, ci: usize, co: usize, dilation: usize, device: &Device) -> Result<PhysicsConv> {
        PhysicsConvConfig::new(self.d, ci, co, vec![self.kernel], self.mode)
            .with_dilation(vec![dilation])
            .with_use_bias(self.bias)
            .with_zero_bias_init(self.zero_bias)
            .init(device)
    }
}

/// A bias-free 1×1 bypass when the channel counts differ.
fn bypass(
    d: usize,
    ci: usize,
    co: usize,
    bias: bool,
    zero_bias: bool,
    device: &Device,
) -> Result<Option<PointwiseLinearConv>> {
    if ci == co {
        return Ok(None);
    }
    Ok(Some(
        PointwiseLinearConvConfig::new(d, ci, co)
            .with_use_bias(bias)
            .with_zero_bias_init(zero_bias)
            .init(device)?,
    ))
}

fn apply_bypass<const R: usize>(
    conv: &Option<PointwiseLinearConv>,
    x: Tensor<R>,
) -> Result<Tensor<R>> {
    match conv {
        Some(c) => c.try_forward(x),
        None => Ok(x),
    }
}

macro_rules! conv_block_config {
    ($(#[$doc:meta])* $name:ident, norm_default = $norm:expr, extra { $($extra:tt)* }) => {
        $(#[$doc])*
        #[derive(Config, Debug)]
        pub struct $name {
            /// Spatial dimensions `D` (1, 2 or 3).
            pub num_spatial_dims: usize,
            /// Input channels.
            pub in_channels: usize,
            /// Output channels.
            pub out_channels: usize,
            /// How the field continues beyond the grid.
            pub boundary_mode: BoundaryMode,
            /// Kernel size on every axis. Default: 3.
            #[config(default = 3)]
            pub kernel_size: usize,
            /// Whether group norms are used.
            #[config(default = $norm)]
            pub use_norm: bool,
            /// Groups of the group norms. Default: 1.
            #[config(default = 1)]
            pub num_groups: usize,
            /// Whether the convolutions have a bias. Default: true.
            #[config(default = true)]
            pub use_bias: bool,
            /// Whether biases start at zero. Default: false.
            #[config(default = false)]
            pub zero_bias_init: bool,
            /// The activation. Default: relu.
            #[config(default = "PdeActivation::Relu")]
            pub activation: PdeActivation,
            $($extra)*
        }

        impl $name {
            fn settings(&self) -> Result<ConvSettings> {
                check_spatial_dims(self.num_spatial_dims)?;
                Ok(ConvSettings {
                    d: self.num_spatial_dims,
                    kernel: self.kernel_size,
                    mode: self.boundary_mode,
                    bias: self.use_bias,
                    zero_bias: self.zero_bias_init,
                })
            }
        }
    };
}

conv_block_config!(
    /// Configuration of a [`ClassicDoubleConvBlock`] (group norms on by default).
    ClassicDoubleConvBlockConfig, norm_default = true, extra {}
);
conv_block_config!(
    /// Configuration of a [`ClassicResBlock`] (group norms off by default).
    ClassicResBlockConfig, norm_default = false, extra {}
);
conv_block_config!(
    /// Configuration of a [`ModernResBlock`] (group norms on by default).
    ModernResBlockConfig, norm_default = true, extra {}
);
conv_block_config!(
    /// Configuration of a [`DilatedResBlock`] (group norms on by default).
    DilatedResBlockConfig, norm_default = true, extra {
        /// Dilation of each convolution, in order. Default: 1, 2, 4, 8, 4, 2, 1.
        #[config(default = "vec![1, 2, 4, 8, 4, 2, 1]")]
        pub dilation_rates: Vec<usize>,
    }
);

/// pdequinox's `ClassicDoubleConvBlock`: two convolutions, each followed by
/// norm and activation.
#[derive(Module, Debug)]
pub struct ClassicDoubleConvBlock {
    /// First convolution `C_in → C_out`.
    pub conv_1: PhysicsConv,
    /// Its group norm, if used.
    pub norm_1: Option<GroupNorm>,
    /// Second convolution `C_out → C_out`.
    pub conv_2: PhysicsConv,
    /// Its group norm, if used.
    pub norm_2: Option<GroupNorm>,
    /// The activation.
    #[module(skip)]
    pub activation: PdeActivation,
}

impl ClassicDoubleConvBlockConfig {
    /// Builds the block on `device`.
    pub fn init(&self, device: &Device) -> Result<ClassicDoubleConvBlock> {
        let s = self.settings()?;
        let (ci, co, g) = (self.in_channels, self.out_channels, self.num_groups);
        Ok(ClassicDoubleConvBlock {
            conv_1: s.conv(ci, co, 1, device)?,
            norm_1: make_norm(self.use_norm, g, co, device)?,
            conv_2: s.conv(co, co, 1, device)?,
            norm_2: make_norm(self.use_norm, g, co, device)?,
            activation: self.activation,
        })
    }
}

impl ClassicDoubleConvBlock {
    /// `[B, C_in, *N]` → `[B, C_out, *N]`.
    pub fn try_forward<const R: usize>(&self, x: Tensor<R>) -> Result<Tensor<R>> {
        let a = self.activation;
        let x = a.forward(norm(&self.norm_1, self.conv_1.try_forward(x)?)?);
        Ok(a.forward(norm(&self.norm_2, self.conv_2.try_forward(x)?)?))
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward<const R: usize>(&self, x: Tensor<R>) -> Tensor<R> {
        idx_flow_core::or_panic(self.try_forward(x))
    }

    /// The sum of the two convolutions' receptive fields.
    pub fn receptive_field(&self) -> Vec<(f64, f64)> {
        chain(&[self.conv_1.receptive_field(), self.conv_2.receptive_field()])
    }
}

impl TorchState for ClassicDoubleConvBlock {
    fn visit_state<V: StateVisitor>(&self, p: &str, v: &mut V) {
        self.conv_1.visit_state(&format!("{p}conv_1."), v);
        visit_opt(&self.norm_1, &format!("{p}norm_1."), v);
        self.conv_2.visit_state(&format!("{p}conv_2."), v);
        visit_opt(&self.norm_2, &format!("{p}norm_2."), v);
    }

    fn load_state(self, p: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(ClassicDoubleConvBlock {
            conv_1: self.conv_1.load_state(&format!("{p}conv_1."), l)?,
            norm_1: load_opt(self.norm_1, &format!("{p}norm_1."), l)?,
            conv_2: self.conv_2.load_state(&format!("{p}conv_2."), l)?,
            norm_2: load_opt(self.norm_2, &format!("{p}norm_2."), l)?,
            activation: self.activation,
        })
    }
}

/// The parts of the two residual blocks (they differ in order only).
macro_rules! res_block {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Module, Debug)]
        pub struct $name {
            /// First convolution `C_in → C_out`.
            pub conv_1: PhysicsConv,
            /// Group norm of the first stage, if used.
            pub norm_1: Option<GroupNorm>,
            /// Second convolution `C_out → C_out`.
            pub conv_2: PhysicsConv,
            /// Group norm of the second stage, if used.
            pub norm_2: Option<GroupNorm>,
            /// Bias-free 1×1 convolution when `C_in != C_out`.
            pub bypass_conv: Option<PointwiseLinearConv>,
            /// Group norm of the bypass (with norms and `C_in != C_out`).
            pub bypass_norm: Option<GroupNorm>,
            /// The activation.
            #[module(skip)]
            pub activation: PdeActivation,
        }

        impl $name {
            /// [`try_forward`](Self::try_forward), panicking on a wrong input.
            pub fn forward<const R: usize>(&self, x: Tensor<R>) -> Tensor<R> {
                idx_flow_core::or_panic(self.try_forward(x))
            }

            /// The sum of the two convolutions' receptive fields.
            pub fn receptive_field(&self) -> Vec<(f64, f64)> {
                chain(&[self.conv_1.receptive_field(), self.conv_2.receptive_field()])
            }
        }

        impl TorchState for $name {
            fn visit_state<V: StateVisitor>(&self, p: &str, v: &mut V) {
                self.conv_1.visit_state(&format!("{p}conv_1."), v);
                visit_opt(&self.norm_1, &format!("{p}norm_1."), v);
                self.conv_2.visit_state(&format!("{p}conv_2."), v);
                visit_opt(&self.norm_2, &format!("{p}norm_2."), v);
                visit_opt(&self.bypass_conv, &format!("{p}bypass_conv."), v);
                visit_opt(&self.bypass_norm, &format!("{p}bypass_norm."), v);
            }

            fn load_state(self, p: &str, l: &mut StateLoader<'_>) -> Result<Self> {
                Ok($name {
                    conv_1: self.conv_1.load_state(&format!("{p}conv_1."), l)?,
                    norm_1: load_opt(self.norm_1, &format!("{p}norm_1."), l)?,
                    conv_2: self.conv_2.load_state(&format!("{p}conv_2."), l)?,
                    norm_2: load_opt(self.norm_2, &format!("{p}norm_2."), l)?,
                    bypass_conv: load_opt(self.bypass_conv, &format!("{p}bypass_conv."), l)?,
                    bypass_norm: load_opt(self.bypass_norm, &format!("{p}bypass_norm."), l)?,
                    activation: self.activation,
                })
            }
        }
    };
}

res_block!(
    /// pdequinox's `ClassicResBlock` (post-activation): norms act on `C_out`
    /// channels after each convolution, the bypass norm after the bypass conv.
    ClassicResBlock
);
res_block!(
    /// pdequinox's `ModernResBlock` (pre-activation): norm and activation come
    /// before each convolution (`norm_1` on `C_in`), the bypass norm before
    /// the bypass conv (on `C_in`); no activation after the sum.
    ModernResBlock
);

impl ClassicResBlockConfig {
    /// Builds the block on `device`.
    pub fn init(&self, device: &Device) -> Result<ClassicResBlock> {
        let s = self.settings()?;
        let (ci, co, g, n) = (
            self.in_channels,
            self.out_channels,
            self.num_groups,
            self.use_norm,
        );
        let bypass_conv = bypass(s.d, ci, co, false, false, device)?;
        Ok(ClassicResBlock {
            conv_1: s.conv(ci, co, 1, device)?,
            norm_1: make_norm(n, g, co, device)?,
            conv_2: s.conv(co, co, 1, device)?,
            norm_2: make_norm(n, g, co, device)?,
            bypass_norm: make_norm(n && bypass_conv.is_some(), g, co, device)?,
            bypass_conv,
            activation: self.activation,
        })
    }
}

impl ClassicResBlock {
    /// `[B, C_in, *N]` → `[B, C_out, *N]`.
    pub fn try_forward<const R: usize>(&self, x: Tensor<R>) -> Result<Tensor<R>> {
        let a = self.activation;
        let skip = norm(
            &self.bypass_norm,
            apply_bypass(&self.bypass_conv, x.clone())?,
        )?;
        let y = a.forward(norm(&self.norm_1, self.conv_1.try_forward(x)?)?);
        let y = norm(&self.norm_2, self.conv_2.try_forward(y)?)?;
        Ok(a.forward(y + skip))
    }
}

impl ModernResBlockConfig {
    /// Builds the block on `device`.
    pub fn init(&self, device: &Device) -> Result<ModernResBlock> {
        let s = self.settings()?;
        let (ci, co, g, n) = (
            self.in_channels,
            self.out_channels,
            self.num_groups,
            self.use_norm,
        );
        let bypass_conv = bypass(s.d, ci, co, false, false, device)?;
        Ok(ModernResBlock {
            norm_1: make_norm(n, g, ci, device)?,
            conv_1: s.conv(ci, co, 1, device)?,
            norm_2: make_norm(n, g, co, device)?,
            conv_2: s.conv(co, co, 1, device)?,
            bypass_norm: make_norm(n && bypass_conv.is_some(), g, ci, device)?,
            bypass_conv,
            activation: self.activation,
        })
    }
}

impl ModernResBlock {
    /// `[B, C_in, *N]` → `[B, C_out, *N]`.
    pub fn try_forward<const R: usize>(&self, x: Tensor<R>) -> Result<Tensor<R>> {
        let a = self.activation;
        let skip = apply_bypass(&self.bypass_conv, norm(&self.bypass_norm, x.clone())?)?;
        let y = self.conv_1.try_forward(a.forward(norm(&self.norm_1, x)?))?;
        let y = self.conv_2.try_forward(a.forward(norm(&self.norm_2, y)?))?;
        Ok(y + skip)
    }
}

/// pdequinox's `DilatedResBlock`: norm, dilated convolution and activation,
/// once per dilation rate, plus a bypass (1×1 convolution *with* bias, as
/// pdequinox, when `C_in != C_out`).
#[derive(Module, Debug)]
pub struct DilatedResBlock {
    /// One convolution per dilation rate (`conv_layers.{i}`).
    pub conv_layers: Vec<PhysicsConv>,
    /// One group norm per convolution (`norm_layers.{i}`), if used.
    pub norm_layers: Vec<GroupNorm>,
    /// 1×1 convolution when `C_in != C_out`.
    pub bypass_conv: Option<PointwiseLinearConv>,
    /// Group norm of the bypass (with norms and `C_in != C_out`).
    pub bypass_norm: Option<GroupNorm>,
    /// The activation.
    #[module(skip)]
    pub activation: PdeActivation,
}

impl DilatedResBlockConfig {
    /// Builds the block on `device`.
    pub fn init(&self, device: &Device) -> Result<DilatedResBlock> {
        let s = self.settings()?;
        let (ci, co, g, n) = (
            self.in_channels,
            self.out_channels,
            self.num_groups,
            self.use_norm,
        );
        if self.dilation_rates.is_empty() {
            return Err(Error::arg(
                "dilation_rates",
                "got none, expected at least one dilation rate",
            ));
        }
        let mut conv_layers = Vec::new();
        let mut norm_layers = Vec::new();
        for (i, &rate) in self.dilation_rates.iter().enumerate() {
            let c = if i == 0 { ci } else { co };
            conv_layers.push(s.conv(c, co, rate, device)?);
            if n {
                norm_layers.push(GroupNormConfig::new(g, c).init(device)?);
            }
        }
        let bypass_conv = bypass(s.d, ci, co, s.bias, s.zero_bias, device)?;
        Ok(DilatedResBlock {
            conv_layers,
            norm_layers,
            bypass_norm: make_norm(n && bypass_conv.is_some(), g, ci, device)?,
            bypass_conv,
            activation: self.activation,
        })
    }
}

impl DilatedResBlock {
    /// `[B, C_in, *N]` → `[B, C_out, *N]`.
    pub fn try_forward<const R: usize>(&self, x: Tensor<R>) -> Result<Tensor<R>> {
        let skip = apply_bypass(&self.bypass_conv, norm(&self.bypass_norm, x.clone())?)?;
        let mut y = x;
        for (i, conv) in self.conv_layers.iter().enumerate() {
            if let Some(n) = self.norm_layers.get(i) {
                y = n.try_forward(y)?;
            }
            y = self.activation.forward(conv.try_forward(y)?);
        }
        Ok(y + skip)
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward<const R: usize>(&self, x: Tensor<R>) -> Tensor<R> {
        idx_flow_core::or_panic(self.try_forward(x))
    }

    /// The sum of the convolutions' receptive fields.
    pub fn receptive_field(&self) -> Vec<(f64, f64)> {
        let fields: Vec<_> = self
            .conv_layers
            .iter()
            .map(|c| c.receptive_field())
            .collect();
        chain(&fields)
    }
}

impl TorchState for DilatedResBlock {
    fn visit_state<V: StateVisitor>(&self, p: &str, v: &mut V) {
        for (i, n) in self.norm_layers.iter().enumerate() {
            n.visit_state(&format!("{p}norm_layers.{i}."), v);
        }
        for (i, c) in self.conv_layers.iter().enumerate() {
            c.visit_state(&format!("{p}conv_layers.{i}."), v);
        }
        visit_opt(&self.bypass_conv, &format!("{p}bypass_conv."), v);
        visit_opt(&self.bypass_norm, &format!("{p}bypass_norm."), v);
    }

    fn load_state(self, p: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(DilatedResBlock {
            norm_layers: (self.norm_layers.into_iter().enumerate())
                .map(|(i, n)| n.load_state(&format!("{p}norm_layers.{i}."), l))
                .collect::<Result<_>>()?,
            conv_layers: (self.conv_layers.into_iter().enumerate())
                .map(|(i, c)| c.load_state(&format!("{p}conv_layers.{i}."), l))
                .collect::<Result<_>>()?,
            bypass_conv: load_opt(self.bypass_conv, &format!("{p}bypass_conv."), l)?,
            bypass_norm: load_opt(self.bypass_norm, &format!("{p}bypass_norm."), l)?,
            activation: self.activation,
        })
    }
}

/// Configuration of a [`ClassicSpectralBlock`].
#[derive(Config, Debug)]
pub struct ClassicSpectralBlockConfig {
    /// Spatial dimensions `D` (1, 2 or 3).
    pub num_spatial_dims: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Modes per axis (one value or one per axis). Default: 8.
    #[config(default = "vec![8]")]
    pub num_modes: Vec<usize>,
    /// Whether the bypass has a bias. Default: true.
    #[config(default = true)]
    pub use_bias: bool,
    /// Whether the bypass bias starts at zero. Default: false.
    #[config(default = false)]
    pub zero_bias_init: bool,
    /// The activation. Default: gelu (tanh form, `jax.nn.gelu`'s default).
    #[config(default = "PdeActivation::Gelu")]
    pub activation: PdeActivation,
}

/// pdequinox's `ClassicSpectralBlock`, the layer of a vanilla FNO:
/// `σ(spectral_conv(x) + by_pass_conv(x))`.
#[derive(Module, Debug)]
pub struct ClassicSpectralBlock {
    /// The Fourier layer.
    pub spectral_conv: SpectralConv,
    /// The 1×1 bypass (`by_pass_conv`, pdequinox's spelling).
    pub by_pass_conv: PointwiseLinearConv,
    /// The activation.
    #[module(skip)]
    pub activation: PdeActivation,
}

impl ClassicSpectralBlockConfig {
    /// Builds the block on `device`.
    pub fn init(&self, device: &Device) -> Result<ClassicSpectralBlock> {
        let (d, ci, co) = (self.num_spatial_dims, self.in_channels, self.out_channels);
        Ok(ClassicSpectralBlock {
            spectral_conv: SpectralConvConfig::new(d, ci, co, self.num_modes.clone())
                .init(device)?,
            by_pass_conv: PointwiseLinearConvConfig::new(d, ci, co)
                .with_use_bias(self.use_bias)
                .with_zero_bias_init(self.zero_bias_init)
                .init(device)?,
            activation: self.activation,
        })
    }
}

impl ClassicSpectralBlock {
    /// `[B, C_in, *N]` → `[B, C_out, *N]`.
    pub fn try_forward<const R: usize>(&self, x: Tensor<R>) -> Result<Tensor<R>> {
        let d = self.spectral_conv.num_spatial_dims();
        check_input(
            "ClassicSpectralBlock",
            &x,
            d,
            self.spectral_conv.in_channels(),
        )?;
        let y = self.spectral_conv.try_forward(x.clone())? + self.by_pass_conv.try_forward(x)?;
        Ok(self.activation.forward(y))
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward<const R: usize>(&self, x: Tensor<R>) -> Tensor<R> {
        idx_flow_core::or_panic(self.try_forward(x))
    }

    /// Infinite on every axis (the spectral convolution's).
    pub fn receptive_field(&self) -> Vec<(f64, f64)> {
        self.spectral_conv.receptive_field()
    }
}

impl TorchState for ClassicSpectralBlock {
    fn visit_state<V: StateVisitor>(&self, p: &str, v: &mut V) {
        self.spectral_conv
            .visit_state(&format!("{p}spectral_conv."), v);
        self.by_pass_conv
            .visit_state(&format!("{p}by_pass_conv."), v);
    }

    fn load_state(self, p: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(ClassicSpectralBlock {
            spectral_conv: self
                .spectral_conv
                .load_state(&format!("{p}spectral_conv."), l)?,
            by_pass_conv: self
                .by_pass_conv
                .load_state(&format!("{p}by_pass_conv."), l)?,
            activation: self.activation,
        })
    }
}
