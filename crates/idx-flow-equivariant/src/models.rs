//! Models on multi-images, as ginjax 0.1.8's `models` builds them from its
//! layers: an equivariant [`ResNet`], the dilated ResNet [`DilResNet`]
//! (Stachenfeld et al. 2022), a [`UNet`] (Ronneberger et al. 2015) that
//! downsamples with [`MaxNormPool`] and upsamples with a transposed
//! [`ConvContract`], and [`GroupAverage`], which makes any model
//! equivariant by averaging `g⁻¹·f(g·x)` over the group.
//!
//! Every model is a stack of [`ConvBlock`]s (ginjax's `ConvBlock`): a
//! [`ConvContract`], optionally a layer norm, and a nonlinearity — the
//! [`VectorNeuronNonlinear`] (ginjax's choice) or, with
//! `vector_neurons = false`, an activation of the scalars alone that
//! leaves the other keys linear (a [`PerKey`]). Each piece commutes with
//! `B_D`, so the models do too.
//!
//! The hidden keys (`mid_keys`) are by default every key of the input and
//! the output with `depth` channels each (ginjax's `signature_union`).
//! Parameter counts ([`Module::num_params`]) are ginjax's `count_params`:
//! learned weights only, the constant invariant filters excluded. Only the
//! equivariant variants of ginjax's models are built here; a plain CNN is
//! any burn stack (see the tests).
//!
//! ```
//! use burn::module::Module;
//! use burn::tensor::{Device, Distribution, Tensor};
//! use idx_flow_equivariant::{MultiImage, ResNetConfig, TensorKey, hyperoctahedral_group};
//!
//! let device = Device::default();
//! // Scalar field in, vector field out, 4 channels of each key inside.
//! let model = ResNetConfig::new(
//!     2,
//!     vec![(TensorKey::SCALAR, 1)],
//!     vec![(TensorKey::VECTOR, 1)],
//!     4,
//! )
//! .with_num_blocks(2)
//! .init(&device)?;
//! assert!(model.num_params() > 0);
//! let x = MultiImage::<4>::new(vec![true, true])?
//!     .with(TensorKey::SCALAR, Tensor::random([1, 1, 8, 8], Distribution::Default, &device))?;
//! let g = &hyperoctahedral_group(2)?[5];
//! let a = model.try_forward(g.apply(&x)?)?;
//! let b = g.apply(&model.try_forward(x)?)?;
//! let err = (a.get(TensorKey::VECTOR).unwrap().clone() - b.get(TensorKey::VECTOR).unwrap().clone())
//!     .abs()
//!     .max()
//!     .into_scalar::<f32>();
//! assert!(err < 1e-4);
//! # Ok::<(), idx_flow_equivariant::Error>(())
//! ```

use std::collections::BTreeMap;

use burn::config::Config;
use burn::module::Module;
use burn::tensor::Device;

use super::conv::{BiasMode, ConvContract, ConvContractConfig, Padding};
use super::group::{GroupElement, hyperoctahedral_group};
use super::image::{MultiImage, Signature, TensorKey, check_d, check_signature};
use super::nonlinear::{VectorNeuronNonlinear, VectorNeuronNonlinearConfig};
use super::norm::{EquivariantGroupNorm, EquivariantLayerNormConfig};
use super::pool::MaxNormPool;
use super::wrapper::{BlockActivation, BlockLayer, PerKey, ScalarActivation};
use crate::{Error, Result};

/// A module from multi-images to multi-images (ginjax's `MultiImageModule`),
/// generic in the block rank `R = D + 2`. Implemented by every layer and
/// model of [`equivariant`](super); [`GroupAverage`] wraps any of them.
pub trait MultiImageModule {
    /// The module applied to `x`; an error for a wrong input.
    fn try_forward<const R: usize>(&self, x: MultiImage<R>) -> Result<MultiImage<R>>;
}

