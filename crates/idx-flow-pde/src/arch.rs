//! pdequinox's architectures (`pdequinox.arch`), with its defaults.
//!
//! | config | builds | pdequinox | defaults |
//! |---|---|---|---|
//! | [`ConvNetConfig`] | [`ConvNet`] | `ConvNet` | 16 channels, depth 10 (11 convolutions), kernel 3, relu |
//! | [`ClassicResNetConfig`] | [`Sequential`] | `ClassicResNet` | 32 channels, 6 post-activation residual blocks, no norms, relu |
//! | [`ModernResNetConfig`] | [`Sequential`] | `ModernResNet` | 32 channels, 6 pre-activation residual blocks, group norms, relu |
//! | [`DilatedResNetConfig`] | [`Sequential`] | `DilatedResNet` | 32 channels, 2 dilated blocks (1, 2, 4, 8, 4, 2, 1), group norms, relu |
//! | [`ClassicUNetConfig`] | [`Hierarchical`] | `ClassicUNet` | 16 channels, 4 levels, double convolutions with group norms, relu |
//! | [`ModernUNetConfig`] | [`Hierarchical`] | `ModernUNet` | 16 channels, 4 levels, 2 pre-activation residual blocks per level, group norms, relu |
//! | [`ClassicFnoConfig`] | [`Sequential`] | `ClassicFNO` | 32 channels, 12 modes, 4 spectral blocks, gelu (tanh form) |
//!
//! Every boundary mode defaults to periodic. The residual networks and the
//! FNO lift and project with 1×1 convolutions; the UNets lift with their
//! block and project with a 1×1 convolution. Each config's `sequential()` or
//! `hierarchical()` gives the generic configuration it stands for, so its
//! factories can be changed before `init`.
//!
//! ```
//! use burn::module::Module;
//! use burn::tensor::{Device, Distribution, Tensor};
//! use idx_flow_pde::{ClassicFnoConfig, ClassicUNetConfig};
//!
//! let device = Device::default();
//! let fno = ClassicFnoConfig::new(1, 1, 1).with_hidden_channels(8).with_num_modes(vec![4]).init(&device)?;
//! let x = Tensor::<3>::random([2, 1, 32], Distribution::Normal(0.0, 1.0), &device);
//! assert_eq!(fno.try_forward(x)?.dims(), [2, 1, 32]);
//! assert_eq!(fno.receptive_field(), [(f64::INFINITY, f64::INFINITY)]);
//! // pdequinox reports 2 357 619 parameters for ClassicUNet(2, 2, 3).
//! let unet = ClassicUNetConfig::new(2, 2, 3).init(&device)?;
//! assert_eq!(unet.num_params(), 2_357_619);
//! # Ok::<(), idx_flow_pde::Error>(())
//! ```

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::blocks::PdeActivation;
use super::boundary::BoundaryMode;
use super::check_spatial_dims;
use super::conv::{PhysicsConv, PhysicsConvConfig};
use super::factory::BlockFactory;
use super::hierarchical::{Hierarchical, HierarchicalConfig};
use super::sequential::{Sequential, SequentialConfig, sum_receptive_fields};
use crate::{Error, Result};
use idx_flow_core::state_dict::{StateLoader, StateVisitor, TorchState};

/// Configuration of a [`ConvNet`] (pdequinox's `ConvNet` arguments).
#[derive(Config, Debug)]
pub struct ConvNetConfig {
    /// Spatial dimensions `D` (1, 2 or 3).
    pub num_spatial_dims: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Channels of the hidden layers. Default: 16.
    #[config(default = 16)]
    pub hidden_channels: usize,
    /// Hidden layers; `depth + 1` convolutions (one linear convolution for
    /// depth 0). Default: 10.
    #[config(default = 10)]
    pub depth: usize,
    /// The activation after every convolution but the last. Default: relu.
    #[config(default = "PdeActivation::Relu")]
    pub activation: PdeActivation,
    /// Kernel size on every axis. Default: 3.
    #[config(default = 3)]
    pub kernel_size: usize,
    /// The activation after the last convolution. Default: the identity.
    #[config(default = "PdeActivation::Identity")]
    pub final_activation: PdeActivation,
    /// Whether the hidden convolutions have a bias. Default: true.
    #[config(default = true)]
    pub use_bias: bool,
    /// Whether the last convolution has a bias. Default: true.
    #[config(default = true)]
    pub use_final_bias: bool,
    /// How the field continues beyond the grid. Default: periodic.
    #[config(default = "BoundaryMode::Periodic")]
    pub boundary_mode: BoundaryMode,
    /// Whether biases start at zero. Default: false.
    #[config(default = false)]
    pub zero_bias_init: bool,
}

