//! The layers of idx_flow 0.2.1 as burn modules, numerically equal to the
//! Python package (float32 rounding) and loadable from its PyTorch `state_dict`.
//!
//! | family | file | layers |
//! |---|---|---|
//! | gather | [`gather`] | [`GraphIndices`]: the one place where graph neighbourhoods are read |
//! | convolution | [`conv`] | [`SpatialConv`], [`SpatialTransposeConv`], [`SpatialUpsampling`] |
//! | MLP | [`mlp`] | [`SpatialMlp`], [`GlobalMlp`] (and the PyTorch-layout [`Linear`]) |
//! | normalisation | [`norm`] | [`SpatialBatchNorm`], [`SpatialLayerNorm`], [`SpatialInstanceNorm`], [`SpatialGroupNorm`] |
//! | regularisation | [`dropout`] | [`SpatialDropout`], [`ChannelDropout`] |
//! | attention | [`attention`] | [`SpatialSelfAttention`] |
//! | transformer | [`vit`] | [`SpatialPatchEmbedding`], [`SpatialTransformerBlock`], [`SpatialVit`] |
//! | pooling | [`pooling`] | [`SpatialPooling`], [`Squeeze`], [`Unsqueeze`] |
//! | utilities | [`init`](idx_flow_core::init), [`activation`], [`state_dict`](idx_flow_core::state_dict) | initialisers with PyTorch's fan rules, activations, PyTorch state dicts |
//!
//! # Conventions
//!
//! - **Layout.** Spatial tensors are `[B, N, C]` (batch, HEALPix pixels, channels),
//!   as in idx_flow. Layers that read neighbourhoods take a
//!   [`ConnectionGraph`](idx_flow_healpix::graphs::ConnectionGraph); kernel slot `j` of output pixel
//!   `p` is the graph's `j`-th connection of row `p`.
//! - **Input channels are explicit.** idx_flow creates its parameters on the
//!   first forward call; here every config names its input channels, so a
//!   module is complete (and loadable) as soon as it is built.
//! - **Errors.** `Config::init` returns [`Result`]: every size,
//!   probability or graph a user can get wrong is an [`Error`].
//!   Every layer has `try_forward`, which checks the input's shape and returns
//!   [`Error::Shape`] naming the layer, the expected and the
//!   received shape, and `forward`, which does the same and **panics with that
//!   message** on a wrong shape (the burn convention, for use in model code whose
//!   shapes are known).
//! - **Training and evaluation.** Layers whose behaviour differs between training
//!   and evaluation (batch norm statistics, dropouts) train when the input is on
//!   an autodiff device *and* their `training` flag is on, exactly as burn's own
//!   `BatchNorm` and `Dropout`. [`Module::valid`]
//!   gives the evaluation model; [`set_training`] switches the flags while keeping
//!   autodiff (PyTorch's `model.eval()` / `model.train()`), which is what gradients
//!   of an evaluation-mode forward need.
//! - **Weights.** [`TorchState`](idx_flow_core::TorchState) saves and loads every layer under
//!   idx_flow's PyTorch names (`kernel`, `bias_param`, `mlp_layers.0.weight` as
//!   `[out, in]`, `bn_layers.0.running_mean`, `pos_embed`, ...).
//! - **Names.** idx_flow's classes in Rust casing: `SpatialMLP` is [`SpatialMlp`],
//!   `GlobalMLP` [`GlobalMlp`], `SpatialViT` [`SpatialVit`]; option strings
//!   (`"xavier_uniform"`, `"gelu"`, `"max"`, `"idw"`, `"sdpa"`) parse into their enums.
//! - **Numerics.** Sums over long axes (batch norm rows, points) are taken in two
//!   stages, forward and backward, as accurate as PyTorch's blocked reductions.
//!   Where a result is ill-conditioned in float32 (layer norm rows of near-zero
//!   variance, gradients that are zero by construction) PyTorch's and ours both
//!   carry rounding noise; the tests check ours against the float64 value, where
//!   it is within twice PyTorch's own distance (often much closer).
//!
//! # Differences from idx_flow
//!
//! - Parameters exist from construction (no lazy first call), so input channels are given.
//! - Dropout with `p = 1` gives zeros (idx_flow's spatial/channel dropouts divide 0 by 0).
//! - [`AttnBackend::Fused`] refuses attention dropout while training (burn's fused
//!   kernel has none) instead of silently dropping it; [`AttnBackend::Auto`]
//!   takes the explicit path then, as PyTorch's SDPA would apply dropout.
//! - Batch norm `momentum` is a number (PyTorch's `None`, a cumulative average, is not offered).
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use idx_flow_healpix::geometry::HealpixGrid;
//! use idx_flow_healpix::graphs::ConnectionGraph;
//! use idx_flow_nn::SpatialConvConfig;
//!
//! let device = Device::default();
//! let graph = ConnectionGraph::knn(HealpixGrid::ring(4)?, HealpixGrid::ring(2)?, 4)?;
//! let conv = SpatialConvConfig::new(3, 8).init(&graph, &device)?;
//! let x = Tensor::<3>::random([2, 192, 3], Distribution::Normal(0.0, 1.0), &device);
//! let y = conv.try_forward(x)?;
//! assert_eq!(y.dims(), [2, 48, 8]);
//! # Ok::<(), idx_flow_nn::Error>(())
//! ```
//!
//! # PyTorch state dicts
//!
//! Every layer implements [`TorchState`](idx_flow_core::TorchState) under idx_flow's names:
//!
//! ```
//! use burn::tensor::Device;
//! use idx_flow_healpix::geometry::HealpixGrid;
//! use idx_flow_healpix::graphs::ConnectionGraph;
//! use idx_flow_nn::SpatialConvConfig;
//! use idx_flow_core::state_dict::{load_state_dict, state_dict};
//!
//! let device = Device::default();
//! let graph = ConnectionGraph::knn(HealpixGrid::ring(2)?, HealpixGrid::ring(1)?, 4)?;
//! let conv = SpatialConvConfig::new(3, 5).init(&graph, &device)?;
//! let sd = state_dict(&conv)?;
//! assert_eq!(sd.keys(), ["bias_param", "connection_indices", "kernel"]);
//! assert_eq!(sd.get("kernel").unwrap().shape, [4, 3, 5]);
//! // Loading is strict: every key must be used and every shape must match.
//! let again = load_state_dict(SpatialConvConfig::new(3, 5).init(&graph, &device)?, &sd)?;
//! assert_eq!(state_dict(&again)?, sd);
//! # Ok::<(), idx_flow_nn::Error>(())
//! ```
//!
//! A model of several layers implements [`TorchState`](idx_flow_core::TorchState) by prefixing its
//! children's names as PyTorch does (`{attribute}.{name}`):
//!
//! ```
//! use burn::module::Module;
//! use burn::tensor::Device;
//! use idx_flow_healpix::geometry::HealpixGrid;
//! use idx_flow_healpix::graphs::ConnectionGraph;
//! use idx_flow_core::state_dict::{StateLoader, StateVisitor, TorchState, state_dict};
//! use idx_flow_nn::{SpatialConv, SpatialConvConfig, SpatialLayerNorm, SpatialLayerNormConfig};
//!
//! /// PyTorch: `self.conv = SpatialConv(...)`, `self.norm = SpatialLayerNorm(...)`.
//! #[derive(Module, Debug)]
//! struct Encoder {
//!     conv: SpatialConv,
//!     norm: SpatialLayerNorm,
//! }
//!
//! impl TorchState for Encoder {
//!     fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
//!         self.conv.visit_state(&format!("{prefix}conv."), v);
//!         self.norm.visit_state(&format!("{prefix}norm."), v);
//!     }
//!     fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> idx_flow_nn::Result<Self> {
//!         Ok(Encoder {
//!             conv: self.conv.load_state(&format!("{prefix}conv."), l)?,
//!             norm: self.norm.load_state(&format!("{prefix}norm."), l)?,
//!         })
//!     }
//! }
//!
//! let device = Device::default();
//! let graph = ConnectionGraph::knn(HealpixGrid::ring(2)?, HealpixGrid::ring(1)?, 4)?;
//! let encoder = Encoder {
//!     conv: SpatialConvConfig::new(3, 8).init(&graph, &device)?,
//!     norm: SpatialLayerNormConfig::new(8).init(&device)?,
//! };
//! assert_eq!(
//!     state_dict(&encoder)?.keys(),
//!     ["conv.bias_param", "conv.connection_indices", "conv.kernel", "norm.ln.bias", "norm.ln.weight"]
//! );
//! # Ok::<(), idx_flow_nn::Error>(())
//! ```