macro_rules! multi_image_module {
    ($($t:ty),*) => {$(
        impl MultiImageModule for $t {
            fn try_forward<const R: usize>(&self, x: MultiImage<R>) -> Result<MultiImage<R>> {
                <$t>::try_forward(self, x)
            }
        }
    )*};
}

multi_image_module!(
    ConvContract,
    EquivariantGroupNorm,
    VectorNeuronNonlinear,
    MaxNormPool,
    ConvBlock,
    ResNet,
    DilResNet,
    UNet
);

impl<M: Module + BlockLayer> MultiImageModule for PerKey<M> {
    fn try_forward<const R: usize>(&self, x: MultiImage<R>) -> Result<MultiImage<R>> {
        PerKey::try_forward(self, x)
    }
}

/// Every key of `a` and `b`, `channels` each (ginjax's `signature_union`).
pub fn signature_union(
    a: &[(TensorKey, usize)],
    b: &[(TensorKey, usize)],
    channels: usize,
) -> Signature {
    let keys: BTreeMap<TensorKey, usize> = a.iter().chain(b).map(|&(k, _)| (k, channels)).collect();
    keys.into_iter().collect()
}

/// `sig` with every channel count multiplied by `factor`.
fn scaled(sig: &[(TensorKey, usize)], factor: usize) -> Signature {
    sig.iter().map(|&(k, c)| (k, c * factor)).collect()
}

/// The hidden keys of a model: `mid_keys` when given, else the union of
/// input and output keys with `depth` channels; checked.
fn hidden_keys(
    input: &[(TensorKey, usize)],
    output: &[(TensorKey, usize)],
    depth: usize,
    mid: &Option<Signature>,
) -> Result<Signature> {
    check_signature("input_keys", input)?;
    check_signature("output_keys", output)?;
    let mid = match mid {
        Some(m) => m.clone(),
        None => {
            if depth == 0 {
                return Err(Error::arg("depth", "got 0 channels, expected at least 1"));
            }
            signature_union(input, output, depth)
        }
    };
    Ok(check_signature("mid_keys", &mid)?.into_iter().collect())
}

// ---- ConvBlock --------------------------------------------------------------------------

/// Configuration of a [`ConvBlock`].
#[derive(Config, Debug)]
pub struct ConvBlockConfig {
    /// Spatial dimensions `D` (2 or 3).
    pub d: usize,
    /// Input keys and channels.
    pub input_keys: Vec<(TensorKey, usize)>,
    /// Output keys and channels.
    pub output_keys: Vec<(TensorKey, usize)>,
    /// Filter side `M` (odd). Default: 3.
    #[config(default = 3)]
    pub kernel_size: usize,
    /// Filter dilation. Default: 1.
    #[config(default = 1)]
    pub dilation: usize,
    /// Bias of the convolution. Default: [`BiasMode::Auto`].
    #[config(default = "BiasMode::Auto")]
    pub bias: BiasMode,
    /// Activation of the scalars; `None`: no nonlinearity at all. Default: GELU (tanh form).
    #[config(default = "Some(ScalarActivation::Gelu)")]
    pub activation: Option<ScalarActivation>,
    /// Non-scalar keys through a [`VectorNeuronNonlinear`] (ginjax's choice);
    /// `false`: left linear. Default: true.
    #[config(default = true)]
    pub vector_neurons: bool,
    /// A layer norm ([`EquivariantLayerNormConfig`]). Default: false.
    #[config(default = false)]
    pub norm: bool,
    /// Norm and nonlinearity before the convolution (on the input keys)
    /// instead of after it (on the output keys). Default: false.
    #[config(default = false)]
    pub preactivation: bool,
}

/// ginjax's `ConvBlock`: convolution, norm, nonlinearity — or norm,
/// nonlinearity, convolution in preactivation order.
#[derive(Module, Debug)]
pub struct ConvBlock {
    /// The convolution.
    pub conv: ConvContract,
    /// The layer norm, if any.
    pub norm: Option<EquivariantGroupNorm>,
    /// The Vector Neurons nonlinearity (all keys), if used.
    pub vector_neurons: Option<VectorNeuronNonlinear>,
    /// The scalar activation, if used without Vector Neurons.
    pub scalar_activation: Option<PerKey<BlockActivation>>,
    /// Whether norm and nonlinearity come first.
    #[module(skip)]
    pub preactivation: bool,
}

