//! pdequinox's block factories: [`BlockFactory`] says how to build a block
//! for given channels, activation and boundary mode; [`PdeBlock`] is the block
//! it builds. [`Sequential`](super::Sequential) and
//! [`Hierarchical`](super::Hierarchical) are assembled from them.
//!
//! | factory | block | pdequinox |
//! |---|---|---|
//! | [`BlockFactory::LinearChannelAdjust`] | [`PointwiseLinearConv`] | `LinearChannelAdjustBlockFactory` |
//! | [`BlockFactory::LinearConv`] | [`PhysicsConv`] (stride 1) | `LinearConvBlockFactory` |
//! | [`BlockFactory::LinearConvDown`] | [`PhysicsConv`] (stride `factor`) | `LinearConvDownBlockFactory` |
//! | [`BlockFactory::LinearConvUp`] | [`PhysicsConvTranspose`] (stride `factor`) | `LinearConvUpBlockFactory` |
//! | [`BlockFactory::ClassicDoubleConv`] | [`ClassicDoubleConvBlock`] | `ClassicDoubleConvBlockFactory` |
//! | [`BlockFactory::ClassicRes`] | [`ClassicResBlock`] | `ClassicResBlockFactory` |
//! | [`BlockFactory::ModernRes`] | [`ModernResBlock`] | `ModernResBlockFactory` |
//! | [`BlockFactory::DilatedRes`] | [`DilatedResBlock`] | `DilatedResBlockFactory` |
//! | [`BlockFactory::ClassicSpectral`] | [`ClassicSpectralBlock`] | `ClassicSpectralBlockFactory` |
//!
//! The lower-case constructors ([`BlockFactory::classic_res`], …) give
//! pdequinox's default arguments. As there, the linear blocks ignore the
//! activation, and the linear-channel-adjust and spectral blocks the boundary mode.
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use idx_flow_pde::{BlockFactory, BoundaryMode, PdeActivation};
//!
//! let device = Device::default();
//! let make = BlockFactory::LinearConvDown { kernel_size: 3, factor: 2, use_bias: true };
//! let down = make.build(2, 4, 8, PdeActivation::Relu, BoundaryMode::Periodic, &device)?;
//! let x = Tensor::<4>::random([1, 4, 16, 16], Distribution::Normal(0.0, 1.0), &device);
//! assert_eq!(down.try_forward(x)?.dims(), [1, 8, 8, 8]);
//! # Ok::<(), idx_flow_pde::Error>(())
//! ```

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::blocks::{
    ClassicDoubleConvBlock, ClassicDoubleConvBlockConfig, ClassicResBlock, ClassicResBlockConfig,
    ClassicSpectralBlock, ClassicSpectralBlockConfig, DilatedResBlock, DilatedResBlockConfig,
    ModernResBlock, ModernResBlockConfig, PdeActivation,
};
use super::boundary::BoundaryMode;
use super::conv::{PhysicsConv, PhysicsConvConfig, PointwiseLinearConv, PointwiseLinearConvConfig};
use super::conv_transpose::{PhysicsConvTranspose, PhysicsConvTransposeConfig};
use crate::Result;
use idx_flow_core::state_dict::{StateLoader, StateVisitor, TorchState};

