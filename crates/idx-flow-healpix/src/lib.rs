//! # idx-flow-healpix
//!
//! The HEALPix layer of idx-flow: plain functions and data, with no
//! deep-learning framework, as cdshealpix is, so that any framework or a
//! Python binding can use it.
//!
//! - [`geometry`]: HEALPix orderings, pixel centres, neighbours (on cdshealpix).
//! - [`graphs`]: [`ConnectionGraph`](graphs::ConnectionGraph) — which input
//!   pixels feed each output pixel (k nearest, NESTED children/parent, 3×3
//!   stencil), with distances and interpolation weights.
//! - [`io`]: graphs and tensors on disk (`.npz`, safetensors), written atomically.
//! - [`sht`]: spherical-harmonic transforms (`map2alm`, `alm2map`, spin-weighted and
//!   polarised) as healpy computes them.
//! - [`Error`]: the one error type of every idx-flow crate. It lives here, in
//!   the lowest crate, so that `?` crosses the crates without conversions.
//!
//! ```
//! use idx_flow_healpix::geometry::HealpixGrid;
//! use idx_flow_healpix::graphs::ConnectionGraph;
//!
//! // Which 4 pixels of nside 16 feed each pixel of nside 8 (RING, as idx_flow).
//! let graph = ConnectionGraph::knn(HealpixGrid::ring(16)?, HealpixGrid::ring(8)?, 4)?;
//! assert_eq!(graph.indices().len(), 768 * 4);
//! # Ok::<(), idx_flow_healpix::Error>(())
//! ```

#![warn(missing_docs)]

pub mod error;
pub mod geometry;
pub mod graphs;
pub mod io;
pub mod sht;

pub use error::{Error, Result};
