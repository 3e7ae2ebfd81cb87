//! The HEALPix convolutional autoencoder of idx_flow's documentation:
//! [`SpatialConv`] + [`SpatialBatchNorm`] + SELU down the NESTED hierarchy
//! (nside 64 → 32 → 16 by default), a bottleneck, and
//! [`SpatialTransposeConv`] back up.
//!
//! ```text
//! x [B, 12·n², C]
//!  ├─ level i (depth times):  [stencil conv k=9 + BN + SELU]  (GraphKind::Stencil only)
//!  │                          down conv (nside → nside/2) + BN + SELU   widths[i] channels
//!  ├─ to_latent:   stencil conv (k=9) on the coarsest grid → latent_channels  (no activation)
//!  ├─ from_latent: stencil conv (k=9) → widths[last] + BN + SELU
//!  ├─ level i (reversed, all but the last): transpose conv (nside/2 → nside,
//!  │                          k=4 nearest coarse pixels) + BN + SELU   widths[i-1] channels
//!  │                          [stencil conv k=9 + BN + SELU]  (GraphKind::Stencil only)
//!  └─ output: transpose conv (nside/2 → nside, k=4) → C channels        (no activation)
//! ```
//!
//! The down graphs are the NESTED children (k = 4, the exact hierarchy: a 2x2
//! stride-2 convolution whose kernel slots are the four sub-pixel positions)
//! for [`GraphKind::Children`] and [`GraphKind::Stencil`], or the k nearest
//! fine pixels of each coarse centre for [`GraphKind::Knn`] (idx_flow's
//! `compute_connection_indices`). The up graphs are the 4 nearest coarse
//! pixels of each fine pixel, slots ordered by distance (idx_flow's decoder).
//! The latent is `[B, 12·(n/2^depth)², latent_channels]`; the compression
//! ratio is `4^depth · C / latent_channels`.
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use idx_flow_train::models::AutoencoderConfig;
//!
//! let device = Device::default();
//! let config = AutoencoderConfig::new()
//!     .with_nside(8)
//!     .with_widths(vec![4, 8])
//!     .with_latent_channels(2);
//! let model = config.init(&device)?;
//! let x = Tensor::<3>::random([2, 768, 3], Distribution::Normal(0.0, 1.0), &device);
//! assert_eq!(model.encode(x.clone()).dims(), [2, 48, 2]);    // nside 2
//! assert_eq!(model.forward(x).dims(), [2, 768, 3]);
//! assert_eq!(config.compression_ratio(), 24.0);
//! # Ok::<(), idx_flow_train::Error>(())
//! ```

use std::str::FromStr;

use burn::config::Config;
use burn::module::{Module, ModuleMapper, Param, ParamId, RunningState};
use burn::tensor::{Device, Tensor};

use crate::{Error, Result};
use idx_flow_core::state_dict::{StateLoader, StateVisitor, TorchState};
use idx_flow_healpix::geometry::HealpixGrid;
use idx_flow_healpix::graphs::ConnectionGraph;
use idx_flow_nn::{
    Activation, SpatialBatchNorm, SpatialBatchNormConfig, SpatialConv, SpatialConvConfig,
    SpatialTransposeConv, SpatialTransposeConvConfig,
};

/// Which graphs carry the encoder down the hierarchy.
///
/// `Stencil` is the default: the NESTED children (the exact hierarchy: each
/// kernel slot is one sub-pixel position, the same everywhere, and the gather
/// is a reshape) with a 3x3 stencil block on every grid. Its same-grid blocks
/// see the neighbours across each child block's edge, which the children
/// graphs alone never do: on the Blue Marble job at widths 16,32, latent 2 and
/// 1000 steps of 4 samples it reached 23.81 dB held-out against 23.61 dB for
/// `Children` at widths 32,64. `Children` alone trains as well as `Knn`
/// (21.15 and 21.17 dB on the old depth-3 model cut to 300 steps) at the same
/// speed.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum GraphKind {
    /// NESTED children, k = 4: exact and the cheapest.
    Children,
    /// The k nearest fine pixels of each coarse pixel centre (`knn_k`).
    Knn,
    /// NESTED children, plus a 3x3 stencil convolution (k = 9) on every grid
    /// of the encoder and the decoder: more capacity, about twice the cost (the default).
    Stencil,
}

