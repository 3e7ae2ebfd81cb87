//! The k-nearest graph chosen and ordered exactly as idx_flow 0.2.1 does.
//!
//! HEALPix grids put many input pixels at equal distances from an output
//! pixel (the four children of a pixel, rings of eight around it). Which of
//! them idx_flow lists first, and which it keeps at the k-th place, is decided
//! by the last bits of its arithmetic: healpy's pixel centres, numpy's degree
//! conversions (colatitude − 90° as the "latitude", longitudes folded into
//! (−180°, 180°]) and scikit-learn's haversine, compared as the "reduced
//! distance" `sin²(Δlat/2) + cos lat₁ cos lat₂ sin²(Δlon/2)`. This module
//! repeats that arithmetic in the same order of operations (the same IEEE
//! operations and the same C library's `sin`, `cos`, `acos`, `atan2`).
//!
//! Where even those bits are equal (exact ties, 12–20% of the rows of common
//! graphs), idx_flow's BallTree decides by its traversal; those rows are
//! answered by a repetition of that BallTree query ([`super::balltree`]).
//! The other rows take their candidates from the fast exact search of
//! [`super::knn`] with a margin, widened for the rows it does not separate.
//! Checked row for row against idx_flow's stored graphs (`fixture_cases`).

use rayon::prelude::*;

use super::ConnectionGraph;
use crate::error::{Error, Result};
use crate::geometry::HealpixGrid;

/// A row's k nearest as `(reduced distance, index)`, and whether its first
/// k + 1 candidates hold an exact tie.
type Ranked = (Vec<(f64, i64)>, bool);

/// Extra candidates per row taken from the fast search.
const MARGIN: usize = 3;

/// healpy's centre of RING pixel `pix` as `(theta, phi)`, in the order of
/// operations of healpix_cxx's `pix2loc` and `pix2ang` (which healpy calls),
/// so that the bits equal healpy's (tested on every fixture nside). The
/// grid's own [`HealpixGrid::pix2ang`] agrees to about 1e-15.
///
/// ```
/// use idx_flow_healpix::graphs::healpy_pix2ang_ring;
/// let (theta, phi) = healpy_pix2ang_ring(1, 0);
/// assert_eq!(theta, (2.0f64 / 3.0).acos());
/// assert_eq!(phi, std::f64::consts::FRAC_PI_4);
/// ```
pub fn healpy_pix2ang_ring(nside: u64, pix: u64) -> (f64, f64) {
    use std::f64::consts::{FRAC_PI_2, PI};
    let npix = 12 * nside * nside;
    let ncap = 2 * nside * (nside - 1);
    let fact2 = 4.0 / npix as f64;
    let fact1 = (2 * nside) as f64 * fact2;
    let (z, phi, sth) = if pix < ncap {
        let iring = (1 + (1 + 2 * pix).isqrt()) >> 1;
        let iphi = (pix + 1) - 2 * iring * (iring - 1);
        let tmp = (iring * iring) as f64 * fact2;
        let z = 1.0 - tmp;
        let sth = (z > 0.99).then(|| (tmp * (2.0 - tmp)).sqrt());
        (z, (iphi as f64 - 0.5) * FRAC_PI_2 / iring as f64, sth)
    } else if pix < npix - ncap {
        let nl4 = 4 * nside;
        let ip = pix - ncap;
        let tmp = ip / nl4;
        let iring = tmp + nside;
        let iphi = ip - nl4 * tmp + 1;
        let fodd = if (iring + nside) & 1 == 1 { 1.0 } else { 0.5 };
        let z = (2 * nside) as f64 - iring as f64;
        let z = z * fact1;
        (z, (iphi as f64 - fodd) * PI * 0.75 * fact1, None)
    } else {
        let ip = npix - pix;
        let iring = (1 + (2 * ip - 1).isqrt()) >> 1;
        let iphi = 4 * iring + 1 - (ip - 2 * iring * (iring - 1));
        let tmp = (iring * iring) as f64 * fact2;
        let z = tmp - 1.0;
        let sth = (z < -0.99).then(|| (tmp * (2.0 - tmp)).sqrt());
        (z, (iphi as f64 - 0.5) * FRAC_PI_2 / iring as f64, sth)
    };
    let theta = match sth {
        Some(s) => s.atan2(z),
        None => z.acos(),
    };
    (theta, phi)
}

/// idx_flow's `[lat, lon, cos lat]` (radians) of every RING pixel: numpy's
/// `deg2rad(rad2deg(theta) − 90)` and `deg2rad(rad2deg(phi))` with longitudes
/// above 180° moved down by 360°. The cosine is scikit-learn's `cos(x[0])`,
/// computed once per pixel (the same bits as computing it per pair).
pub(super) fn idx_flow_coordinates(nside: u32) -> Vec<[f64; 3]> {
    let rad2deg = 180.0 / std::f64::consts::PI;
    let deg2rad = std::f64::consts::PI / 180.0;
    let npix = 12 * nside as u64 * nside as u64;
    (0..npix)
        .into_par_iter()
        .map(|p| {
            let (theta, phi) = healpy_pix2ang_ring(nside as u64, p);
            let lat = theta * rad2deg - 90.0;
            let lon = phi * rad2deg;
            let lon = if lon > 180.0 { lon - 360.0 } else { lon };
            let lat = lat * deg2rad;
            [lat, lon * deg2rad, lat.cos()]
        })
        .collect()
}

