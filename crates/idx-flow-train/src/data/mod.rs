//! Data on the sphere: equirectangular images ([`EquirectImage`]), HEALPix maps
//! from `.npy` and FITS files ([`HealpixMaps`], [`fits`]), random rotations
//! ([`Rotation`]) drawn from a counter-based generator ([`SplitMix64`](idx_flow_core::rng::SplitMix64)), and the
//! training set built from them ([`SphereDataset`]).
//!
//! | file | what |
//! |---|---|
//! | [`equirect`] | decoding PNG/JPEG, bilinear sampling in longitude/latitude |
//! | [`maps`] | HEALPix maps `[T, C, N]` and their validation |
//! | [`files`] | maps from `.npy` and FITS files, by extension |
//! | [`fits`] | healpy `write_map` FITS tables, read and write |
//! | [`rotation`] (on [`idx_flow_core::rng`]) | uniform random rotations, reproducible per `(seed, step, index)` |
//! | [`dataset`] | the bundled images, sources, resampling onto the model grid, normalisation |

pub mod dataset;
pub mod equirect;
pub mod files;
pub mod fits;
pub mod maps;

pub mod rotation;

pub use dataset::{BundledImage, SphereDataset, SphereSource};
pub use equirect::EquirectImage;
pub use maps::HealpixMaps;

pub use rotation::Rotation;
