//! # idx-flow
//!
//! Deep learning on the HEALPix sphere. This crate gathers the workspace's
//! crates, one layer each, behind features (all on by default), as `burn`
//! gathers its own:
//!
//! | module | crate | feature | what |
//! |---|---|---|---|
//! | [`geometry`], [`graphs`], [`io`], [`Error`] | `idx-flow-healpix` | always | HEALPix orderings, pixel centres, neighbours; [`ConnectionGraph`](graphs::ConnectionGraph) (k nearest, NESTED children/parent, 3×3 stencil); graph and tensor files; the one error type |
//! | [`kernels`] | `idx-flow-kernels` | `kernels` | the fused gather-contract and gather-sum operations (CPU and CubeCL GPU kernels, deterministic backward) |
//! | [`layers`] | `idx-flow-nn` + `idx-flow-core` | `nn` | idx_flow's layers as burn modules, PyTorch state dicts, seeded initialisers |
//! | [`rng`] | `idx-flow-core` | `nn` or `pde` | the counter-based random numbers behind initialisation and training |
//! | [`spectral`] | `idx-flow-spectral` | `spectral` | spectrans's spectral token mixing and hybrid transformer blocks |
//! | [`pde`] | `idx-flow-pde` | `pde` | pdequinox's physics convolutions and architectures on regular grids |
//! | [`equivariant`] | `idx-flow-equivariant` | `equivariant` | ginjax's layers on geometric images |
//! | [`data`], [`models`], [`train`], [`plot`], [`distributed`] | `idx-flow-train` | `train` (`mpi` for MPI) | map data, the HEALPix autoencoder, training, pictures, data-parallel training |
//!
//! `wgpu`, `vulkan` and `cuda` turn on burn's GPU backends and the CubeCL kernels.
//!
//! On the CPU, give your binary a pooling global allocator such as mimalloc
//! (`#[global_allocator] static A: mimalloc::MiMalloc = mimalloc::MiMalloc;`),
//! as the `idx-flow` command does: glibc's `malloc` maps every tensor over
//! 32 MB fresh from the OS and unmaps it when dropped, which about doubled a
//! training step of the fused-kernel benchmark.
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

pub use idx_flow_healpix::{Error, Result, geometry, graphs, io};

#[cfg(feature = "kernels")]
pub use idx_flow_kernels as kernels;

/// idx_flow 0.2.1's layers as burn modules (`idx-flow-nn`), with the PyTorch
/// state dicts and initialisers they share with the other families
/// (`idx-flow-core`).
#[cfg(feature = "nn")]
pub mod layers {
    pub use idx_flow_core::{
        Initializer, Nonlinearity, StateDict, TorchState, WeightInit, init, state_dict,
    };
    pub use idx_flow_nn::*;
}

#[cfg(any(feature = "nn", feature = "pde"))]
pub use idx_flow_core::rng;

#[cfg(feature = "spectral")]
pub use idx_flow_spectral as spectral;

#[cfg(feature = "pde")]
pub use idx_flow_pde as pde;

#[cfg(feature = "equivariant")]
pub use idx_flow_equivariant as equivariant;

#[cfg(feature = "train")]
pub use idx_flow_train::{data, distributed, models, plot, train};

/// The README's examples, compiled as doc tests so that they stay true.
#[cfg(all(
    doctest,
    feature = "train",
    feature = "spectral",
    feature = "equivariant"
))]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
