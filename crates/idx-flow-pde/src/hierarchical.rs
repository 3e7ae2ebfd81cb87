//! [`Hierarchical`]: pdequinox's generic constructor of UNet-like
//! architectures, which work on `num_levels + 1` resolutions.
//!
//! With `c_0 = hidden_channels` and `c_l = hidden_channels · m_l` (the channel
//! multipliers, `r^l` by default, `r` the reduction factor):
//!
//! - `lifting`: `C_in → c_0` at full resolution;
//! - per level `l = 1..L` (encoder): the skip is kept, then
//!   `down_sampling_blocks.{l−1}` (`c_{l−1} → c_{l−1}`, coarser by `r`) and
//!   `left_arc_blocks.{l−1}.{j}` (`num_blocks` blocks, the first
//!   `c_{l−1} → c_l`; the last level's is the bottleneck);
//! - per level from the coarsest (decoder): `up_sampling_blocks.{l−1}`
//!   (`c_l → c_l / r`, finer by `r`), concatenation `[skip, x]` on the channels,
//!   `right_arc_blocks.{l−1}.{j}` (the first `c_l / r + c_{l−1} → c_{l−1}`);
//! - `projection`: `c_0 → C_out`.
//!
//! Every spatial size must be a multiple of `r^L`, as pdequinox demands.
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use idx_flow_pde::{BoundaryMode, HierarchicalConfig, PdeActivation};
//!
//! let device = Device::default();
//! let unet = HierarchicalConfig::new(2, 1, 1, 4, 2, 1, PdeActivation::Relu, BoundaryMode::Neumann)
//!     .init(&device)?;
//! let x = Tensor::<4>::random([2, 1, 16, 12], Distribution::Normal(0.0, 1.0), &device);
//! assert_eq!(unet.try_forward(x)?.dims(), [2, 1, 16, 12]);
//! let odd = Tensor::<4>::random([2, 1, 16, 10], Distribution::Normal(0.0, 1.0), &device);
//! assert!(unet.try_forward(odd).is_err()); // 10 is not a multiple of 2² = 4
//! # Ok::<(), idx_flow_pde::Error>(())
//! ```

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::blocks::PdeActivation;
use super::boundary::BoundaryMode;
use super::check_spatial_dims;
use super::factory::{BlockFactory, PdeBlock};
use super::sequential::sum_receptive_fields;
use crate::{Error, Result};
use idx_flow_core::check_positive;
use idx_flow_core::state_dict::{StateLoader, StateVisitor, TorchState};

/// Configuration of a [`Hierarchical`] (pdequinox's `Hierarchical` arguments).
#[derive(Config, Debug)]
pub struct HierarchicalConfig {
    /// Spatial dimensions `D` (1, 2 or 3).
    pub num_spatial_dims: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Channels at the finest resolution (after the lifting).
    pub hidden_channels: usize,
    /// Levels `L`: down- and up-sampling steps (0 gives a plain conv net).
    pub num_levels: usize,
    /// Blocks per level in each arc, bottleneck included (at least 1).
    pub num_blocks: usize,
    /// The activation handed to every factory.
    pub activation: PdeActivation,
    /// The boundary mode handed to every factory.
    pub boundary_mode: BoundaryMode,
    /// Resolution ratio `r` between levels; also the default channel growth
    /// and the channel divisor of the up-sampling. Default: 2.
    #[config(default = 2)]
    pub reduction_factor: usize,
    /// Channel multiplier of each coarser level (`L` values). Default: `r^l`.
    #[config(default = "None")]
    pub channel_multipliers: Option<Vec<usize>>,
    /// Builds the lifting. Default: a classic double convolution with norms.
    #[config(default = "BlockFactory::classic_double_conv(true)")]
    pub lifting_factory: BlockFactory,
    /// Builds the down-sampling. Default: a stride-2 3-wide convolution.
    #[config(default = "BlockFactory::linear_conv_down()")]
    pub down_sampling_factory: BlockFactory,
    /// Builds the encoder blocks. Default: a classic double convolution with norms.
    #[config(default = "BlockFactory::classic_double_conv(true)")]
    pub left_arc_factory: BlockFactory,
    /// Builds the up-sampling. Default: a stride-2 3-wide transposed
    /// convolution with output padding 1.
    #[config(default = "BlockFactory::linear_conv_up()")]
    pub up_sampling_factory: BlockFactory,
    /// Builds the decoder blocks. Default: a classic double convolution with norms.
    #[config(default = "BlockFactory::classic_double_conv(true)")]
    pub right_arc_factory: BlockFactory,
    /// Builds the projection. Default: a 1×1 convolution.
    #[config(default = "BlockFactory::linear_channel_adjust()")]
    pub projection_factory: BlockFactory,
}