impl GraphKind {
    /// The name used in configs and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            GraphKind::Children => "children",
            GraphKind::Knn => "knn",
            GraphKind::Stencil => "stencil",
        }
    }
}

impl FromStr for GraphKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "children" => Ok(GraphKind::Children),
            "knn" => Ok(GraphKind::Knn),
            "stencil" => Ok(GraphKind::Stencil),
            _ => Err(Error::arg(
                "graph",
                format!("unknown graph kind {s:?}, expected children, knn or stencil"),
            )),
        }
    }
}

/// Configuration of a [`HealpixAutoencoder`].
#[derive(Config, Debug)]
pub struct AutoencoderConfig {
    /// Channels of the maps (3 for RGB). Default: 3.
    #[config(default = 3)]
    pub channels: usize,
    /// nside of the input grid (a power of two, divisible by `2^depth`). Default: 64.
    #[config(default = 64)]
    pub nside: u32,
    /// Channels after each downsampling; its length is the depth. Default: `[16, 32]`
    /// (nside 64 → 32 → 16).
    #[config(default = "vec![16, 32]")]
    pub widths: Vec<usize>,
    /// Channels of the latent on the coarsest grid. Default: 2 (compression 24 for RGB, depth 2).
    #[config(default = 2)]
    pub latent_channels: usize,
    /// Graphs of the encoder. Default: stencil.
    #[config(default = "GraphKind::Stencil")]
    pub graph: GraphKind,
    /// Neighbours per coarse pixel of the knn down graphs (`graph = knn` only). Default: 4.
    #[config(default = 4)]
    pub knn_k: usize,
}

/// A graph convolution, batch norm and SELU.
#[derive(Module, Debug)]
pub struct GraphConvBlock {
    /// The convolution.
    pub conv: SpatialConv,
    /// The batch norm.
    pub bn: SpatialBatchNorm,
}

/// A transposed graph convolution (coarse → fine), batch norm and SELU.
#[derive(Module, Debug)]
pub struct UpBlock {
    /// The transposed convolution.
    pub conv: SpatialTransposeConv,
    /// The batch norm.
    pub bn: SpatialBatchNorm,
}

/// One encoder level: an optional same-grid stencil block, then the downsampling block.
#[derive(Module, Debug)]
pub struct DownLevel {
    /// Stencil block on the fine grid ([`GraphKind::Stencil`]).
    pub refine: Option<GraphConvBlock>,
    /// fine → coarse.
    pub down: GraphConvBlock,
}

/// One decoder level: the upsampling block, then an optional same-grid stencil block.
#[derive(Module, Debug)]
pub struct UpLevel {
    /// coarse → fine.
    pub up: UpBlock,
    /// Stencil block on the fine grid ([`GraphKind::Stencil`]).
    pub refine: Option<GraphConvBlock>,
}

/// The HEALPix convolutional autoencoder: `[B, N, C]` → latent → `[B, N, C]`, NESTED order.
#[derive(Module, Debug)]
pub struct HealpixAutoencoder {
    /// Encoder levels, fine to coarse.
    pub encoder: Vec<DownLevel>,
    /// Coarsest features → latent.
    pub to_latent: SpatialConv,
    /// Latent → coarsest features.
    pub from_latent: GraphConvBlock,
    /// Decoder levels, coarse to fine, all but the last.
    pub decoder: Vec<UpLevel>,
    /// The last upsampling, to the maps' channels on the input grid.
    pub output: SpatialTransposeConv,
}

fn block(
    graph: &ConnectionGraph,
    c_in: usize,
    c_out: usize,
    device: &Device,
) -> Result<GraphConvBlock> {
    Ok(GraphConvBlock {
        conv: SpatialConvConfig::new(c_in, c_out).init(graph, device)?,
        bn: SpatialBatchNormConfig::new(c_out).init(device)?,
    })
}

impl AutoencoderConfig {
    /// Depth (number of downsamplings).
    pub fn depth(&self) -> usize {
        self.widths.len()
    }

