//! Group-equivariant layers on geometric images: the JAX package ginjax 0.1.8.
//!
//! (Module documentation is completed below.)

pub mod filters;
pub mod group;
pub mod image;

pub use filters::{FilterBasis, invariant_filters};
pub use group::{GroupElement, hyperoctahedral_group};
pub use image::{MultiImage, Signature, TensorKey, from_pixel_layout, to_pixel_layout};