#![warn(missing_docs)]

pub mod activation;
pub mod attention;
pub mod conv;
pub mod dropout;
pub mod gather;
pub mod linear;
pub mod mlp;
pub mod norm;
pub mod pooling;
pub mod vit;

pub use activation::Activation;
pub use attention::{AttnBackend, SpatialSelfAttention, SpatialSelfAttentionConfig};
pub use conv::{
    SpatialConv, SpatialConvConfig, SpatialTransposeConv, SpatialTransposeConvConfig,
    SpatialUpsampling, SpatialUpsamplingConfig, UpsamplingKernel,
};
pub use dropout::{ChannelDropout, ChannelDropoutConfig, SpatialDropout, SpatialDropoutConfig};
pub use gather::GraphIndices;
pub use linear::{Linear, LinearConfig};
pub use mlp::{GlobalMlp, GlobalMlpConfig, SpatialMlp, SpatialMlpConfig};
pub use norm::{
    BatchNorm1d, LayerNorm, SpatialBatchNorm, SpatialBatchNormConfig, SpatialGroupNorm,
    SpatialGroupNormConfig, SpatialInstanceNorm, SpatialInstanceNormConfig, SpatialLayerNorm,
    SpatialLayerNormConfig,
};
pub use pooling::{
    PoolType, SpatialPooling, SpatialPoolingConfig, Squeeze, SqueezeConfig, Unsqueeze,
    UnsqueezeConfig,
};
pub use vit::{
    SpatialPatchEmbedding, SpatialPatchEmbeddingConfig, SpatialTransformerBlock,
    SpatialTransformerBlockConfig, SpatialVit, SpatialVitConfig,
};

