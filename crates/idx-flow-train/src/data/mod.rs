//! Data on the sphere: equirectangular images ([`EquirectImage`]), datasets
//! of HEALPix maps read one sample at a time ([`reader`]: `.npy`, FITS,
//! directories and globs of them, zarr arrays), masked pixels ([`mask`]),
//! random rotations ([`Rotation`]) drawn from a counter-based generator
//! ([`SplitMix64`](idx_flow_core::rng::SplitMix64)), the training set built
//! from them ([`SphereDataset`]), and the order and background reading of
//! its samples ([`loader`]).
//!
//! | file | what |
//! |---|---|
//! | [`equirect`] | decoding PNG/JPEG, bilinear sampling in longitude/latitude |
//! | [`maps`] | HEALPix maps `[T, C, N]` in memory and their validation |
//! | [`mask`] | `UNSEEN` and NaN as masked pixels |
//! | [`npy`] | `.npy` read a sample at a time (any numeric dtype), written a batch at a time |
//! | [`reader`] | [`MapReader`]: one `.npy` file, many files, maps in memory |
//! | [`open`] | what `--data` names: a file, a directory, a glob, a zarr array |
//! | [`zarr`] | zarr arrays `[time, channel, pixel]` |
//! | [`files`] | whole maps from `.npy` and FITS files, by extension |
//! | [`fits`] | healpy `write_map` FITS tables, read and write |
//! | [`rotation`] (on [`idx_flow_core::rng`]) | uniform random rotations, reproducible per `(seed, step, index)` |
//! | [`source`] | the bundled images; an image or a dataset of maps as a source |
//! | [`dataset`] | the split, resampling onto the model grid, normalisation, masks |
//! | [`loader`] | seeded epoch shuffles and the prefetch thread |

pub mod dataset;
pub mod equirect;
pub mod files;
pub mod fits;
pub mod loader;
pub mod maps;
pub mod mask;
pub mod npy;
pub mod open;
pub mod reader;
pub mod rotation;
pub mod source;
pub mod zarr;

pub use dataset::{BundledImage, DataOptions, Normalisation, Sample, SphereDataset, SphereSource};
pub use equirect::EquirectImage;
pub use maps::HealpixMaps;
pub use open::open_maps;
pub use reader::MapReader;
pub use rotation::Rotation;