/// pdequinox's `ConvNet`: "same" convolutions with an activation between
/// them.
#[derive(Module, Debug)]
pub struct ConvNet {
    /// `C_in → hidden → … → C_out` (`layers.{i}`).
    pub layers: Vec<PhysicsConv>,
    /// The activation between convolutions.
    #[module(skip)]
    pub activation: PdeActivation,
    /// The activation after the last convolution.
    #[module(skip)]
    pub final_activation: PdeActivation,
}

impl ConvNetConfig {
    /// Builds the network on `device`.
    pub fn init(&self, device: &Device) -> Result<ConvNet> {
        check_spatial_dims(self.num_spatial_dims)?;
        let conv = |ci, co, bias| {
            PhysicsConvConfig::new(
                self.num_spatial_dims,
                ci,
                co,
                vec![self.kernel_size],
                self.boundary_mode,
            )
            .with_use_bias(bias)
            .with_zero_bias_init(self.zero_bias_init)
            .init(device)
        };
        let (ci, h, co) = (self.in_channels, self.hidden_channels, self.out_channels);
        let layers = if self.depth == 0 {
            vec![conv(ci, co, self.use_final_bias)?]
        } else {
            let mut layers = vec![conv(ci, h, self.use_bias)?];
            for _ in 1..self.depth {
                layers.push(conv(h, h, self.use_bias)?);
            }
            layers.push(conv(h, co, self.use_final_bias)?);
            layers
        };
        Ok(ConvNet {
            layers,
            activation: self.activation,
            final_activation: self.final_activation,
        })
    }
}

impl ConvNet {
    /// `[B, C_in, *N]` → `[B, C_out, *N]`; an error for a wrong input.
    pub fn try_forward<const R: usize>(&self, x: Tensor<R>) -> Result<Tensor<R>> {
        let Some((last, hidden)) = self.layers.split_last() else {
            return Err(Error::arg(
                "layers",
                "got none, expected at least one convolution",
            ));
        };
        let mut x = x;
        for conv in hidden {
            x = self.activation.forward(conv.try_forward(x)?);
        }
        Ok(self.final_activation.forward(last.try_forward(x)?))
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward<const R: usize>(&self, x: Tensor<R>) -> Tensor<R> {
        idx_flow_core::or_panic(self.try_forward(x))
    }

    /// pdequinox's `receptive_field`: the sum of the convolutions'.
    pub fn receptive_field(&self) -> Vec<(f64, f64)> {
        let fields: Vec<_> = self.layers.iter().map(|c| c.receptive_field()).collect();
        sum_receptive_fields(&fields)
    }
}

impl TorchState for ConvNet {
    fn visit_state<V: StateVisitor>(&self, p: &str, v: &mut V) {
        for (i, c) in self.layers.iter().enumerate() {
            c.visit_state(&format!("{p}layers.{i}."), v);
        }
    }