/// How to build one block (pdequinox's `BlockFactory` subclasses, with their
/// arguments).
#[derive(Config, Debug, PartialEq)]
pub enum BlockFactory {
    /// A 1×1 convolution (lifting and projection of most architectures).
    LinearChannelAdjust {
        /// Whether it has a bias (pdequinox: true).
        use_bias: bool,
        /// Whether the bias starts at zero (pdequinox: false).
        zero_bias_init: bool,
    },
    /// A "same" convolution without activation.
    LinearConv {
        /// Kernel size on every axis (pdequinox: 3).
        kernel_size: usize,
        /// Whether it has a bias (pdequinox: true).
        use_bias: bool,
    },
    /// A strided "same" convolution (the down-sampling of a UNet).
    LinearConvDown {
        /// Kernel size on every axis (pdequinox: 3).
        kernel_size: usize,
        /// Stride on every axis (pdequinox: 2).
        factor: usize,
        /// Whether it has a bias (pdequinox: true).
        use_bias: bool,
    },
    /// A strided transposed convolution (the up-sampling of a UNet).
    LinearConvUp {
        /// Kernel size on every axis (pdequinox: 3).
        kernel_size: usize,
        /// Stride on every axis (pdequinox: 2).
        factor: usize,
        /// Whether it has a bias (pdequinox: true).
        use_bias: bool,
        /// Extra output cells on the right of every axis (pdequinox: 1).
        output_padding: usize,
    },
    /// [`ClassicDoubleConvBlock`].
    ClassicDoubleConv {
        /// Kernel size (pdequinox: 3).
        kernel_size: usize,
        /// Whether group norms are used (pdequinox: true).
        use_norm: bool,
        /// Groups of the norms (pdequinox: 1).
        num_groups: usize,
        /// Whether the convolutions have a bias (pdequinox: true).
        use_bias: bool,
        /// Whether biases start at zero (pdequinox: false).
        zero_bias_init: bool,
    },
    /// [`ClassicResBlock`].
    ClassicRes {
        /// Kernel size (pdequinox: 3).
        kernel_size: usize,
        /// Whether group norms are used (pdequinox: false).
        use_norm: bool,
        /// Groups of the norms (pdequinox: 1).
        num_groups: usize,
        /// Whether the convolutions have a bias (pdequinox: true).
        use_bias: bool,
        /// Whether biases start at zero (pdequinox: false).
        zero_bias_init: bool,
    },
    /// [`ModernResBlock`].
    ModernRes {
        /// Kernel size (pdequinox: 3).
        kernel_size: usize,
        /// Whether group norms are used (pdequinox: true).
        use_norm: bool,
        /// Groups of the norms (pdequinox: 1).
        num_groups: usize,
        /// Whether the convolutions have a bias (pdequinox: true).
        use_bias: bool,
        /// Whether biases start at zero (pdequinox: false).
        zero_bias_init: bool,
    },
    /// [`DilatedResBlock`].
    DilatedRes {
        /// Kernel size (pdequinox: 3).
        kernel_size: usize,
        /// Dilation of each convolution (pdequinox: 1, 2, 4, 8, 4, 2, 1).
        dilation_rates: Vec<usize>,
        /// Whether group norms are used (pdequinox: true).
        use_norm: bool,
        /// Groups of the norms (pdequinox: 1).
        num_groups: usize,
        /// Whether the convolutions have a bias (pdequinox: true).
        use_bias: bool,
        /// Whether biases start at zero (pdequinox: false).
        zero_bias_init: bool,
    },
    /// [`ClassicSpectralBlock`].
    ClassicSpectral {
        /// Modes per axis, one value or one per axis (pdequinox: 8).
        num_modes: Vec<usize>,
        /// Whether the bypass has a bias (pdequinox: true).
        use_bias: bool,
        /// Whether the bypass bias starts at zero (pdequinox: false).
        zero_bias_init: bool,
    },
}

impl BlockFactory {
    /// `LinearChannelAdjustBlockFactory()`: bias, drawn at random.
    pub fn linear_channel_adjust() -> Self {
        BlockFactory::LinearChannelAdjust {
            use_bias: true,
            zero_bias_init: false,
        }
    }

    /// `LinearConvBlockFactory()`: kernel 3, bias.
    pub fn linear_conv() -> Self {
        BlockFactory::LinearConv {
            kernel_size: 3,
            use_bias: true,
        }
    }

    /// `LinearConvDownBlockFactory()`: kernel 3, stride 2, bias.
    pub fn linear_conv_down() -> Self {
        BlockFactory::LinearConvDown {
            kernel_size: 3,
            factor: 2,
            use_bias: true,
        }
    }

    /// `LinearConvUpBlockFactory()`: kernel 3, stride 2, output padding 1, bias.
    pub fn linear_conv_up() -> Self {
        BlockFactory::LinearConvUp {
            kernel_size: 3,
            factor: 2,
            use_bias: true,
            output_padding: 1,
        }
    }

    /// `ClassicDoubleConvBlockFactory(use_norm=...)`: kernel 3, one group, biases.
    pub fn classic_double_conv(use_norm: bool) -> Self {
        BlockFactory::ClassicDoubleConv {
            kernel_size: 3,
            use_norm,
            num_groups: 1,
            use_bias: true,
            zero_bias_init: false,
        }
    }

    /// `ClassicResBlockFactory(use_norm=...)`: kernel 3, one group, biases.
    pub fn classic_res(use_norm: bool) -> Self {
        BlockFactory::ClassicRes {
            kernel_size: 3,
            use_norm,
            num_groups: 1,
            use_bias: true,
            zero_bias_init: false,
        }
    }

    /// `ModernResBlockFactory(use_norm=...)`: kernel 3, one group, biases.
    pub fn modern_res(use_norm: bool) -> Self {
        BlockFactory::ModernRes {
            kernel_size: 3,
            use_norm,
            num_groups: 1,
            use_bias: true,
            zero_bias_init: false,
        }
    }

