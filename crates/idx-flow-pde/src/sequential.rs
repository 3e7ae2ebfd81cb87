//! [`Sequential`]: pdequinox's generic constructor of block-based
//! architectures on one resolution — a lifting block, `num_blocks` blocks and
//! a projection block, one after another (the ResNets and the FNO).
//!
//! Parameter names are pdequinox's: `lifting.weight`, `blocks.0.conv_1.weight`,
//! `blocks.3.spectral_conv.weights_real`, `projection.bias`.
//!
//! ```
//! use burn::module::Module;
//! use burn::tensor::{Device, Distribution, Tensor};
//! use idx_flow_pde::{BlockFactory, BoundaryMode, PdeActivation, SequentialConfig};
//!
//! let device = Device::default();
//! // Three modern residual blocks 8 → 8 → 16 → 16 between 1×1 lifting and projection.
//! let net = SequentialConfig::new(1, 2, 1, vec![8, 8, 16, 16], 3, PdeActivation::Relu, BoundaryMode::Periodic)
//!     .with_block_factory(BlockFactory::modern_res(true))
//!     .init(&device)?;
//! let x = Tensor::<3>::random([4, 2, 32], Distribution::Normal(0.0, 1.0), &device);
//! assert_eq!(net.try_forward(x)?.dims(), [4, 1, 32]);
//! // Each block reaches two cells to either side (two 3-wide convolutions).
//! assert_eq!(net.receptive_field(), [(6.0, 6.0)]);
//! assert!(net.num_params() > 0);
//! # Ok::<(), idx_flow_pde::Error>(())
//! ```

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::blocks::PdeActivation;
use super::boundary::BoundaryMode;
use super::check_spatial_dims;
use super::factory::{BlockFactory, PdeBlock};
use crate::{Error, Result};
use idx_flow_core::check_positive;
use idx_flow_core::state_dict::{StateLoader, StateVisitor, TorchState};

/// Configuration of a [`Sequential`] (pdequinox's `Sequential` arguments).
#[derive(Config, Debug)]
pub struct SequentialConfig {
    /// Spatial dimensions `D` (1, 2 or 3).
    pub num_spatial_dims: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Channels between the blocks: one value (everywhere) or `num_blocks + 1`
    /// values (after the lifting, then after each block).
    pub hidden_channels: Vec<usize>,
    /// Blocks between lifting and projection (at least 1).
    pub num_blocks: usize,
    /// The activation handed to every factory.
    pub activation: PdeActivation,
    /// The boundary mode handed to every factory.
    pub boundary_mode: BoundaryMode,
    /// Builds the lifting `C_in → hidden[0]`. Default: a 1×1 convolution.
    #[config(default = "BlockFactory::linear_channel_adjust()")]
    pub lifting_factory: BlockFactory,
    /// Builds each block `hidden[i] → hidden[i+1]`. Default: a classic
    /// (post-activation) residual block without norms.
    #[config(default = "BlockFactory::classic_res(false)")]
    pub block_factory: BlockFactory,
    /// Builds the projection `hidden[-1] → C_out`. Default: a 1×1 convolution.
    #[config(default = "BlockFactory::linear_channel_adjust()")]
    pub projection_factory: BlockFactory,
}

/// pdequinox's `Sequential`: `projection(blocks[n−1](… blocks[0](lifting(x))))`.
#[derive(Module, Debug)]
pub struct Sequential {
    /// `C_in → hidden[0]` (`lifting`).
    pub lifting: PdeBlock,
    /// `hidden[i] → hidden[i+1]` (`blocks.{i}`).
    pub blocks: Vec<PdeBlock>,
    /// `hidden[n] → C_out` (`projection`).
    pub projection: PdeBlock,
}

