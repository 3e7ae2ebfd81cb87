//! The exact NESTED hierarchy between two power-of-two grids: the 4^m children
//! of each coarse pixel, or the parent of each fine pixel. No search: in
//! NESTED order the children of pixel p, m levels down, are `p·4^m .. (p+1)·4^m`.

use rayon::prelude::*;

use super::ConnectionGraph;
use crate::error::{Error, Result};
use crate::geometry::{HealpixGrid, Ordering, angular_distance};

/// Number of levels between two power-of-two grids, `log2(fine / coarse)`.
fn levels(fine: HealpixGrid, coarse: HealpixGrid, what: &str) -> Result<u32> {
    let (Some(df), Some(dc)) = (fine.depth(), coarse.depth()) else {
        return Err(Error::arg(
            "grids",
            format!("{what} needs power-of-two nsides (NESTED hierarchy), got {fine} and {coarse}"),
        ));
    };
    if df < dc {
        return Err(Error::arg(
            "grids",
            format!(
                "{what} needs the fine grid's nside ({}) to be at least the coarse grid's ({})",
                fine.nside(),
                coarse.nside()
            ),
        ));
    }
    Ok((df - dc) as u32)
}

fn convert(grid: HealpixGrid, nested: u64) -> u64 {
    match grid.ordering() {
        Ordering::Nested => nested,
        // Valid: the grid has a power-of-two nside and `nested` is one of its pixels.
        Ordering::Ring => grid
            .with_ordering(Ordering::Nested)
            .and_then(|g| g.to_ring(nested))
            .unwrap_or(nested),
    }
}

impl ConnectionGraph {
    /// Each output pixel connected to its `4^m` children in the finer input
    /// grid (`nside_in = nside_out·2^m`), in NESTED order: slot `s` is child
    /// `4^m·p + s`, so slots follow the z-order curve inside the parent
    /// (slot 0 the southern child, 1 east, 2 west, 3 north for m = 1).
    ///
    /// Both nsides must be powers of two; either grid may be RING or NESTED
    /// (indices are converted). Downsampling by 2^m is then a reshape.
    ///
    /// ```
    /// use idx_flow_healpix::geometry::HealpixGrid;
    /// use idx_flow_healpix::graphs::ConnectionGraph;
    /// let g = ConnectionGraph::children(HealpixGrid::nested(8)?, HealpixGrid::nested(4)?)?;
    /// assert_eq!(g.row_indices(5), &[20, 21, 22, 23]);
    /// # Ok::<(), idx_flow_healpix::Error>(())
    /// ```
    pub fn children(input: HealpixGrid, output: HealpixGrid) -> Result<Self> {
        let m = levels(input, output, "a children graph")?;
        let k = 1usize << (2 * m);
        let n_out = output.npix() as usize;
        let cin = input.centers();
        let cout = output.centers();
        let mut indices = vec![0i64; n_out * k];
        let mut dist = vec![0f64; n_out * k];
        indices
            .par_chunks_mut(k)
            .zip(dist.par_chunks_mut(k))
            .enumerate()
            .for_each(|(p, (idx, d))| {
                let parent = match output.ordering() {
                    Ordering::Nested => p as u64,
                    Ordering::Ring => output.to_nested(p as u64).unwrap_or(p as u64),
                };
                for s in 0..k {
                    let child = convert(input, (parent << (2 * m)) + s as u64);
                    idx[s] = child as i64;
                    d[s] = angular_distance(cout[p], cin[child as usize]);
                }
            });
        Self::from_parts(input, output, k, indices, dist, None)
    }

    /// Each output pixel connected to its one parent in the coarser input grid
    /// (`nside_out = nside_in·2^m`): `k = 1`, NESTED parent `q >> 2m`.
    ///
    /// ```
    /// use idx_flow_healpix::geometry::HealpixGrid;
    /// use idx_flow_healpix::graphs::ConnectionGraph;
    /// let g = ConnectionGraph::parent(HealpixGrid::nested(4)?, HealpixGrid::nested(8)?)?;
    /// assert_eq!(g.row_indices(22), &[5]);
    /// # Ok::<(), idx_flow_healpix::Error>(())
    /// ```
    pub fn parent(input: HealpixGrid, output: HealpixGrid) -> Result<Self> {
        let m = levels(output, input, "a parent graph")?;
        let n_out = output.npix() as usize;
        let cin = input.centers();
        let cout = output.centers();
        let (indices, dist): (Vec<i64>, Vec<f64>) = (0..n_out)
            .into_par_iter()
            .map(|q| {
                let nested = match output.ordering() {
                    Ordering::Nested => q as u64,
                    Ordering::Ring => output.to_nested(q as u64).unwrap_or(q as u64),
                };
                let parent = convert(input, nested >> (2 * m));
                (
                    parent as i64,
                    angular_distance(cout[q], cin[parent as usize]),
                )
            })
            .unzip();
        Self::from_parts(input, output, 1, indices, dist, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_are_the_nearest_in_nested_and_ring() {
        for (ni, no) in [(2u32, 1u32), (8, 4), (16, 4), (8, 8)] {
            for oi in [Ordering::Nested, Ordering::Ring] {
                for oo in [Ordering::Nested, Ordering::Ring] {
                    let gi = HealpixGrid::new(ni, oi).unwrap();
                    let go = HealpixGrid::new(no, oo).unwrap();
                    let g = ConnectionGraph::children(gi, go).unwrap();
                    assert_eq!(g.k(), ((ni / no) * (ni / no)) as usize);
                    for p in 0..go.npix() {
                        for &c in g.row_indices(p as usize) {
                            // The coarse pixel containing each child's centre is p.
                            let (ct, cf) = gi.pix2ang(c as u64).unwrap();
                            assert_eq!(go.ang2pix(ct, cf).unwrap(), p);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn parent_inverts_children() {
        let coarse = HealpixGrid::ring(4).unwrap();
        let fine = HealpixGrid::nested(16).unwrap();
        let down = ConnectionGraph::children(fine, coarse).unwrap();
        let up = ConnectionGraph::parent(coarse, fine).unwrap();
        for p in 0..coarse.npix() as usize {
            for &c in down.row_indices(p) {
                assert_eq!(up.row_indices(c as usize), &[p as i64]);
            }
        }
    }

    #[test]
    fn rejects_non_hierarchical_pairs() {
        let a = HealpixGrid::ring(6).unwrap();
        let b = HealpixGrid::ring(3).unwrap();
        assert!(ConnectionGraph::children(a, b).is_err());
        let c = HealpixGrid::nested(4).unwrap();
        let d = HealpixGrid::nested(8).unwrap();
        let msg = ConnectionGraph::children(c, d).unwrap_err().to_string();
        assert!(msg.contains("at least"), "{msg}");
        assert!(ConnectionGraph::parent(d, c).is_err());
    }
}
