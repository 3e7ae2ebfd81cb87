//! Group-equivariant layers on geometric images: the layers and models of
//! the JAX package ginjax 0.1.8, batched, as burn modules.
//!
//! A geometric image holds a tensor of order `k` and parity `p` (a
//! [`TensorKey`]) at every cell of a 2-D or 3-D grid: scalars, vectors,
//! pseudovectors, matrices, ... A [`MultiImage`] groups blocks of several
//! keys on one grid; each block is `[B, C·D^k, *N]` (batch, channels times
//! components, spatial axes), each axis a torus (periodic) or zero-padded.
//! The grid's rotations and reflections, the hyperoctahedral group `B_D`
//! ([`hyperoctahedral_group`]: 8 elements in 2-D, 48 in 3-D), act by
//! `(g·A)(x) = det(g)^p · g^{⊗k} A(g⁻¹ x)` ([`GroupElement::apply`]), and
//! every layer here commutes with that action: `f(g·x) = g·f(x)`.
//!
//! | layer | file | what it does |
//! |---|---|---|
//! | [`TensorKey`], [`MultiImage`] | [`image`] | keys, multi-images, ginjax's pixel layout |
//! | [`GroupElement`], [`hyperoctahedral_group`] | [`group`] | `B_D` in ginjax's order and its action |
//! | [`invariant_filters`], [`FilterBasis`] | [`filters`] | the invariant filters of any size, order and parity (ginjax's, value for value) |
//! | [`ConvContract`] | [`conv`] | learned combinations of invariant filters, convolution then contraction, every input/output key pair; stride, dilation, transposed use |
//! | [`EquivariantGroupNorm`], [`EquivariantLayerNormConfig`] | [`norm`] | group/layer norm: scalars as usual, tensors whitened by their covariance |
//! | [`VectorNeuronNonlinear`] | [`nonlinear`] | the Vector Neurons nonlinearity for non-scalar keys |
//! | [`MaxNormPool`] | [`pool`] | keeps the tensor of largest norm per patch |
//! | [`PerKey`], [`BlockActivation`], [`ScalarActivation`] | [`wrapper`] | a plain layer applied to chosen keys (ginjax's `LayerWrapper`) |
//! | [`ResNet`], [`DilResNet`], [`UNet`], [`ConvBlock`] | [`models`] | ginjax's equivariant models, built from the layers above |
//! | [`GroupAverage`], [`MultiImageModule`] | [`models`] | averages `g⁻¹·f(g·x)` over `B_D`: makes any model equivariant |
//!
//! # Conventions
//!
//! - **Layout.** A block of key `(k, p)` with `C` channels is `[B, C·D^k, *N]`,
//!   the `D^k` components of a channel consecutive (row-major in their `k`
//!   indices). ginjax's blocks are `(C, *N, *(D,)*k)` without a batch axis;
//!   [`MultiImage::insert_pixel_layout`], [`MultiImage::pixel_layout`],
//!   [`from_pixel_layout`] and [`to_pixel_layout`] convert. Layers are generic
//!   in the block rank `R = D + 2` and check it at run time.
//! - **Parameters** have ginjax's shapes and names (Equinox pytree paths with
//!   keys written `k{k}p{p}`): `weights.k1p0.k0p0` `[C_out, C_in, n_filters]`
//!   and `bias.k0p0` `[C_out]` of a [`ConvContract`]; `vanilla_norm.k0p0.weight`
//!   / `.bias`, `scale.k1p0`, `bias.k1p0` of an [`EquivariantGroupNorm`]; `weights.k1p0`
//!   `[C, C]` of a [`VectorNeuronNonlinear`]. They load and save through
//!   [`TorchState`](idx_flow_core::TorchState).
//! - **Initialisation** is ginjax's (uniform bounds of its constructors; norms
//!   start at scale 1, bias 0), drawn through
//!   [`with_seed`](idx_flow_core::init::with_seed) when one is installed.
//! - **Errors.** `init` and `try_forward` return [`Error`] for
//!   every size or key a user can get wrong; `forward` panics with that message.
//! - **Autodiff.** Everything is made of burn tensor operations (the
//!   eigendecomposition of the norms' covariances is done on the host, with
//!   its exact derivative added back as tensor operations), so every layer is
//!   differentiable on every backend.
//!
//! # Differences from ginjax
//!
//! - [`BiasMode::Scalar`] gives scalars a plain bias and leaves every other
//!   output unbiased. ginjax's `use_bias="scalar"` silently drops the
//!   non-scalar outputs from the result instead.
//! - [`EquivariantGroupNorm`] gives pseudoscalars `(0, 1)` a scale but no bias. ginjax
//!   keeps an affine bias there, which a reflection does not flip, so its
//!   norm is not reflection equivariant on pseudoscalars.
//! - [`EquivariantGroupNorm`] whitens tensors of any order `k ≥ 1` (with the
//!   `D^k × D^k` covariance); ginjax raises `NotImplementedError` for `k ≥ 2`.
//! - An output key that no input key reaches through an invariant filter is
//!   still returned (zeros, plus its bias); ginjax leaves it out.
//! - Filters whose entries cancel exactly get their sign, in ginjax, from
//!   the rounding noise of an XLA sum; [`invariant_filters`] reproduces XLA's
//!   CPU order, checked up to 729 entries per filter (every fixture set). For
//!   larger filters XLA switches libraries and such a filter may come out
//!   with the opposite sign — the same space, a learned weight absorbs it.
//! - Only ginjax's default filter construction (`FilterScaling.NORMALIZE`,
//!   the irreducible basis for `k = 2`), `use_norm=True` pooling and flat
//!   (Euclidean) metrics are provided.
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use idx_flow_equivariant::{
//!     ConvContractConfig, MultiImage, TensorKey, VectorNeuronNonlinearConfig,
//!     hyperoctahedral_group,
//! };
//!
//! let device = Device::default();
//! let keys = vec![(TensorKey::SCALAR, 1), (TensorKey::VECTOR, 1)];
//! let conv = ConvContractConfig::new(2, keys.clone(), keys.clone()).init(&device)?;
//! let act = VectorNeuronNonlinearConfig::new(2, keys).init(&device)?;
//! let f = |x| act.try_forward(conv.try_forward(x)?);
//! let x = MultiImage::<4>::new(vec![true, true])?
//!     .with(TensorKey::SCALAR, Tensor::random([1, 1, 8, 8], Distribution::Default, &device))?
//!     .with(TensorKey::VECTOR, Tensor::random([1, 2, 8, 8], Distribution::Default, &device))?;
//! // Rotating the input rotates the output.
//! let g = &hyperoctahedral_group(2)?[3];
//! let a = f(g.apply(&x)?)?.get(TensorKey::VECTOR).unwrap().clone();
//! let b = g.apply(&f(x)?)?.get(TensorKey::VECTOR).unwrap().clone();
//! assert!((a - b).abs().max().into_scalar::<f32>() < 1e-5);
//! # Ok::<(), idx_flow_equivariant::Error>(())
//! ```

#![warn(missing_docs)]

pub use idx_flow_core::{Error, Result};

pub mod conv;
pub mod filters;
pub mod group;
pub mod image;
pub mod models;
pub mod nonlinear;
pub mod norm;
pub mod pool;
pub mod wrapper;

pub use conv::{BiasMode, ConvContract, ConvContractConfig, Padding};
pub use filters::{FilterBasis, invariant_filters};
pub use group::{GroupElement, hyperoctahedral_group};
pub use image::{MultiImage, Signature, TensorKey, from_pixel_layout, to_pixel_layout};
pub use models::{
    ConvBlock, ConvBlockConfig, DilResNet, DilResNetConfig, GroupAverage, MultiImageModule, ResNet,
    ResNetConfig, UNet, UNetConfig, UNetDown, UNetUp, signature_union,
};
pub use nonlinear::{VectorNeuronNonlinear, VectorNeuronNonlinearConfig};
pub use norm::{EquivariantGroupNorm, EquivariantGroupNormConfig, EquivariantLayerNormConfig};
pub use pool::MaxNormPool;
pub use wrapper::{BlockActivation, BlockLayer, PerKey, ScalarActivation};
