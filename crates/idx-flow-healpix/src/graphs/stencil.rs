//! The 3×3 stencil on one grid: a pixel and its 8 neighbours in a fixed compass
//! order, so that a kernel slot means a direction rather than a distance rank.

use rayon::prelude::*;

use super::ConnectionGraph;
use crate::error::Result;
use crate::geometry::{HealpixGrid, angular_distance};

impl ConnectionGraph {
    /// Each pixel of `grid` connected to itself and its 8 neighbours:
    /// slot 0 the pixel, slots 1..=8 its neighbours in healpy's order
    /// SW, W, NW, N, NE, E, SE, S ([`crate::geometry::Direction::ALL`]).
    ///
    /// For nside ≥ 2, 24 pixels (3 around each of the 8 points where only three
    /// base faces meet) lack one neighbour. Their missing slot holds the pixel
    /// itself (distance 0) with weight 0, and every other slot has weight 1: a
    /// layer that multiplies by the graph's weights then sees zero there, as
    /// NNhealpix's zero pixel does, while the index stays valid. At nside 1 the
    /// neighbour lists of healpy repeat no pixel either, with some slots missing;
    /// the same rule applies.
    ///
    /// ```
    /// use idx_flow_healpix::geometry::HealpixGrid;
    /// use idx_flow_healpix::graphs::ConnectionGraph;
    /// let g = ConnectionGraph::stencil(HealpixGrid::nested(2)?)?;
    /// assert_eq!(g.k(), 9);
    /// let zero_slots = g.weights().unwrap().iter().filter(|&&w| w == 0.0).count();
    /// assert_eq!(zero_slots, 24);
    /// # Ok::<(), idx_flow_healpix::Error>(())
    /// ```
    pub fn stencil(grid: HealpixGrid) -> Result<Self> {
        let n = grid.npix() as usize;
        let centers = grid.centers();
        let mut indices = vec![0i64; n * 9];
        let mut dist = vec![0f64; n * 9];
        let mut weights = vec![1f64; n * 9];
        indices
            .par_chunks_mut(9)
            .zip(dist.par_chunks_mut(9))
            .zip(weights.par_chunks_mut(9))
            .enumerate()
            .try_for_each(|(p, ((idx, d), w))| -> Result<()> {
                idx[0] = p as i64;
                let neighbours = grid.neighbours(p as u64)?;
                for (s, nb) in neighbours.iter().enumerate() {
                    match nb {
                        Some(q) => {
                            idx[s + 1] = *q as i64;
                            d[s + 1] = angular_distance(centers[p], centers[*q as usize]);
                        }
                        None => {
                            idx[s + 1] = p as i64;
                            w[s + 1] = 0.0;
                        }
                    }
                }
                Ok(())
            })?;
        Self::from_parts(grid, grid, 9, indices, dist, Some(weights))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Ordering;

    #[test]
    fn missing_slots_point_home_with_zero_weight() {
        for ordering in [Ordering::Ring, Ordering::Nested] {
            for nside in [2u32, 4, 8] {
                let grid = HealpixGrid::new(nside, ordering).unwrap();
                let g = ConnectionGraph::stencil(grid).unwrap();
                let w = g.weights().unwrap();
                let mut missing = 0;
                for p in 0..g.n_out() {
                    let row = g.row_indices(p);
                    assert_eq!(row[0], p as i64);
                    for s in 1..9 {
                        if w[p * 9 + s] == 0.0 {
                            missing += 1;
                            assert_eq!(row[s], p as i64);
                            assert_eq!(g.distances_rad()[p * 9 + s], 0.0);
                        } else {
                            assert_ne!(row[s], p as i64);
                            assert!(g.distances_rad()[p * 9 + s] > 0.0);
                        }
                    }
                }
                assert_eq!(missing, 24, "{grid}");
            }
        }
    }
}