    /// nside of the latent grid.
    pub fn latent_nside(&self) -> u32 {
        self.nside >> self.depth()
    }

    /// Values in / values in the latent: `4^depth · channels / latent_channels`.
    pub fn compression_ratio(&self) -> f64 {
        (1u64 << (2 * self.depth())) as f64 * self.channels as f64 / self.latent_channels as f64
    }

    /// Latent shape per sample, `[N_latent, latent_channels]`.
    pub fn latent_shape(&self) -> [usize; 2] {
        let n = self.latent_nside() as usize;
        [12 * n * n, self.latent_channels]
    }

    /// Checks sizes: nside a power of two divisible by `2^depth`, positive widths.
    pub fn validate(&self) -> Result<()> {
        if self.channels == 0 || self.latent_channels == 0 || self.widths.contains(&0) {
            return Err(Error::arg(
                "autoencoder",
                "channels, latent_channels and every width must be at least 1",
            ));
        }
        if self.widths.is_empty() {
            return Err(Error::arg(
                "widths",
                "expected at least one level (depth ≥ 1)",
            ));
        }
        if !self.nside.is_power_of_two() {
            return Err(Error::InvalidNside {
                nside: self.nside as u64,
                expected: "a power of two (the model works on the NESTED hierarchy)".into(),
            });
        }
        if self.depth() >= 32 || (self.nside >> self.depth()) == 0 {
            return Err(Error::arg(
                "widths",
                format!(
                    "depth {} needs nside ≥ {}, got nside {}",
                    self.depth(),
                    1u64 << self.depth().min(63),
                    self.nside
                ),
            ));
        }
        if self.graph == GraphKind::Knn && self.knn_k == 0 {
            return Err(Error::InvalidK {
                k: 0,
                expected: "at least 1 neighbour for knn down graphs".into(),
            });
        }
        Ok(())
    }

    /// Builds the graphs and the model on `device`. The trainable parameters get
    /// ids `0x1df0_0000 + i` (`i` counting in visiting order), so that optimiser
    /// states saved by one process match the parameters of the same model built
    /// by another.
    pub fn init(&self, device: &Device) -> Result<HealpixAutoencoder> {
        self.validate()?;
        let stencil = self.graph == GraphKind::Stencil;
        let mut encoder = Vec::new();
        let mut nside = self.nside;
        let mut c = self.channels;
        for &w in &self.widths {
            let fine = HealpixGrid::nested(nside)?;
            let coarse = HealpixGrid::nested(nside / 2)?;
            let refine = if stencil {
                Some(block(
                    &ConnectionGraph::stencil(fine)?,
                    c,
                    c.max(8),
                    device,
                )?)
            } else {
                None
            };
            let c_in = if stencil { c.max(8) } else { c };
            let graph = match self.graph {
                GraphKind::Knn => ConnectionGraph::knn(fine, coarse, self.knn_k)?,
                _ => ConnectionGraph::children(fine, coarse)?,
            };
            encoder.push(DownLevel {
                refine,
                down: block(&graph, c_in, w, device)?,
            });
            nside /= 2;
            c = w;
        }
        let bottom = ConnectionGraph::stencil(HealpixGrid::nested(nside)?)?;
        let to_latent = SpatialConvConfig::new(c, self.latent_channels).init(&bottom, device)?;
        let from_latent = block(&bottom, self.latent_channels, c, device)?;
        let mut decoder = Vec::new();
        for i in (1..self.depth()).rev() {
            let coarse = HealpixGrid::nested(nside)?;
            let fine = HealpixGrid::nested(nside * 2)?;
            let c_out = self.widths[i - 1];
            let graph = ConnectionGraph::knn(coarse, fine, 4)?;
            let up = UpBlock {
                conv: SpatialTransposeConvConfig::new(c, c_out).init(&graph, device)?,
                bn: SpatialBatchNormConfig::new(c_out).init(device)?,
            };
            let refine = if stencil {
                Some(block(
                    &ConnectionGraph::stencil(fine)?,
                    c_out,
                    c_out,
                    device,
                )?)
            } else {
                None
            };
            decoder.push(UpLevel { up, refine });
            nside *= 2;
            c = c_out;
        }
        let last = ConnectionGraph::knn(
            HealpixGrid::nested(nside)?,
            HealpixGrid::nested(nside * 2)?,
            4,
        )?;
        let output = SpatialTransposeConvConfig::new(c, self.channels).init(&last, device)?;
        let model = HealpixAutoencoder {
            encoder,
            to_latent,
            from_latent,
            decoder,
            output,
        };
        Ok(model.with_stable_param_ids())
    }
}