use burn::module::{Flag, Module, ModuleMapper, Param};
use burn::tensor::Tensor;

pub(crate) use idx_flow_core::{check_positive, check_prob, or_panic};
pub use idx_flow_healpix::{Error, Result};

/// Switches every training flag of `module` (batch norm statistics, dropouts)
/// on or off, keeping the parameters and their autodiff state as they are:
/// PyTorch's `module.train()` / `module.eval()`.
///
/// Use [`Module::valid`] for inference; use this when an evaluation-mode
/// forward must still be differentiated (e.g. gradients through frozen statistics).
///
/// ```
/// use burn::tensor::Device;
/// use idx_flow_nn::{SpatialDropoutConfig, set_training};
/// let dropout = set_training(SpatialDropoutConfig::new().init()?, false);
/// assert!(!dropout.is_training());
/// # Ok::<(), idx_flow_nn::Error>(())
/// ```
pub fn set_training<M: Module>(module: M, training: bool) -> M {
    struct SetFlags(bool);
    impl ModuleMapper for SetFlags {
        fn map_flag(&mut self, flag: Param<Flag>) -> Param<Flag> {
            flag.with_value(self.0)
        }
    }
    module.map(&mut SetFlags(training))
}

/// Whether a layer with training flag `flag` trains on this input.
pub(crate) fn is_training<const D: usize>(flag: &Param<Flag>, x: &Tensor<D>) -> bool {
    flag.is_enabled() && x.device().is_autodiff()
}

/// Formats a shape as `[2, 768, 3]`.
pub(crate) fn fmt_dims(dims: &[usize]) -> String {
    format!("{dims:?}")
}

/// Checks `dims` against `expected` (`None` = any size) for `layer`'s input.
pub(crate) fn check_dims(layer: &str, dims: &[usize], expected: &[Option<usize>]) -> Result<()> {
    let ok = dims.len() == expected.len()
        && dims
            .iter()
            .zip(expected)
            .all(|(d, e)| e.is_none_or(|e| e == *d));
    if ok {
        return Ok(());
    }
    let names = ["B", "N", "C", "D"];
    let want: Vec<String> = expected
        .iter()
        .enumerate()
        .map(|(i, e)| match e {
            Some(v) => v.to_string(),
            None => names.get(i).unwrap_or(&"_").to_string(),
        })
        .collect();
    Err(Error::Shape {
        context: format!("{layer} input"),
        expected: format!("[{}]", want.join(", ")),
        got: fmt_dims(dims),
    })
}