    fn load_state(self, p: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(ConvNet {
            layers: (self.layers.into_iter().enumerate())
                .map(|(i, c)| c.load_state(&format!("{p}layers.{i}."), l))
                .collect::<Result<_>>()?,
            ..self
        })
    }
}

/// The fields every residual network shares, and `sequential()`/`init`.
macro_rules! res_net_config {
    (
        $(#[$doc:meta])* $name:ident,
        hidden = $hidden:expr, blocks = $blocks:expr, norm = $norm:expr,
        extra { $($extra:tt)* },
        factory = |$s:ident| $factory:expr
    ) => {
        $(#[$doc])*
        #[derive(Config, Debug)]
        pub struct $name {
            /// Spatial dimensions `D` (1, 2 or 3).
            pub num_spatial_dims: usize,
            /// Input channels.
            pub in_channels: usize,
            /// Output channels.
            pub out_channels: usize,
            #[doc = concat!("Channels of every block. Default: ", stringify!($hidden), ".")]
            #[config(default = $hidden)]
            pub hidden_channels: usize,
            #[doc = concat!("Residual blocks. Default: ", stringify!($blocks), ".")]
            #[config(default = $blocks)]
            pub num_blocks: usize,
            #[doc = concat!("Whether the blocks use group norms. Default: ", stringify!($norm), ".")]
            #[config(default = $norm)]
            pub use_norm: bool,
            /// The activation of the blocks (lifting and projection are linear). Default: relu.
            #[config(default = "PdeActivation::Relu")]
            pub activation: PdeActivation,
            /// How the field continues beyond the grid. Default: periodic.
            #[config(default = "BoundaryMode::Periodic")]
            pub boundary_mode: BoundaryMode,
            $($extra)*
        }

        impl $name {
            /// The generic configuration this architecture stands for.
            pub fn sequential(&self) -> SequentialConfig {
                let $s = self;
                SequentialConfig::new(
                    self.num_spatial_dims,
                    self.in_channels,
                    self.out_channels,
                    vec![self.hidden_channels],
                    self.num_blocks,
                    self.activation,
                    self.boundary_mode,
                )
                .with_block_factory($factory)
            }

            /// Builds the network on `device`.
            pub fn init(&self, device: &Device) -> Result<Sequential> {
                self.sequential().init(device)
            }
        }
    };
}

res_net_config!(
    /// Configuration of pdequinox's `ClassicResNet`: post-activation residual
    /// blocks ([`ClassicResBlock`](super::ClassicResBlock)) between 1×1
    /// lifting and projection.
    ClassicResNetConfig,
    hidden = 32, blocks = 6, norm = false,
    extra {},
    factory = |s| BlockFactory::classic_res(s.use_norm)
);
res_net_config!(
    /// Configuration of pdequinox's `ModernResNet`: pre-activation residual
    /// blocks ([`ModernResBlock`](super::ModernResBlock)) between 1×1
    /// lifting and projection.
    ModernResNetConfig,
    hidden = 32, blocks = 6, norm = true,
    extra {},
    factory = |s| BlockFactory::modern_res(s.use_norm)
);
res_net_config!(
    /// Configuration of pdequinox's `DilatedResNet`: dilated residual blocks
    /// ([`DilatedResBlock`](super::DilatedResBlock)) between 1×1 lifting and
    /// projection.
    DilatedResNetConfig,
    hidden = 32, blocks = 2, norm = true,
    extra {
        /// Dilation of each convolution of a block. Default: 1, 2, 4, 8, 4, 2, 1.
        #[config(default = "vec![1, 2, 4, 8, 4, 2, 1]")]
        pub dilation_rates: Vec<usize>,
    },
    factory = |s| BlockFactory::dilated_res(s.dilation_rates.clone(), s.use_norm)
);

/// Configuration of pdequinox's `ClassicFNO`: spectral blocks
/// ([`ClassicSpectralBlock`](super::ClassicSpectralBlock)) between 1×1
/// lifting and projection. There is no boundary mode (pdequinox's argument
/// is unused): the Fourier layers treat every grid as periodic.
#[derive(Config, Debug)]
pub struct ClassicFnoConfig {
    /// Spatial dimensions `D` (1, 2 or 3).
    pub num_spatial_dims: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Channels of every block. Default: 32.
    #[config(default = 32)]
    pub hidden_channels: usize,
    /// Modes kept per axis, one value or one per axis. Default: 12.
    #[config(default = "vec![12]")]
    pub num_modes: Vec<usize>,
    /// Spectral blocks. Default: 4.
    #[config(default = 4)]
    pub num_blocks: usize,
    /// The activation of the blocks. Default: gelu (tanh form, `jax.nn.gelu`).
    #[config(default = "PdeActivation::Gelu")]
    pub activation: PdeActivation,
}

impl ClassicFnoConfig {
    /// The generic configuration this architecture stands for.
    pub fn sequential(&self) -> SequentialConfig {
        SequentialConfig::new(
            self.num_spatial_dims,
            self.in_channels,
            self.out_channels,
            vec![self.hidden_channels],
            self.num_blocks,
            self.activation,
            BoundaryMode::Periodic,
        )
        .with_block_factory(BlockFactory::classic_spectral(self.num_modes.clone()))
    }

    /// Builds the network on `device`.
    pub fn init(&self, device: &Device) -> Result<Sequential> {
        self.sequential().init(device)
    }
}

/// Configuration of pdequinox's `ClassicUNet`: double convolutions
/// ([`ClassicDoubleConvBlock`](super::ClassicDoubleConvBlock)) on every level,
/// one per arc, channels doubling as the grid halves.
#[derive(Config, Debug)]
pub struct ClassicUNetConfig {
    /// Spatial dimensions `D` (1, 2 or 3).
    pub num_spatial_dims: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Channels at the finest resolution. Default: 16.
    #[config(default = 16)]
    pub hidden_channels: usize,
    /// Levels (each halves the grid and doubles the channels). Default: 4.
    #[config(default = 4)]
    pub num_levels: usize,
    /// Whether the double convolutions use group norms. Default: true.
    #[config(default = true)]
    pub use_norm: bool,
    /// The activation of the blocks. Default: relu.
    #[config(default = "PdeActivation::Relu")]
    pub activation: PdeActivation,
    /// How the field continues beyond the grid. Default: periodic.
    #[config(default = "BoundaryMode::Periodic")]
    pub boundary_mode: BoundaryMode,
}

impl ClassicUNetConfig {
    /// The generic configuration this architecture stands for.
    pub fn hierarchical(&self) -> HierarchicalConfig {
        let block = BlockFactory::classic_double_conv(self.use_norm);
        HierarchicalConfig::new(
            self.num_spatial_dims,
            self.in_channels,
            self.out_channels,
            self.hidden_channels,
            self.num_levels,
            1,
            self.activation,
            self.boundary_mode,
        )
        .with_lifting_factory(block.clone())
        .with_left_arc_factory(block.clone())
        .with_right_arc_factory(block)
    }

    /// Builds the network on `device`.
    pub fn init(&self, device: &Device) -> Result<Hierarchical> {
        self.hierarchical().init(device)
    }
}

/// Configuration of pdequinox's `ModernUNet` (PDEArena's UNet without
/// multi-skips): pre-activation residual blocks
/// ([`ModernResBlock`](super::ModernResBlock)), `num_blocks` per level in each
/// arc, also as the lifting.
#[derive(Config, Debug)]
pub struct ModernUNetConfig {
    /// Spatial dimensions `D` (1, 2 or 3).
    pub num_spatial_dims: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Channels at the finest resolution. Default: 16.
    #[config(default = 16)]
    pub hidden_channels: usize,
    /// Levels (each halves the grid). Default: 4.
    #[config(default = 4)]
    pub num_levels: usize,
    /// Residual blocks per level in each arc, bottleneck included. Default: 2.
    #[config(default = 2)]
    pub num_blocks: usize,
    /// Channel multiplier of each coarser level (`num_levels` values).
    /// Default: doubling (2, 4, 8, …).
    #[config(default = "None")]
    pub channel_multipliers: Option<Vec<usize>>,
    /// Whether the residual blocks use group norms. Default: true.
    #[config(default = true)]
    pub use_norm: bool,
    /// The activation of the blocks. Default: relu.
    #[config(default = "PdeActivation::Relu")]
    pub activation: PdeActivation,
    /// How the field continues beyond the grid. Default: periodic.
    #[config(default = "BoundaryMode::Periodic")]
    pub boundary_mode: BoundaryMode,
}

impl ModernUNetConfig {
    /// The generic configuration this architecture stands for.
    pub fn hierarchical(&self) -> HierarchicalConfig {
        let block = BlockFactory::modern_res(self.use_norm);
        HierarchicalConfig::new(
            self.num_spatial_dims,
            self.in_channels,
            self.out_channels,
            self.hidden_channels,
            self.num_levels,
            self.num_blocks,
            self.activation,
            self.boundary_mode,
        )
        .with_channel_multipliers(self.channel_multipliers.clone())
        .with_lifting_factory(block.clone())
        .with_left_arc_factory(block.clone())
        .with_right_arc_factory(block)
    }

    /// Builds the network on `device`.
    pub fn init(&self, device: &Device) -> Result<Hierarchical> {
        self.hierarchical().init(device)
    }
}