/// pdequinox's `Hierarchical` (a UNet without multi-skips).
#[derive(Module, Debug)]
pub struct Hierarchical {
    /// `C_in → c_0` (`lifting`).
    pub lifting: PdeBlock,
    /// One per level (`down_sampling_blocks.{l}`).
    pub down_sampling_blocks: Vec<PdeBlock>,
    /// `num_blocks` per level (`left_arc_blocks.{l}.{j}`).
    pub left_arc_blocks: Vec<Vec<PdeBlock>>,
    /// One per level (`up_sampling_blocks.{l}`).
    pub up_sampling_blocks: Vec<PdeBlock>,
    /// `num_blocks` per level (`right_arc_blocks.{l}.{j}`).
    pub right_arc_blocks: Vec<Vec<PdeBlock>>,
    /// `c_0 → C_out` (`projection`).
    pub projection: PdeBlock,
    /// Resolution ratio between levels.
    pub reduction_factor: usize,
}

impl HierarchicalConfig {
    /// Builds the network on `device`; an error for an argument pdequinox or
    /// a block refuses.
    pub fn init(&self, device: &Device) -> Result<Hierarchical> {
        let d = self.num_spatial_dims;
        check_spatial_dims(d)?;
        check_positive("hidden_channels", self.hidden_channels)?;
        check_positive("num_blocks", self.num_blocks)?;
        let r = self.reduction_factor;
        check_positive("reduction_factor", r)?;
        let levels = self.num_levels;
        let multipliers = match &self.channel_multipliers {
            Some(m) if m.len() != levels => {
                return Err(Error::arg(
                    "channel_multipliers",
                    format!(
                        "got {} values {m:?}, expected num_levels = {levels}",
                        m.len()
                    ),
                ));
            }
            Some(m) => m.clone(),
            None => (1..=levels as u32).map(|l| r.pow(l)).collect(),
        };
        let h = self.hidden_channels;
        let channels: Vec<usize> = std::iter::once(h)
            .chain(multipliers.iter().map(|m| h * m))
            .collect();
        let (a, m) = (self.activation, self.boundary_mode);
        let build = |f: &BlockFactory, ci, co| f.build(d, ci, co, a, m, device);
        let arc = |f: &BlockFactory, first_in, out| -> Result<Vec<PdeBlock>> {
            (0..self.num_blocks)
                .map(|j| build(f, if j == 0 { first_in } else { out }, out))
                .collect()
        };
        let mut net = Hierarchical {
            lifting: build(&self.lifting_factory, self.in_channels, h)?,
            down_sampling_blocks: Vec::new(),
            left_arc_blocks: Vec::new(),
            up_sampling_blocks: Vec::new(),
            right_arc_blocks: Vec::new(),
            projection: build(&self.projection_factory, h, self.out_channels)?,
            reduction_factor: r,
        };
        for w in channels.windows(2) {
            let (fan_in, fan_out) = (w[0], w[1]);
            net.down_sampling_blocks
                .push(build(&self.down_sampling_factory, fan_in, fan_in)?);
            net.left_arc_blocks
                .push(arc(&self.left_arc_factory, fan_in, fan_out)?);
            net.up_sampling_blocks
                .push(build(&self.up_sampling_factory, fan_out, fan_out / r)?);
            net.right_arc_blocks
                .push(arc(&self.right_arc_factory, fan_out / r + fan_in, fan_in)?);
        }
        Ok(net)
    }
}

impl Hierarchical {
    /// Levels `L`.
    pub fn num_levels(&self) -> usize {
        self.down_sampling_blocks.len()
    }

