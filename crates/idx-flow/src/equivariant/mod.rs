//! Group-equivariant layers on geometric images: the JAX package ginjax 0.1.8.
//!
//! (Module documentation is completed below.)

pub mod conv;
pub mod filters;
pub mod group;
pub mod image;
pub mod nonlinear;
pub mod norm;
pub mod pool;
pub mod wrapper;

pub use conv::{BiasMode, ConvContract, ConvContractConfig, Padding};
pub use filters::{FilterBasis, invariant_filters};
pub use group::{GroupElement, hyperoctahedral_group};
pub use image::{MultiImage, Signature, TensorKey, from_pixel_layout, to_pixel_layout};
pub use nonlinear::{VectorNeuronNonlinear, VectorNeuronNonlinearConfig};
pub use norm::{GroupNorm, GroupNormConfig, LayerNormConfig};
pub use pool::MaxNormPool;
pub use wrapper::{Activation, BlockLayer, PerKey, ScalarActivation};