    /// `DilatedResBlockFactory(dilation_rates=..., use_norm=...)`: kernel 3,
    /// one group, biases.
    pub fn dilated_res(dilation_rates: Vec<usize>, use_norm: bool) -> Self {
        BlockFactory::DilatedRes {
            kernel_size: 3,
            dilation_rates,
            use_norm,
            num_groups: 1,
            use_bias: true,
            zero_bias_init: false,
        }
    }

    /// `ClassicSpectralBlockFactory(num_modes=...)`: bypass with a bias.
    pub fn classic_spectral(num_modes: Vec<usize>) -> Self {
        BlockFactory::ClassicSpectral {
            num_modes,
            use_bias: true,
            zero_bias_init: false,
        }
    }

    /// Builds the block `C_in → C_out` for `D` spatial dimensions on `device`;
    /// an error for any argument the block refuses.
    pub fn build(
        &self,
        num_spatial_dims: usize,
        in_channels: usize,
        out_channels: usize,
        activation: PdeActivation,
        boundary_mode: BoundaryMode,
        device: &Device,
    ) -> Result<PdeBlock> {
        let (d, ci, co, a, m) = (
            num_spatial_dims,
            in_channels,
            out_channels,
            activation,
            boundary_mode,
        );
        Ok(match self.clone() {
            BlockFactory::LinearChannelAdjust {
                use_bias,
                zero_bias_init,
            } => PdeBlock::LinearChannelAdjust(
                PointwiseLinearConvConfig::new(d, ci, co)
                    .with_use_bias(use_bias)
                    .with_zero_bias_init(zero_bias_init)
                    .init(device)?,
            ),
            BlockFactory::LinearConv {
                kernel_size,
                use_bias,
            } => PdeBlock::LinearConv(
                PhysicsConvConfig::new(d, ci, co, vec![kernel_size], m)
                    .with_use_bias(use_bias)
                    .init(device)?,
            ),
            BlockFactory::LinearConvDown {
                kernel_size,
                factor,
                use_bias,
            } => PdeBlock::LinearConv(
                PhysicsConvConfig::new(d, ci, co, vec![kernel_size], m)
                    .with_stride(vec![factor])
                    .with_use_bias(use_bias)
                    .init(device)?,
            ),
            BlockFactory::LinearConvUp {
                kernel_size,
                factor,
                use_bias,
                output_padding,
            } => PdeBlock::LinearConvUp(
                PhysicsConvTransposeConfig::new(d, ci, co, vec![kernel_size], m)
                    .with_stride(vec![factor])
                    .with_output_padding(vec![output_padding])
                    .with_use_bias(use_bias)
                    .init(device)?,
            ),
            BlockFactory::ClassicDoubleConv {
                kernel_size,
                use_norm,
                num_groups,
                use_bias,
                zero_bias_init,
            } => PdeBlock::ClassicDoubleConv(
                ClassicDoubleConvBlockConfig::new(d, ci, co, m)
                    .with_kernel_size(kernel_size)
                    .with_use_norm(use_norm)
                    .with_num_groups(num_groups)
                    .with_use_bias(use_bias)
                    .with_zero_bias_init(zero_bias_init)
                    .with_activation(a)
                    .init(device)?,
            ),
            BlockFactory::ClassicRes {
                kernel_size,
                use_norm,
                num_groups,
                use_bias,
                zero_bias_init,
            } => PdeBlock::ClassicRes(
                ClassicResBlockConfig::new(d, ci, co, m)
                    .with_kernel_size(kernel_size)
                    .with_use_norm(use_norm)
                    .with_num_groups(num_groups)
                    .with_use_bias(use_bias)
                    .with_zero_bias_init(zero_bias_init)
                    .with_activation(a)
                    .init(device)?,
            ),
            BlockFactory::ModernRes {
                kernel_size,
                use_norm,
                num_groups,
                use_bias,
                zero_bias_init,
            } => PdeBlock::ModernRes(
                ModernResBlockConfig::new(d, ci, co, m)
                    .with_kernel_size(kernel_size)
                    .with_use_norm(use_norm)
                    .with_num_groups(num_groups)
                    .with_use_bias(use_bias)
                    .with_zero_bias_init(zero_bias_init)
                    .with_activation(a)
                    .init(device)?,
            ),
            BlockFactory::DilatedRes {
                kernel_size,
                dilation_rates,
                use_norm,
                num_groups,
                use_bias,
                zero_bias_init,
            } => PdeBlock::DilatedRes(
                DilatedResBlockConfig::new(d, ci, co, m)
                    .with_kernel_size(kernel_size)
                    .with_dilation_rates(dilation_rates)
                    .with_use_norm(use_norm)
                    .with_num_groups(num_groups)
                    .with_use_bias(use_bias)
                    .with_zero_bias_init(zero_bias_init)
                    .with_activation(a)
                    .init(device)?,
            ),
            BlockFactory::ClassicSpectral {
                num_modes,
                use_bias,
                zero_bias_init,
            } => PdeBlock::ClassicSpectral(
                ClassicSpectralBlockConfig::new(d, ci, co)
                    .with_num_modes(num_modes)
                    .with_use_bias(use_bias)
                    .with_zero_bias_init(zero_bias_init)
                    .with_activation(a)
                    .init(device)?,
            ),
        })
    }
}