impl ConvBlockConfig {
    /// Builds the block (ginjax's initialisation of each layer). An error for
    /// bad sizes or keys.
    pub fn init(&self, device: &Device) -> Result<ConvBlock> {
        check_d(self.d)?;
        let conv =
            ConvContractConfig::new(self.d, self.input_keys.clone(), self.output_keys.clone())
                .with_kernel_size(self.kernel_size)
                .with_dilation(vec![self.dilation])
                .with_bias(self.bias)
                .init(device)?;
        // The keys the norm and nonlinearity see.
        let keys = if self.preactivation {
            conv.input_keys().to_vec()
        } else {
            conv.target_keys().to_vec()
        };
        let norm = if self.norm {
            Some(EquivariantLayerNormConfig::new(self.d, keys.clone()).init(device)?)
        } else {
            None
        };
        let (vector_neurons, scalar_activation) = match (self.activation, self.vector_neurons) {
            (None, _) => (None, None),
            (Some(f), true) => (
                Some(
                    VectorNeuronNonlinearConfig::new(self.d, keys)
                        .with_scalar_activation(f)
                        .init(device)?,
                ),
                None,
            ),
            (Some(f), false) => (
                None,
                Some(PerKey::new(
                    BlockActivation::new(f),
                    vec![TensorKey::SCALAR],
                )),
            ),
        };
        Ok(ConvBlock {
            conv,
            norm,
            vector_neurons,
            scalar_activation,
            preactivation: self.preactivation,
        })
    }
}

impl ConvBlock {
    fn nonlinear<const R: usize>(&self, x: MultiImage<R>) -> Result<MultiImage<R>> {
        let x = match &self.norm {
            Some(n) => n.try_forward(x)?,
            None => x,
        };
        let x = match &self.vector_neurons {
            Some(v) => v.try_forward(x)?,
            None => x,
        };
        match &self.scalar_activation {
            Some(a) => a.try_forward(x),
            None => Ok(x),
        }
    }

