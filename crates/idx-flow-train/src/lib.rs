//! # idx-flow-train
//!
//! The main job of idx-flow as a library: training the HEALPix convolutional
//! autoencoder on maps and Earth imagery.
//!
//! - [`data`]: Earth imagery and HEALPix maps (`.npy`, FITS) under random
//!   rotations, and the bundled Blue Marble and ETOPO1 images.
//! - [`models`]: the HEALPix convolutional autoencoder.
//! - [`train`]: training with AdamW, checkpoints and exact resume, metrics.
//! - [`plot`]: Mollweide pictures with colour bars, loss curves.
//!
//! The `idx-flow` command (`idx-flow-cli`) is a thin layer over this crate.

#![warn(missing_docs)]

pub mod data;
pub mod distributed;
pub mod models;
pub mod plot;
pub mod train;

pub use idx_flow_healpix::{Error, Result};