fn selu(x: Tensor<3>) -> Tensor<3> {
    Activation::Selu.forward(x)
}

impl GraphConvBlock {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        selu(self.bn.forward(self.conv.forward(x)))
    }
}

impl HealpixAutoencoder {
    /// Renumbers the parameters `0x1df0_0000 + i` in visiting order (see [`AutoencoderConfig::init`]).
    pub fn with_stable_param_ids(self) -> Self {
        struct Renumber(u64);
        impl ModuleMapper for Renumber {
            fn map_float<const D: usize>(&mut self, mut p: Param<Tensor<D>>) -> Param<Tensor<D>> {
                p.id = ParamId::from(0x1df0_0000 + self.0);
                self.0 += 1;
                p
            }
        }
        self.map(&mut Renumber(0))
    }

    /// Applies `f` to every batch norm, in visiting order.
    fn map_batch_norms(mut self, f: &mut impl FnMut(SpatialBatchNorm) -> SpatialBatchNorm) -> Self {
        fn block(
            b: GraphConvBlock,
            f: &mut impl FnMut(SpatialBatchNorm) -> SpatialBatchNorm,
        ) -> GraphConvBlock {
            GraphConvBlock {
                conv: b.conv,
                bn: f(b.bn),
            }
        }
        let mut encoder = Vec::new();
        for l in self.encoder {
            encoder.push(DownLevel {
                refine: l.refine.map(|r| block(r, f)),
                down: block(l.down, f),
            });
        }
        self.encoder = encoder;
        self.from_latent = block(self.from_latent, f);
        let mut decoder = Vec::new();
        for l in self.decoder {
            decoder.push(UpLevel {
                up: UpBlock {
                    conv: l.up.conv,
                    bn: f(l.up.bn),
                },
                refine: l.refine.map(|r| block(r, f)),
            });
        }
        self.decoder = decoder;
        self
    }

    /// Sets the running-statistics momentum of every batch norm (0 freezes them).
    pub fn with_batch_norm_momentum(self, momentum: f64) -> Self {
        self.map_batch_norms(&mut |mut bn| {
            bn.bn.momentum = momentum;
            bn
        })
    }

    /// Replaces every batch norm's running statistics by fresh ones (mean 0,
    /// variance 1, no batches tracked), detached from any clone of the model.
    pub fn with_fresh_running_stats(self) -> Self {
        self.map_batch_norms(&mut |mut bn| {
            let c = bn.bn.num_features();
            let device = bn.bn.running_mean.value().device();
            bn.bn.running_mean = RunningState::new(Tensor::zeros([c], &device));
            bn.bn.running_var = RunningState::new(Tensor::ones([c], &device));
            bn.bn.num_batches_tracked = RunningState::new(Tensor::zeros([1], &device));
            bn
        })
    }

    /// Input grid pixels `N`.
    pub fn npix(&self) -> usize {
        self.encoder.first().map_or(0, |l| match &l.refine {
            Some(r) => r.conv.indices.n_in(),
            None => l.down.conv.indices.n_in(),
        })
    }

    /// Channels `C` of the maps.
    pub fn channels(&self) -> usize {
        self.output.conv.filters()
    }

    /// `[B, N, C]` → latent `[B, N_latent, latent_channels]`.
    ///
    /// # Panics
    /// On a wrong input shape (see [`try_forward`](Self::try_forward)).
    pub fn encode(&self, x: Tensor<3>) -> Tensor<3> {
        let mut h = x;
        for level in &self.encoder {
            if let Some(r) = &level.refine {
                h = r.forward(h);
            }
            h = level.down.forward(h);
        }
        self.to_latent.forward(h)
    }