    /// Blocks of the input keys → blocks of the output keys on the same grid.
    pub fn try_forward<const R: usize>(&self, x: MultiImage<R>) -> Result<MultiImage<R>> {
        if self.preactivation {
            self.conv.try_forward(self.nonlinear(x)?)
        } else {
            self.nonlinear(self.conv.try_forward(x)?)
        }
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward<const R: usize>(&self, x: MultiImage<R>) -> MultiImage<R> {
        idx_flow_core::or_panic(self.try_forward(x))
    }
}

/// The settings every model passes to its blocks.
struct BlockSettings {
    d: usize,
    kernel_size: usize,
    bias: BiasMode,
    activation: Option<ScalarActivation>,
    vector_neurons: bool,
}

impl BlockSettings {
    fn block(&self, input: &Signature, output: &Signature) -> ConvBlockConfig {
        ConvBlockConfig::new(self.d, input.clone(), output.clone())
            .with_kernel_size(self.kernel_size)
            .with_bias(self.bias)
            .with_activation(self.activation)
            .with_vector_neurons(self.vector_neurons)
    }
}

fn run_blocks<const R: usize>(blocks: &[ConvBlock], mut x: MultiImage<R>) -> Result<MultiImage<R>> {
    for b in blocks {
        x = b.try_forward(x)?;
    }
    Ok(x)
}

/// The ResNets' decoder: a block on the hidden keys, then a linear block to
/// the output keys.
fn residual_decoder(
    s: &BlockSettings,
    mid: &Signature,
    output_keys: &Signature,
    device: &Device,
) -> Result<Vec<ConvBlock>> {
    Ok(vec![
        s.block(mid, mid).init(device)?,
        s.block(mid, output_keys)
            .with_activation(None)
            .init(device)?,
    ])
}

/// The ResNets' forward: the encoder, each residual group added to its
/// input, the decoder.
fn residual_forward<const R: usize>(
    encoder: &[ConvBlock],
    blocks: &[Vec<ConvBlock>],
    decoder: &[ConvBlock],
    x: MultiImage<R>,
) -> Result<MultiImage<R>> {
    let mut x = run_blocks(encoder, x)?;
    for block in blocks {
        x = run_blocks(block, x.clone())?.try_add(x)?;
    }
    run_blocks(decoder, x)
}

// ---- ResNet -----------------------------------------------------------------------------

/// Configuration of a [`ResNet`] (ginjax's defaults).
#[derive(Config, Debug)]
pub struct ResNetConfig {
    /// Spatial dimensions `D` (2 or 3).
    pub d: usize,
    /// Input keys and channels.
    pub input_keys: Vec<(TensorKey, usize)>,
    /// Output keys and channels.
    pub output_keys: Vec<(TensorKey, usize)>,
    /// Channels of every hidden key (ignored when `mid_keys` is given).
    pub depth: usize,
    /// Residual blocks. Default: 8.
    #[config(default = 8)]
    pub num_blocks: usize,
    /// Convolutions per residual block. Default: 2.
    #[config(default = 2)]
    pub num_conv: usize,
    /// Filter side `M` (odd). Default: 3.
    #[config(default = 3)]
    pub kernel_size: usize,
    /// Bias of the convolutions. Default: [`BiasMode::Auto`].
    #[config(default = "BiasMode::Auto")]
    pub bias: BiasMode,
    /// Scalar activation; `None`: none (a linear model). Default: GELU.
    #[config(default = "Some(ScalarActivation::Gelu)")]
    pub activation: Option<ScalarActivation>,
    /// Vector Neurons on the non-scalar keys. Default: true.
    #[config(default = true)]
    pub vector_neurons: bool,
    /// Layer norms in the residual blocks. Default: true.
    #[config(default = true)]
    pub norm: bool,
    /// Residual blocks in preactivation order. Default: true.
    #[config(default = true)]
    pub preactivation: bool,
    /// Hidden keys and channels. Default: `None` (the input and output keys, `depth` each).
    #[config(default = "None")]
    pub mid_keys: Option<Signature>,
}

/// ginjax's `ResNet`: two encoding blocks, `num_blocks` residual blocks of
/// `num_conv` blocks each (`x + block(x)`), two decoding blocks (the last
/// without nonlinearity).
#[derive(Module, Debug)]
pub struct ResNet {
    /// Input keys → hidden keys → hidden keys.
    pub encoder: Vec<ConvBlock>,
    /// The residual blocks.
    pub blocks: Vec<Vec<ConvBlock>>,
    /// Hidden keys → hidden keys → output keys.
    pub decoder: Vec<ConvBlock>,
}

impl ResNetConfig {
    /// Builds the model. An error for bad sizes or keys.
    pub fn init(&self, device: &Device) -> Result<ResNet> {
        check_d(self.d)?;
        let mid = hidden_keys(
            &self.input_keys,
            &self.output_keys,
            self.depth,
            &self.mid_keys,
        )?;
        let s = BlockSettings {
            d: self.d,
            kernel_size: self.kernel_size,
            bias: self.bias,
            activation: self.activation,
            vector_neurons: self.vector_neurons,
        };
        let encoder = vec![
            s.block(&self.input_keys, &mid).init(device)?,
            s.block(&mid, &mid).init(device)?,
        ];
        let blocks = (0..self.num_blocks)
            .map(|_| {
                (0..self.num_conv)
                    .map(|_| {
                        s.block(&mid, &mid)
                            .with_norm(self.norm)
                            .with_preactivation(self.preactivation)
                            .init(device)
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let decoder = residual_decoder(&s, &mid, &self.output_keys, device)?;
        Ok(ResNet {
            encoder,
            blocks,
            decoder,
        })
    }
}

impl ResNet {
    /// Blocks of the input keys → blocks of the output keys on the same grid.
    pub fn try_forward<const R: usize>(&self, x: MultiImage<R>) -> Result<MultiImage<R>> {
        residual_forward(&self.encoder, &self.blocks, &self.decoder, x)
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward<const R: usize>(&self, x: MultiImage<R>) -> MultiImage<R> {
        idx_flow_core::or_panic(self.try_forward(x))
    }
}

// ---- DilResNet --------------------------------------------------------------------------

/// Configuration of a [`DilResNet`] (ginjax's defaults).
#[derive(Config, Debug)]
pub struct DilResNetConfig {
    /// Spatial dimensions `D` (2 or 3).
    pub d: usize,
    /// Input keys and channels.
    pub input_keys: Vec<(TensorKey, usize)>,
    /// Output keys and channels.
    pub output_keys: Vec<(TensorKey, usize)>,
    /// Channels of every hidden key (ignored when `mid_keys` is given).
    pub depth: usize,
    /// Dilated residual blocks. Default: 4.
    #[config(default = 4)]
    pub num_blocks: usize,
    /// Filter dilations of the blocks in each residual block. Default: 1, 2, 4, 8, 4, 2, 1.
    #[config(default = "vec![1, 2, 4, 8, 4, 2, 1]")]
    pub dilations: Vec<usize>,
    /// Filter side `M` (odd). Default: 3.
    #[config(default = 3)]
    pub kernel_size: usize,
    /// Bias of the convolutions. Default: [`BiasMode::Auto`].
    #[config(default = "BiasMode::Auto")]
    pub bias: BiasMode,
    /// Scalar activation; `None`: none. Default: ReLU.
    #[config(default = "Some(ScalarActivation::Relu)")]
    pub activation: Option<ScalarActivation>,
    /// Vector Neurons on the non-scalar keys. Default: true.
    #[config(default = true)]
    pub vector_neurons: bool,
    /// Layer norms in the dilated blocks. Default: false.
    #[config(default = false)]
    pub norm: bool,
    /// Hidden keys and channels. Default: `None` (the input and output keys, `depth` each).
    #[config(default = "None")]
    pub mid_keys: Option<Signature>,
}

/// ginjax's `DilResNet`: like [`ResNet`], but each residual block is a run
/// of blocks with growing then shrinking filter dilation (post-activation
/// order), which widens the receptive field without downsampling.
#[derive(Module, Debug)]
pub struct DilResNet {
    /// Input keys → hidden keys → hidden keys.
    pub encoder: Vec<ConvBlock>,
    /// The dilated residual blocks.
    pub blocks: Vec<Vec<ConvBlock>>,
    /// Hidden keys → hidden keys → output keys.
    pub decoder: Vec<ConvBlock>,
}

impl DilResNetConfig {
    /// Builds the model. An error for bad sizes or keys, or a zero dilation.
    pub fn init(&self, device: &Device) -> Result<DilResNet> {
        check_d(self.d)?;
        let mid = hidden_keys(
            &self.input_keys,
            &self.output_keys,
            self.depth,
            &self.mid_keys,
        )?;
        if self.dilations.is_empty() || self.dilations.contains(&0) {
            return Err(Error::arg(
                "dilations",
                format!("got {:?}, expected at least one, each ≥ 1", self.dilations),
            ));
        }
        let s = BlockSettings {
            d: self.d,
            kernel_size: self.kernel_size,
            bias: self.bias,
            activation: self.activation,
            vector_neurons: self.vector_neurons,
        };
        let encoder = vec![
            s.block(&self.input_keys, &mid).init(device)?,
            s.block(&mid, &mid).init(device)?,
        ];
        let blocks = (0..self.num_blocks)
            .map(|_| {
                self.dilations
                    .iter()
                    .map(|&r| {
                        s.block(&mid, &mid)
                            .with_norm(self.norm)
                            .with_dilation(r)
                            .init(device)
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let decoder = residual_decoder(&s, &mid, &self.output_keys, device)?;
        Ok(DilResNet {
            encoder,
            blocks,
            decoder,
        })
    }
}

impl DilResNet {
    /// Blocks of the input keys → blocks of the output keys on the same grid.
    pub fn try_forward<const R: usize>(&self, x: MultiImage<R>) -> Result<MultiImage<R>> {
        residual_forward(&self.encoder, &self.blocks, &self.decoder, x)
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward<const R: usize>(&self, x: MultiImage<R>) -> MultiImage<R> {
        idx_flow_core::or_panic(self.try_forward(x))
    }
}

// ---- UNet -------------------------------------------------------------------------------

/// Configuration of a [`UNet`] (ginjax's defaults).
#[derive(Config, Debug)]
pub struct UNetConfig {
    /// Spatial dimensions `D` (2 or 3).
    pub d: usize,
    /// Input keys and channels.
    pub input_keys: Vec<(TensorKey, usize)>,
    /// Output keys and channels.
    pub output_keys: Vec<(TensorKey, usize)>,
    /// Channels of every hidden key at the finest level (ignored when `mid_keys` is given).
    pub depth: usize,
    /// Levels below the finest; the grid must be divisible by `2^num_downsamples`. Default: 4.
    #[config(default = 4)]
    pub num_downsamples: usize,
    /// Blocks per level (≥ 1). Default: 2.
    #[config(default = 2)]
    pub num_conv: usize,
    /// Filter side `M` (odd). Default: 3.
    #[config(default = 3)]
    pub kernel_size: usize,
    /// Filter side of the transposed (upsampling) convolutions (even). Default: 2.
    #[config(default = 2)]
    pub upsample_kernel_size: usize,
    /// Bias of the convolutions. Default: [`BiasMode::Auto`].
    #[config(default = "BiasMode::Auto")]
    pub bias: BiasMode,
    /// Scalar activation; `None`: none. Default: GELU.
    #[config(default = "Some(ScalarActivation::Gelu)")]
    pub activation: Option<ScalarActivation>,
    /// Vector Neurons on the non-scalar keys. Default: true.
    #[config(default = true)]
    pub vector_neurons: bool,
    /// Layer norms after the convolutions. Default: false.
    #[config(default = false)]
    pub norm: bool,
    /// Hidden keys and channels at the finest level, doubled at each coarser
    /// one. Default: `None` (the input and output keys, `depth` each).
    #[config(default = "None")]
    pub mid_keys: Option<Signature>,
}

/// One coarser level of a [`UNet`]: pool, then blocks.
#[derive(Module, Debug)]
pub struct UNetDown {
    /// Halves the grid.
    pub pool: MaxNormPool,
    /// The level's blocks (the first doubles the channels).
    pub blocks: Vec<ConvBlock>,
}

/// One finer level of a [`UNet`]: upsample, concatenate the skip, blocks.
#[derive(Module, Debug)]
pub struct UNetUp {
    /// Transposed convolution that doubles the grid and halves the channels.
    pub upsample: ConvContract,
    /// The level's blocks (the first takes upsampled and skip channels).
    pub blocks: Vec<ConvBlock>,
}

/// ginjax's `UNet`: blocks at the finest level, `num_downsamples` levels
/// down ([`MaxNormPool`] of side 2, channels doubled) and back up (a
/// transposed [`ConvContract`] with an even filter, input dilation 2 and
/// padding 1, then the skip connection concatenated), and a final
/// [`ConvContract`] to the output keys.
#[derive(Module, Debug)]
pub struct UNet {
    /// Blocks at the finest level.
    pub embedding: Vec<ConvBlock>,
    /// The levels down.
    pub down: Vec<UNetDown>,
    /// The levels up, coarsest first.
    pub up: Vec<UNetUp>,
    /// Hidden keys → output keys.
    pub decode: ConvContract,
    /// Levels below the finest.
    pub num_downsamples: usize,
}

impl UNetConfig {
    /// Builds the model. An error for bad sizes or keys, `num_conv = 0`, or
    /// an odd upsampling filter.
    pub fn init(&self, device: &Device) -> Result<UNet> {
        check_d(self.d)?;
        let mid = hidden_keys(
            &self.input_keys,
            &self.output_keys,
            self.depth,
            &self.mid_keys,
        )?;
        if self.num_conv == 0 {
            return Err(Error::arg("num_conv", "got 0, expected at least 1"));
        }
        if self.upsample_kernel_size == 0 || !self.upsample_kernel_size.is_multiple_of(2) {
            return Err(Error::arg(
                "upsample_kernel_size",
                format!(
                    "got {}, expected an even size (the transposed filter sits between cells)",
                    self.upsample_kernel_size
                ),
            ));
        }
        let s = BlockSettings {
            d: self.d,
            kernel_size: self.kernel_size,
            bias: self.bias,
            activation: self.activation,
            vector_neurons: self.vector_neurons,
        };
        let block = |i: &Signature, o: &Signature| s.block(i, o).with_norm(self.norm).init(device);
        let embedding = (0..self.num_conv)
            .map(|i| block(if i == 0 { &self.input_keys } else { &mid }, &mid))
            .collect::<Result<Vec<_>>>()?;
        let mut down = Vec::with_capacity(self.num_downsamples);
        for level in 1..=self.num_downsamples {
            let (inner, outer) = (scaled(&mid, 1 << (level - 1)), scaled(&mid, 1 << level));
            let blocks = (0..self.num_conv)
                .map(|i| block(if i == 0 { &inner } else { &outer }, &outer))
                .collect::<Result<Vec<_>>>()?;
            down.push(UNetDown {
                pool: MaxNormPool::new(2),
                blocks,
            });
        }
        // A filter of even side `M` on the input dilated by 2 and padded by
        // `M/2` keeps the grid doubled and, being centred between cells, commutes
        // with reflections (M = 2, padding 1 is ginjax's).
        let pad = self.upsample_kernel_size / 2;
        let mut up = Vec::with_capacity(self.num_downsamples);
        for level in (0..self.num_downsamples).rev() {
            let (coarse, fine) = (scaled(&mid, 1 << (level + 1)), scaled(&mid, 1 << level));
            let upsample = ConvContractConfig::new(self.d, coarse.clone(), fine.clone())
                .with_kernel_size(self.upsample_kernel_size)
                .with_bias(self.bias)
                .with_padding(Padding::Explicit(vec![(pad, pad)]))
                .with_input_dilation(vec![2])
                .init(device)?;
            let blocks = (0..self.num_conv)
                .map(|i| block(if i == 0 { &coarse } else { &fine }, &fine))
                .collect::<Result<Vec<_>>>()?;
            up.push(UNetUp { upsample, blocks });
        }
        let decode = ConvContractConfig::new(self.d, mid, self.output_keys.clone())
            .with_kernel_size(self.kernel_size)
            .with_bias(self.bias)
            .init(device)?;
        Ok(UNet {
            embedding,
            down,
            up,
            decode,
            num_downsamples: self.num_downsamples,
        })
    }
}

impl UNet {
    /// Blocks of the input keys → blocks of the output keys on the same grid,
    /// which must be divisible by `2^num_downsamples`.
    pub fn try_forward<const R: usize>(&self, x: MultiImage<R>) -> Result<MultiImage<R>> {
        let factor = 1usize << self.num_downsamples;
        if let Some(n) = x.spatial_dims()
            && n.iter().any(|&a| !a.is_multiple_of(factor))
        {
            return Err(Error::Shape {
                context: "UNet input".into(),
                expected: format!("a grid divisible by 2^{} = {factor}", self.num_downsamples),
                got: format!("{n:?}"),
            });
        }
        let mut x = run_blocks(&self.embedding, x)?;
        let mut skips = Vec::with_capacity(self.down.len());
        for level in &self.down {
            skips.push(x.clone());
            x = run_blocks(&level.blocks, level.pool.try_forward(x)?)?;
        }
        for (level, skip) in self.up.iter().zip(skips.into_iter().rev()) {
            let x_up = level.upsample.try_forward(x)?;
            x = run_blocks(&level.blocks, x_up.concat(skip)?)?;
        }
        self.decode.try_forward(x)
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward<const R: usize>(&self, x: MultiImage<R>) -> MultiImage<R> {
        idx_flow_core::or_panic(self.try_forward(x))
    }
}

// ---- GroupAverage -----------------------------------------------------------------------

/// ginjax's `GroupAverage` (with `always_average`): `x ↦ (1/|G|) Σ_g
/// g⁻¹·f(g·x)` over `B_D`, which commutes with every `h ∈ B_D` whatever `f`
/// is (substitute `g' = g h`), and equals `f` when `f` is already
/// equivariant. Costs `|G|` forward passes (8 in 2-D, 48 in 3-D).
///
/// ```
/// use burn::tensor::{Device, Distribution, Tensor};
/// use idx_flow_equivariant::{
///     BlockActivation, GroupAverage, MultiImage, PerKey, ScalarActivation, TensorKey,
/// };
///
/// let device = Device::default();
/// let relu = PerKey::new(BlockActivation::new(ScalarActivation::Relu), vec![TensorKey::SCALAR]);
/// let avg = GroupAverage::new(relu, 2)?;
/// let x = MultiImage::<4>::new(vec![true, true])?
///     .with(TensorKey::SCALAR, Tensor::random([1, 1, 4, 4], Distribution::Default, &device))?;
/// // ReLU on scalars is equivariant already: averaging leaves it unchanged.
/// let y = avg.try_forward(x.clone())?;
/// let y0 = avg.model.try_forward(x)?;
/// let err = (y.get(TensorKey::SCALAR).unwrap().clone() - y0.get(TensorKey::SCALAR).unwrap().clone())
///     .abs()
///     .max()
///     .into_scalar::<f32>();
/// assert!(err < 1e-6);
/// # Ok::<(), idx_flow_equivariant::Error>(())
/// ```
#[derive(Module, Debug)]
pub struct GroupAverage<M: Module> {
    /// The averaged model.
    pub model: M,
    #[module(skip)]
    group: Vec<GroupElement>,
}

impl<M: Module + MultiImageModule> GroupAverage<M> {
    /// Averages `model` over `B_d` (`d` = 2 or 3).
    pub fn new(model: M, d: usize) -> Result<Self> {
        Ok(GroupAverage {
            model,
            group: hyperoctahedral_group(d)?,
        })
    }

    /// The group averaged over.
    pub fn group(&self) -> &[GroupElement] {
        &self.group
    }

    /// The group average of the model at `x`. An error when `x` has another
    /// number of spatial axes than the group, or the model fails.
    pub fn try_forward<const R: usize>(&self, x: MultiImage<R>) -> Result<MultiImage<R>> {
        let d = self.group.first().map(GroupElement::dim).unwrap_or(0);
        if R != d + 2 {
            return Err(Error::Shape {
                context: "GroupAverage input".into(),
                expected: format!("rank {} blocks (the group of D = {d})", d + 2),
                got: format!("rank {R} blocks"),
            });
        }
        let mut sum: Option<MultiImage<R>> = None;
        for g in &self.group {
            let y = g.inverse().apply(&self.model.try_forward(g.apply(&x)?)?)?;
            sum = Some(match sum {
                Some(s) => s.try_add(y)?,
                None => y,
            });
        }
        let n = self.group.len() as f64;
        sum.ok_or_else(|| Error::arg("GroupAverage", "empty group"))?
            .try_map(|_, t| Ok(t / n))
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward<const R: usize>(&self, x: MultiImage<R>) -> MultiImage<R> {
        idx_flow_core::or_panic(self.try_forward(x))
    }
}

impl<M: Module + MultiImageModule> MultiImageModule for GroupAverage<M> {
    fn try_forward<const R: usize>(&self, x: MultiImage<R>) -> Result<MultiImage<R>> {
        GroupAverage::try_forward(self, x)
    }
}
