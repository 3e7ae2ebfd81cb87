//! # idx-flow
//!
//! Deep learning on the HEALPix sphere.
//!
//! - [`geometry`]: HEALPix orderings, pixel centres, neighbours (on cdshealpix).
//! - [`graphs`]: [`ConnectionGraph`] — which input pixels feed each output
//!   pixel (k nearest, NESTED children/parent, 3×3 stencil), with distances
//!   and interpolation weights.
//! - [`io`]: graphs and tensors on disk (`.npz`, safetensors), written atomically.
//! - [`layers`]: idx_flow's layers as burn modules (index convolutions, MLPs,
//!   norms, dropouts, attention, ViT, pooling), loadable from PyTorch state dicts.
//! - [`kernels`]: the fused gather-contract and gather-sum operations behind
//!   the gather layers (CPU and CubeCL GPU kernels, deterministic backward).
//! - [`data`]: Earth imagery and HEALPix maps (`.npy`, FITS) under random rotations.
//! - [`models`]: the HEALPix convolutional autoencoder.
//! - [`equivariant`]: layers on geometric images (scalar, vector and tensor
//!   fields on 2-D/3-D grids) that commute with the grid's rotations and
//!   reflections (ginjax's layers and models: ResNet, dilated ResNet, UNet,
//!   group averaging).
//! - [`pde`]: physics convolutions on regular 1-3-D grids (pdequinox's layers:
//!   boundary-aware convolutions, transposed convolutions, FNO spectral
//!   convolutions; and its architectures: ConvNet, ResNets, UNets, FNO).
//! - [`spectral`]: spectral token mixing (FNet, GFNet, AFNO, random-feature and
//!   spectral-transform attention, wavelets) and hybrid transformer blocks (spectrans).
//! - [`train`]: training with AdamW, checkpoints and exact resume, metrics.
//! - [`plot`]: Mollweide pictures with colour bars, loss curves.
//!
//! On the CPU, give your binary a pooling global allocator such as mimalloc
//! (`#[global_allocator] static A: mimalloc::MiMalloc = mimalloc::MiMalloc;`),
//! as the `idx-flow` command does: glibc's `malloc` maps every tensor over
//! 32 MB fresh from the OS and unmaps it when dropped, which about doubled a
//! training step of the README's benchmark.
//!
//! ```
//! use idx_flow::geometry::HealpixGrid;
//! use idx_flow::graphs::ConnectionGraph;
//!
//! // Which 4 pixels of nside 16 feed each pixel of nside 8 (RING, as idx_flow).
//! let graph = ConnectionGraph::knn(HealpixGrid::ring(16)?, HealpixGrid::ring(8)?, 4)?;
//! assert_eq!(graph.indices().len(), 768 * 4);
//! # Ok::<(), idx_flow::Error>(())
//! ```

#![warn(missing_docs)]

pub mod data;
pub mod equivariant;
pub mod error;
pub mod geometry;
pub mod graphs;
pub mod io;
pub mod kernels;
pub mod layers;
pub mod models;
pub mod pde;
pub mod plot;
pub mod spectral;
pub mod train;

pub use error::{Error, Result};
pub use graphs::ConnectionGraph;

/// The README's examples, compiled as doc tests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
