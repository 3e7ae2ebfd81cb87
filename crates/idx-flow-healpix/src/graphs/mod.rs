//! Connection graphs: for each output pixel, the k input pixels that feed it,
//! with their great-circle distances and optional per-edge weights.
//!
//! Builders:
//! - [`ConnectionGraph::knn`]: the k nearest input pixel centres of each output
//!   pixel centre, between any two grids (idx_flow's `compute_connection_indices`);
//! - [`ConnectionGraph::children`] and [`ConnectionGraph::parent`]: the exact
//!   NESTED hierarchy, no search;
//! - [`ConnectionGraph::stencil`]: a pixel and its 8 neighbours in compass order.
//!
//! ```
//! use idx_flow_healpix::geometry::HealpixGrid;
//! use idx_flow_healpix::graphs::{ConnectionGraph, WeightMethod};
//!
//! let graph = ConnectionGraph::knn(HealpixGrid::ring(16)?, HealpixGrid::ring(8)?, 4)?
//!     .with_weights(WeightMethod::InverseSquare)?;
//! assert_eq!((graph.n_out(), graph.k()), (768, 4));
//! let row = graph.row_indices(0);
//! assert!(row.iter().all(|&i| (i as u64) < graph.input().npix()));
//! # Ok::<(), idx_flow_healpix::Error>(())
//! ```

mod balltree;
mod hierarchy;
mod idx_flow_order;
mod knn;
mod nth_element;
mod stencil;
mod weights;

pub use idx_flow_order::healpy_pix2ang_ring;
pub use weights::{
    Interpolation, ResolutionInfo, WeightMethod, get_weights, resolution_info, upsampling_weights,
};

use crate::error::{Error, Result};
use crate::geometry::HealpixGrid;

/// Earth radius used to turn angles into kilometres, as idx_flow does.
pub const EARTH_RADIUS_KM: f64 = 6371.0;

/// Which input pixels feed each output pixel, how far away they are, and with what weight.
///
/// All per-edge arrays are row-major `[n_out, k]`: row `p` belongs to output
/// pixel `p` (in the output grid's ordering) and its `k` slots follow the
/// builder's order (distance rank for k-nearest, z-order for children, compass
/// order for the stencil). Indices are in the input grid's ordering.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectionGraph {
    input: HealpixGrid,
    output: HealpixGrid,
    k: usize,
    indices: Vec<i64>,
    distances_rad: Vec<f64>,
    weights: Option<Vec<f64>>,
}

impl ConnectionGraph {
    /// A graph from its parts, checked: `indices` and `distances_rad` hold
    /// `npix(output)·k` entries, every index is a pixel of `input`, distances
    /// are finite and in `[0, π]`, weights (if any) are finite.
    pub fn from_parts(
        input: HealpixGrid,
        output: HealpixGrid,
        k: usize,
        indices: Vec<i64>,
        distances_rad: Vec<f64>,
        weights: Option<Vec<f64>>,
    ) -> Result<Self> {
        if k == 0 {
            return Err(Error::InvalidK {
                k,
                expected: "at least 1".into(),
            });
        }
        let n_out = output.npix() as usize;
        let edges = n_out.checked_mul(k).ok_or_else(|| Error::InvalidK {
            k,
            expected: "n_out·k to fit in memory".into(),
        })?;
        let shape = |name: &str, len: usize| -> Result<()> {
            if len == edges {
                Ok(())
            } else {
                Err(Error::Shape {
                    context: format!("connection graph {name}"),
                    expected: format!("[{n_out}, {k}] ({edges} values)"),
                    got: format!("{len} values"),
                })
            }
        };
        shape("indices", indices.len())?;
        shape("distances", distances_rad.len())?;
        let npix_in = input.npix();
        if let Some((pos, &bad)) = indices
            .iter()
            .enumerate()
            .find(|&(_, &i)| i < 0 || i as u64 >= npix_in)
        {
            return Err(Error::arg(
                "indices",
                format!(
                    "entry [{}, {}] = {bad} is not a pixel of the input grid ({input}, expected 0..{npix_in})",
                    pos / k,
                    pos % k
                ),
            ));
        }
        if let Some(&bad) = distances_rad
            .iter()
            .find(|d| !(d.is_finite() && (0.0..=std::f64::consts::PI + 1e-9).contains(*d)))
        {
            return Err(Error::arg(
                "distances",
                format!("distance {bad} rad is not an angle in [0, π]"),
            ));
        }
        if let Some(w) = &weights {
            shape("weights", w.len())?;
            if let Some(&bad) = w.iter().find(|x| !x.is_finite()) {
                return Err(Error::arg("weights", format!("weight {bad} is not finite")));
            }
        }
        Ok(Self {
            input,
            output,
            k,
            indices,
            distances_rad,
            weights,
        })
    }