/// One block of a [`Sequential`](super::Sequential) or
/// [`Hierarchical`](super::Hierarchical), as a [`BlockFactory`] builds it.
/// Its parameters carry the inner layer's names (no extra prefix), as in
/// pdequinox, where the block *is* the layer.
#[derive(Module, Debug)]
pub enum PdeBlock {
    /// A 1×1 convolution.
    LinearChannelAdjust(PointwiseLinearConv),
    /// A plain or strided "same" convolution.
    LinearConv(PhysicsConv),
    /// A transposed convolution.
    LinearConvUp(PhysicsConvTranspose),
    /// [`ClassicDoubleConvBlock`].
    ClassicDoubleConv(ClassicDoubleConvBlock),
    /// [`ClassicResBlock`].
    ClassicRes(ClassicResBlock),
    /// [`ModernResBlock`].
    ModernRes(ModernResBlock),
    /// [`DilatedResBlock`].
    DilatedRes(DilatedResBlock),
    /// [`ClassicSpectralBlock`].
    ClassicSpectral(ClassicSpectralBlock),
}

/// Runs `$body` with `$b` bound to the inner block.
macro_rules! each_block {
    ($self:expr, $b:ident => $body:expr) => {
        match $self {
            PdeBlock::LinearChannelAdjust($b) => $body,
            PdeBlock::LinearConv($b) => $body,
            PdeBlock::LinearConvUp($b) => $body,
            PdeBlock::ClassicDoubleConv($b) => $body,
            PdeBlock::ClassicRes($b) => $body,
            PdeBlock::ModernRes($b) => $body,
            PdeBlock::DilatedRes($b) => $body,
            PdeBlock::ClassicSpectral($b) => $body,
        }
    };
}

impl PdeBlock {
    /// `[B, C_in, *N]` → `[B, C_out, *N']` (`N' = N` except for the strided
    /// and transposed convolutions); an error for a wrong input.
    pub fn try_forward<const R: usize>(&self, x: Tensor<R>) -> Result<Tensor<R>> {
        each_block!(self, b => b.try_forward(x))
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward<const R: usize>(&self, x: Tensor<R>) -> Tensor<R> {
        idx_flow_core::or_panic(self.try_forward(x))
    }

    /// The block's receptive field per axis (pdequinox's `receptive_field`).
    pub fn receptive_field(&self) -> Vec<(f64, f64)> {
        each_block!(self, b => b.receptive_field())
    }
}

impl TorchState for PdeBlock {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        each_block!(self, b => b.visit_state(prefix, v))
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(match self {
            PdeBlock::LinearChannelAdjust(b) => {
                PdeBlock::LinearChannelAdjust(b.load_state(prefix, l)?)
            }
            PdeBlock::LinearConv(b) => PdeBlock::LinearConv(b.load_state(prefix, l)?),
            PdeBlock::LinearConvUp(b) => PdeBlock::LinearConvUp(b.load_state(prefix, l)?),
            PdeBlock::ClassicDoubleConv(b) => PdeBlock::ClassicDoubleConv(b.load_state(prefix, l)?),
            PdeBlock::ClassicRes(b) => PdeBlock::ClassicRes(b.load_state(prefix, l)?),
            PdeBlock::ModernRes(b) => PdeBlock::ModernRes(b.load_state(prefix, l)?),
            PdeBlock::DilatedRes(b) => PdeBlock::DilatedRes(b.load_state(prefix, l)?),
            PdeBlock::ClassicSpectral(b) => PdeBlock::ClassicSpectral(b.load_state(prefix, l)?),
        })
    }
}
