//! Models built from idx-flow's layers.
//!
//! - [`autoencoder`]: the HEALPix convolutional encoder-decoder ([`HealpixAutoencoder`]).

pub mod autoencoder;

pub use autoencoder::{AutoencoderConfig, GraphKind, HealpixAutoencoder};