    /// The grid the indices point into.
    pub fn input(&self) -> HealpixGrid {
        self.input
    }

    /// The grid whose pixels are the rows.
    pub fn output(&self) -> HealpixGrid {
        self.output
    }

    /// Number of input pixels, `12·nside_in²`.
    pub fn n_in(&self) -> usize {
        self.input.npix() as usize
    }

    /// Number of output pixels (rows), `12·nside_out²`.
    pub fn n_out(&self) -> usize {
        self.output.npix() as usize
    }

    /// Connections per output pixel.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Input pixel indices, row-major `[n_out, k]`.
    pub fn indices(&self) -> &[i64] {
        &self.indices
    }

    /// The k input pixels of output pixel `row`.
    ///
    /// # Panics
    /// If `row >= n_out`.
    pub fn row_indices(&self, row: usize) -> &[i64] {
        &self.indices[row * self.k..(row + 1) * self.k]
    }

    /// Great-circle distances in radians between output and input pixel centres, `[n_out, k]`.
    pub fn distances_rad(&self) -> &[f64] {
        &self.distances_rad
    }

    /// Great-circle distances in kilometres (Earth radius 6371 km), `[n_out, k]`.
    pub fn distances_km(&self) -> Vec<f64> {
        self.distances_rad
            .iter()
            .map(|d| d * EARTH_RADIUS_KM)
            .collect()
    }

    /// Per-edge weights `[n_out, k]`, when the graph carries them.
    pub fn weights(&self) -> Option<&[f64]> {
        self.weights.as_deref()
    }

    /// The graph with weights computed from its distances by idx_flow's
    /// `get_weights` (rows normalised to sum to one; `sigma_factor` 0.5, `epsilon` 1e-10).
    ///
    /// Replaces any weights the graph had, including a stencil's mask (whose
    /// missing slots point at the pixel itself, distance 0).
    pub fn with_weights(self, method: WeightMethod) -> Result<Self> {
        let w = get_weights(&self.distances_km(), self.k, method, 0.5, 1e-10)?;
        Ok(Self {
            weights: Some(w),
            ..self
        })
    }

    /// The graph with the given per-edge weights (`[n_out, k]`, finite), replacing any it had.
    pub fn with_custom_weights(self, weights: Vec<f64>) -> Result<Self> {
        Self::from_parts(
            self.input,
            self.output,
            self.k,
            self.indices,
            self.distances_rad,
            Some(weights),
        )
    }

    /// The graph without weights.
    pub fn without_weights(self) -> Self {
        Self {
            weights: None,
            ..self
        }
    }

    /// Smallest and largest distance in kilometres.
    pub fn distance_range_km(&self) -> (f64, f64) {
        let (lo, hi) = self
            .distances_rad
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &d| {
                (lo.min(d), hi.max(d))
            });
        (lo * EARTH_RADIUS_KM, hi * EARTH_RADIUS_KM)
    }

    /// For every input pixel, the `(row, slot)` edges that read it, as CSR:
    /// `offsets` has `n_in + 1` entries and `edges[offsets[i]..offsets[i+1]]`
    /// are the flat edge positions `row·k + slot` reading input `i`, ascending.
    ///
    /// This is the reverse graph a gather's backward pass sums over.
    pub fn reverse(&self) -> (Vec<usize>, Vec<usize>) {
        let n_in = self.n_in();
        let mut offsets = vec![0usize; n_in + 1];
        for &i in &self.indices {
            offsets[i as usize + 1] += 1;
        }
        for i in 0..n_in {
            offsets[i + 1] += offsets[i];
        }
        let mut fill = offsets.clone();
        let mut edges = vec![0usize; self.indices.len()];
        for (e, &i) in self.indices.iter().enumerate() {
            edges[fill[i as usize]] = e;
            fill[i as usize] += 1;
        }
        (offsets, edges)
    }
}
