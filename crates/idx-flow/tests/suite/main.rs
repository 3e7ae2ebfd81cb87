//! The library's integration tests, in one binary.
//!
//! Fixture-driven tests read the fixture folder from `IDX_FLOW_FIXTURES` when it
//! is set (any set made by the generators in `../shared/fixtures`), and from
//! this crate's `tests/data` otherwise, and discover their cases from the files.

mod data;
mod equivariant;
mod fixtures;
mod geometry;
#[cfg(feature = "wgpu")]
mod gpu_kernels;
mod graph_files;
mod graphs;
mod kernels;
mod layers;
mod models;
mod pde;
mod pde_archs;
mod plot;
mod rng;
mod spectral;
mod training;