    /// Latent `[B, N_latent, latent_channels]` → `[B, N, C]`.
    pub fn decode(&self, z: Tensor<3>) -> Tensor<3> {
        let mut h = self.from_latent.forward(z);
        for level in &self.decoder {
            h = selu(level.up.bn.forward(level.up.conv.forward(h)));
            if let Some(r) = &level.refine {
                h = r.forward(h);
            }
        }
        self.output.forward(h)
    }

    /// `[B, N, C]` → `[B, N, C]`.
    ///
    /// # Panics
    /// On a wrong input shape (see [`try_forward`](Self::try_forward)).
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.decode(self.encode(x))
    }

    /// [`forward`](Self::forward) that returns [`Error::Shape`] on an input other than `[B, N, C]` (B ≥ 1).
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        let [b, n, c] = x.dims();
        if b == 0 || n != self.npix() || c != self.channels() {
            return Err(Error::Shape {
                context: "HealpixAutoencoder input".into(),
                expected: format!("[B, {}, {}]", self.npix(), self.channels()),
                got: format!("{:?}", x.dims()),
            });
        }
        Ok(self.forward(x))
    }
}

fn visit_block<V: StateVisitor>(b: &GraphConvBlock, prefix: &str, v: &mut V) {
    b.conv.visit_state(&format!("{prefix}conv."), v);
    b.bn.visit_state(&format!("{prefix}bn."), v);
}

fn load_block(b: GraphConvBlock, prefix: &str, l: &mut StateLoader<'_>) -> Result<GraphConvBlock> {
    Ok(GraphConvBlock {
        conv: b.conv.load_state(&format!("{prefix}conv."), l)?,
        bn: b.bn.load_state(&format!("{prefix}bn."), l)?,
    })
}

impl TorchState for HealpixAutoencoder {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        for (i, level) in self.encoder.iter().enumerate() {
            if let Some(r) = &level.refine {
                visit_block(r, &format!("{prefix}encoder.{i}.refine."), v);
            }
            visit_block(&level.down, &format!("{prefix}encoder.{i}.down."), v);
        }
        self.to_latent
            .visit_state(&format!("{prefix}to_latent."), v);
        visit_block(&self.from_latent, &format!("{prefix}from_latent."), v);
        for (i, level) in self.decoder.iter().enumerate() {
            level
                .up
                .conv
                .visit_state(&format!("{prefix}decoder.{i}.up.conv."), v);
            level
                .up
                .bn
                .visit_state(&format!("{prefix}decoder.{i}.up.bn."), v);
            if let Some(r) = &level.refine {
                visit_block(r, &format!("{prefix}decoder.{i}.refine."), v);
            }
        }
        self.output.visit_state(&format!("{prefix}output."), v);
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        let mut encoder = Vec::new();
        for (i, level) in self.encoder.into_iter().enumerate() {
            encoder.push(DownLevel {
                refine: match level.refine {
                    Some(r) => Some(load_block(r, &format!("{prefix}encoder.{i}.refine."), l)?),
                    None => None,
                },
                down: load_block(level.down, &format!("{prefix}encoder.{i}.down."), l)?,
            });
        }
        let to_latent = self
            .to_latent
            .load_state(&format!("{prefix}to_latent."), l)?;
        let from_latent = load_block(self.from_latent, &format!("{prefix}from_latent."), l)?;
        let mut decoder = Vec::new();
        for (i, level) in self.decoder.into_iter().enumerate() {
            decoder.push(UpLevel {
                up: UpBlock {
                    conv: level
                        .up
                        .conv
                        .load_state(&format!("{prefix}decoder.{i}.up.conv."), l)?,
                    bn: level
                        .up
                        .bn
                        .load_state(&format!("{prefix}decoder.{i}.up.bn."), l)?,
                },
                refine: match level.refine {
                    Some(r) => Some(load_block(r, &format!("{prefix}decoder.{i}.refine."), l)?),
                    None => None,
                },
            });
        }
        let output = self.output.load_state(&format!("{prefix}output."), l)?;
        Ok(HealpixAutoencoder {
            encoder,
            to_latent,
            from_latent,
            decoder,
            output,
        })
    }
}