use super::balltree::{BallTree, rdist as reduced};

impl ConnectionGraph {
    /// The `k` nearest RING input pixels of every RING output pixel, chosen
    /// and ordered exactly as idx_flow 0.2.1's `hp_distance` chooses them,
    /// ties included (see the module's documentation); distances in km as
    /// idx_flow returns them, to within two ulps (idx_flow takes the arcsine
    /// with numpy's own, which differs from the C library's in the last bit
    /// of some values). Several times slower than [`ConnectionGraph::knn`],
    /// which orders ties by index.
    ///
    /// ```
    /// use idx_flow_healpix::graphs::ConnectionGraph;
    /// let g = ConnectionGraph::knn_idx_flow(8, 4, 4)?;
    /// assert_eq!((g.n_out(), g.k()), (192, 4));
    /// # Ok::<(), idx_flow_healpix::Error>(())
    /// ```
    pub fn knn_idx_flow(nside_in: u32, nside_out: u32, k: usize) -> Result<Self> {
        let input = HealpixGrid::ring(nside_in)?;
        let output = HealpixGrid::ring(nside_out)?;
        let n_in = input.npix() as usize;
        if k == 0 || k > n_in {
            return Err(Error::InvalidK {
                k,
                expected: format!("1..={n_in} (the input grid's pixels)"),
            });
        }
        let cin = idx_flow_coordinates(nside_in);
        let cout = idx_flow_coordinates(nside_out);
        // Ranks a row's candidates by idx_flow's reduced distance (exact ties
        // by index) and keeps k, with whether the first k + 1 hold an exact
        // tie; None when the candidates do not clearly separate the k-th
        // from the pixels left out.
        let rank = |row: usize, candidates: &[i64]| -> Option<Ranked> {
            let q = cout[row];
            let mut ranked: Vec<(f64, i64)> = candidates
                .iter()
                .map(|&i| (reduced(q, cin[i as usize]), i))
                .collect();
            ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let last = ranked.len() - 1;
            let separated = ranked.len() == n_in || ranked[k - 1].0 < ranked[last].0 * (1.0 - 1e-9);
            separated.then(|| {
                let head = &ranked[..(k + 1).min(ranked.len())];
                let tied = head.windows(2).any(|w| w[0].0 == w[1].0);
                ranked.truncate(k);
                (ranked, tied)
            })
        };
        let wide = (k + MARGIN).min(n_in);
        let first = Self::knn(input, output, wide)?;
        let mut rows: Vec<Option<Ranked>> = (0..output.npix() as usize)
            .into_par_iter()
            .map(|row| rank(row, first.row_indices(row)))
            .collect();
        // Rows whose ties reach past the margin: again with wider margins,
        // only for them, up to the whole input grid.
        let mut wide = wide;
        while rows.iter().any(Option::is_none) {
            wide = (wide * 4).min(n_in);
            let pending: Vec<usize> = (0..rows.len()).filter(|&r| rows[r].is_none()).collect();
            let found = super::knn::knn_rows(input, output, &pending, wide)?;
            let ranked: Vec<Option<Ranked>> = pending
                .par_iter()
                .zip(found.par_chunks(wide))
                .map(|(&row, candidates)| rank(row, candidates))
                .collect();
            for (row, r) in pending.into_iter().zip(ranked) {
                rows[row] = r;
            }
        }
        // (Every row is ranked: the loop above ends when all are.)
        let ranked: Vec<Ranked> = rows.into_iter().flatten().collect();
        // Rows with an exact tie: scikit-learn's BallTree decides their
        // order (and which tied pixel is k-th) by its traversal, repeated.
        // The tree is built only when some row needs it.
        let tree = ranked
            .iter()
            .any(|(_, tied)| *tied)
            .then(|| BallTree::new(&cin));
        let rows: Vec<Vec<(f64, i64)>> = ranked
            .into_par_iter()
            .enumerate()
            .map(|(row, (ranked, tied))| match (&tree, tied) {
                (Some(tree), true) => tree
                    .query(cout[row], k)
                    .into_iter()
                    .map(|(r, i)| (r, i as i64))
                    .collect(),
                _ => ranked,
            })
            .collect();
        let mut indices = Vec::with_capacity(rows.len() * k);
        let mut distances_rad = Vec::with_capacity(rows.len() * k);
        for row in rows {
            for (r, i) in row {
                indices.push(i);
                distances_rad.push(2.0 * r.sqrt().asin());
            }
        }
        Self::from_parts(input, output, k, indices, distances_rad, None)
    }
}