    /// `[B, C_in, *N]` → `[B, C_out, *N]`; an error for a wrong input,
    /// including a spatial size that is not a multiple of `r^L`.
    pub fn try_forward<const R: usize>(&self, x: Tensor<R>) -> Result<Tensor<R>> {
        let dims = x.dims();
        let unit = (self.reduction_factor as u64).saturating_pow(self.num_levels() as u32);
        if R < 3
            || dims[2..]
                .iter()
                .any(|&n| n == 0 || !(n as u64).is_multiple_of(unit))
        {
            return Err(Error::Shape {
                context: "Hierarchical input".into(),
                expected: format!(
                    "spatial sizes that are multiples of reduction_factor^num_levels = {unit}"
                ),
                got: format!("{dims:?}"),
            });
        }
        let mut x = self.lifting.try_forward(x)?;
        let mut skips = Vec::with_capacity(self.num_levels());
        for (down, left) in self.down_sampling_blocks.iter().zip(&self.left_arc_blocks) {
            skips.push(x.clone());
            x = down.try_forward(x)?;
            for block in left {
                x = block.try_forward(x)?;
            }
        }
        for (up, right) in (self.up_sampling_blocks.iter().zip(&self.right_arc_blocks)).rev() {
            let skip = skips.pop().expect("one skip per level");
            x = up.try_forward(x)?;
            // The up-sampling must restore the skip's grid; a custom factory may not.
            let (sd, xd) = (skip.dims(), x.dims());
            if sd[2..] != xd[2..] {
                return Err(Error::Shape {
                    context: "Hierarchical up-sampling".into(),
                    expected: format!("the skip's spatial sizes {:?}", &sd[2..]),
                    got: format!("{:?}", &xd[2..]),
                });
            }
            x = Tensor::cat(vec![skip, x], 1);
            for block in right {
                x = block.try_forward(x)?;
            }
        }
        self.projection.try_forward(x)
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward<const R: usize>(&self, x: Tensor<R>) -> Tensor<R> {
        idx_flow_core::or_panic(self.try_forward(x))
    }

    /// pdequinox's `receptive_field`: the sum over all blocks, each scaled by
    /// the coarsening of the grid it acts on (`r^(l−1)` for the down-sampling
    /// and the decoder of level `l`, `r^l` for its encoder and up-sampling).
    pub fn receptive_field(&self) -> Vec<(f64, f64)> {
        let r = self.reduction_factor as f64;
        let scaled = |b: &PdeBlock, s: f64| -> Vec<(f64, f64)> {
            b.receptive_field()
                .into_iter()
                .map(|(l, u)| (l * s, u * s))
                .collect()
        };
        let mut fields = vec![self.lifting.receptive_field()];
        for (l, down) in self.down_sampling_blocks.iter().enumerate() {
            fields.push(scaled(down, r.powi(l as i32)));
        }
        for (l, left) in self.left_arc_blocks.iter().enumerate() {
            fields.extend(left.iter().map(|b| scaled(b, r.powi(l as i32 + 1))));
        }
        for (l, up) in self.up_sampling_blocks.iter().enumerate() {
            fields.push(scaled(up, r.powi(l as i32 + 1)));
        }
        for (l, right) in self.right_arc_blocks.iter().enumerate() {
            fields.extend(right.iter().map(|b| scaled(b, r.powi(l as i32))));
        }
        fields.push(self.projection.receptive_field());
        sum_receptive_fields(&fields)
    }
}

impl TorchState for Hierarchical {
    fn visit_state<V: StateVisitor>(&self, p: &str, v: &mut V) {
        self.lifting.visit_state(&format!("{p}lifting."), v);
        for (l, b) in self.down_sampling_blocks.iter().enumerate() {
            b.visit_state(&format!("{p}down_sampling_blocks.{l}."), v);
        }
        for (l, arc) in self.left_arc_blocks.iter().enumerate() {
            for (j, b) in arc.iter().enumerate() {
                b.visit_state(&format!("{p}left_arc_blocks.{l}.{j}."), v);
            }
        }
        for (l, b) in self.up_sampling_blocks.iter().enumerate() {
            b.visit_state(&format!("{p}up_sampling_blocks.{l}."), v);
        }
        for (l, arc) in self.right_arc_blocks.iter().enumerate() {
            for (j, b) in arc.iter().enumerate() {
                b.visit_state(&format!("{p}right_arc_blocks.{l}.{j}."), v);
            }
        }
        self.projection.visit_state(&format!("{p}projection."), v);
    }

    fn load_state(self, p: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        let list = |blocks: Vec<PdeBlock>, name: &str, l: &mut StateLoader<'_>| {
            (blocks.into_iter().enumerate())
                .map(|(i, b)| b.load_state(&format!("{p}{name}.{i}."), l))
                .collect::<Result<Vec<_>>>()
        };
        let arcs = |arcs: Vec<Vec<PdeBlock>>, name: &str, l: &mut StateLoader<'_>| {
            (arcs.into_iter().enumerate())
                .map(|(i, arc)| list(arc, &format!("{name}.{i}"), l))
                .collect::<Result<Vec<_>>>()
        };
        Ok(Hierarchical {
            lifting: self.lifting.load_state(&format!("{p}lifting."), l)?,
            down_sampling_blocks: list(self.down_sampling_blocks, "down_sampling_blocks", l)?,
            left_arc_blocks: arcs(self.left_arc_blocks, "left_arc_blocks", l)?,
            up_sampling_blocks: list(self.up_sampling_blocks, "up_sampling_blocks", l)?,
            right_arc_blocks: arcs(self.right_arc_blocks, "right_arc_blocks", l)?,
            projection: self.projection.load_state(&format!("{p}projection."), l)?,
            reduction_factor: self.reduction_factor,
        })
    }
}
