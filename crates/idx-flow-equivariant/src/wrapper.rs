//! [`PerKey`]: applies a layer made for plain (scalar) images to the blocks
//! of chosen keys of a multi-image, as ginjax's `LayerWrapper`; and
//! [`ScalarActivation`], the activations ginjax applies to scalars.
//!
//! A block is handed over as it is stored, `[B, C·D^k, *N]`; for scalars that
//! is an ordinary image `[B, C, *N]`. Blocks of other keys pass through
//! unchanged. Equivariance is the wrapped layer's business: elementwise
//! functions and channel mixing commute with the group on scalars
//! `(0, 0)`, but not on pseudoscalars or tensors (a ReLU of a vector's
//! components is not rotation equivariant) — wrap those keys only with
//! layers that are odd, or linear in the channels alone.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use idx_flow_equivariant::{BlockActivation, MultiImage, PerKey, ScalarActivation, TensorKey};
//!
//! let device = Device::default();
//! let relu = PerKey::new(BlockActivation::new(ScalarActivation::Relu), vec![TensorKey::SCALAR]);
//! let x = MultiImage::<4>::new(vec![true, true])?
//!     .with(TensorKey::SCALAR, Tensor::full([1, 1, 4, 4], -1.0, &device))?
//!     .with(TensorKey::VECTOR, Tensor::full([1, 2, 4, 4], -1.0, &device))?;
//! let y = relu.try_forward(x)?;
//! assert_eq!(y.get(TensorKey::SCALAR).unwrap().clone().sum().into_scalar::<f32>(), 0.0);
//! assert_eq!(y.get(TensorKey::VECTOR).unwrap().clone().sum().into_scalar::<f32>(), -32.0);
//! # Ok::<(), idx_flow_equivariant::Error>(())
//! ```

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use idx_flow_kernels::pointwise::{Activation, activation};
use serde::{Deserialize, Serialize};

use super::image::{MultiImage, TensorKey};
use crate::Result;

/// A layer on one block `[B, C·D^k, *N]` that keeps its shape.
pub trait BlockLayer {
    /// Applies the layer to the block of `key`.
    fn forward_block<const R: usize>(&self, key: TensorKey, x: Tensor<R>) -> Result<Tensor<R>>;
}

/// Elementwise activations for scalar blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScalarActivation {
    /// `max(x, 0)` (ginjax's default).
    Relu,
    /// GELU, tanh approximation (`jax.nn.gelu`'s default, ginjax's models').
    Gelu,
    /// `tanh`.
    Tanh,
    /// `x · sigmoid(x)`.
    Silu,
    /// The identity.
    Identity,
}

impl ScalarActivation {
    /// Applies the activation elementwise.
    pub fn apply<const R: usize>(&self, x: Tensor<R>) -> Tensor<R> {
        match self {
            ScalarActivation::Relu => relu(x),
            // Fused kernels on the CPU (idx_flow_kernels::pointwise); JAX's
            // default GELU is the tanh form.
            ScalarActivation::Gelu => activation(x, Activation::GeluTanh),
            ScalarActivation::Tanh => activation(x, Activation::Tanh),
            ScalarActivation::Silu => activation(x, Activation::Silu),
            ScalarActivation::Identity => x,
        }
    }
}

/// A [`ScalarActivation`] as a (parameter-free) module, to wrap in [`PerKey`].
#[derive(Module, Debug)]
pub struct BlockActivation {
    /// The function.
    #[module(skip)]
    pub function: ScalarActivation,
}

impl BlockActivation {
    /// The module of `function`.
    pub fn new(function: ScalarActivation) -> Self {
        BlockActivation { function }
    }
}

impl BlockLayer for BlockActivation {
    fn forward_block<const R: usize>(&self, _: TensorKey, x: Tensor<R>) -> Result<Tensor<R>> {
        Ok(self.function.apply(x))
    }
}

impl BlockLayer for idx_flow_pde::GroupNorm {
    fn forward_block<const R: usize>(&self, _: TensorKey, x: Tensor<R>) -> Result<Tensor<R>> {
        self.try_forward(x)
    }
}

impl BlockLayer for idx_flow_pde::PointwiseLinearConv {
    fn forward_block<const R: usize>(&self, _: TensorKey, x: Tensor<R>) -> Result<Tensor<R>> {
        self.try_forward(x)
    }
}

/// ginjax's `LayerWrapper`: one layer applied to the blocks of the chosen keys.
#[derive(Module, Debug)]
pub struct PerKey<M: Module> {
    /// The wrapped layer.
    pub layer: M,
    #[module(skip)]
    keys: Vec<TensorKey>,
}

impl<M: Module + BlockLayer> PerKey<M> {
    /// Wraps `layer` for the blocks of `keys`.
    pub fn new(layer: M, keys: Vec<TensorKey>) -> Self {
        PerKey { layer, keys }
    }

    /// The keys the layer applies to.
    pub fn keys(&self) -> &[TensorKey] {
        &self.keys
    }

    /// The layer on the blocks of the keys; other blocks unchanged.
    pub fn try_forward<const R: usize>(&self, x: MultiImage<R>) -> Result<MultiImage<R>> {
        x.try_map(|k, t| {
            if self.keys.contains(&k) {
                self.layer.forward_block(k, t)
            } else {
                Ok(t)
            }
        })
    }

    /// [`try_forward`](Self::try_forward), panicking on an error of the layer.
    pub fn forward<const R: usize>(&self, x: MultiImage<R>) -> MultiImage<R> {
        idx_flow_core::or_panic(self.try_forward(x))
    }
}