/// `hidden_channels` as `num_blocks + 1` values.
fn channel_list(hidden: &[usize], num_blocks: usize) -> Result<Vec<usize>> {
    let list = match hidden.len() {
        1 => vec![hidden[0]; num_blocks + 1],
        n if n == num_blocks + 1 => hidden.to_vec(),
        n => {
            return Err(Error::arg(
                "hidden_channels",
                format!(
                    "got {n} values {hidden:?}, expected 1 or num_blocks + 1 = {}",
                    num_blocks + 1
                ),
            ));
        }
    };
    if list.contains(&0) {
        return Err(Error::arg(
            "hidden_channels",
            format!("got {hidden:?}, expected values >= 1"),
        ));
    }
    Ok(list)
}

impl SequentialConfig {
    /// Builds the network on `device`; an error for an argument pdequinox or
    /// a block refuses (no blocks, a wrong number of hidden channel counts, …).
    pub fn init(&self, device: &Device) -> Result<Sequential> {
        let d = self.num_spatial_dims;
        check_spatial_dims(d)?;
        check_positive("num_blocks", self.num_blocks)?;
        let hidden = channel_list(&self.hidden_channels, self.num_blocks)?;
        let (a, m) = (self.activation, self.boundary_mode);
        let lifting = self
            .lifting_factory
            .build(d, self.in_channels, hidden[0], a, m, device)?;
        let blocks = hidden
            .windows(2)
            .map(|w| self.block_factory.build(d, w[0], w[1], a, m, device))
            .collect::<Result<_>>()?;
        let projection = self.projection_factory.build(
            d,
            hidden[self.num_blocks],
            self.out_channels,
            a,
            m,
            device,
        )?;
        Ok(Sequential {
            lifting,
            blocks,
            projection,
        })
    }
}

impl Sequential {
    /// `[B, C_in, *N]` → `[B, C_out, *N]` (for blocks that keep the grid);
    /// an error for a wrong input.
    pub fn try_forward<const R: usize>(&self, x: Tensor<R>) -> Result<Tensor<R>> {
        let mut x = self.lifting.try_forward(x)?;
        for block in &self.blocks {
            x = block.try_forward(x)?;
        }
        self.projection.try_forward(x)
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward<const R: usize>(&self, x: Tensor<R>) -> Tensor<R> {
        idx_flow_core::or_panic(self.try_forward(x))
    }

    /// pdequinox's `receptive_field`: the sum of the lifting's, the blocks'
    /// and the projection's, per axis (infinite with a spectral block).
    pub fn receptive_field(&self) -> Vec<(f64, f64)> {
        let mut fields = vec![self.lifting.receptive_field()];
        fields.extend(self.blocks.iter().map(PdeBlock::receptive_field));
        fields.push(self.projection.receptive_field());
        sum_receptive_fields(&fields)
    }
}

/// pdequinox's `sum_receptive_fields`: the per-axis sum of the fields of
/// layers applied one after another.
pub(crate) fn sum_receptive_fields(fields: &[Vec<(f64, f64)>]) -> Vec<(f64, f64)> {
    let d = fields.first().map_or(0, Vec::len);
    (0..d)
        .map(|a| {
            fields
                .iter()
                .fold((0.0, 0.0), |(l, r), f| (l + f[a].0, r + f[a].1))
        })
        .collect()
}

impl TorchState for Sequential {
    fn visit_state<V: StateVisitor>(&self, p: &str, v: &mut V) {
        self.lifting.visit_state(&format!("{p}lifting."), v);
        for (i, b) in self.blocks.iter().enumerate() {
            b.visit_state(&format!("{p}blocks.{i}."), v);
        }
        self.projection.visit_state(&format!("{p}projection."), v);
    }

    fn load_state(self, p: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(Sequential {
            lifting: self.lifting.load_state(&format!("{p}lifting."), l)?,
            blocks: (self.blocks.into_iter().enumerate())
                .map(|(i, b)| b.load_state(&format!("{p}blocks.{i}."), l))
                .collect::<Result<_>>()?,
            projection: self.projection.load_state(&format!("{p}projection."), l)?,
        })
    }
}
