//! k nearest input pixel centres of each output pixel centre, by great-circle distance.
//!
//! The input centres are bucketed by the NESTED cell (one level coarser than
//! the input grid) that contains them. Each query walks square rings of
//! buckets around its own bucket and stops once no unvisited bucket can hold a
//! centre nearer than its current k-th candidate: every point of a bucket lies
//! within `rho` of the bucket centre, and leaving the visited rings means
//! crossing a bucket of the outermost ring. The search is exact (tested against
//! brute force) and needs no tree: O(N_in + N_out·k) time and memory.
//!
//! Ranking uses the squared chord `|a − b|²` of unit vectors, which is
//! monotone in the angle and accurate for tiny separations. Ties: distances
//! equal to a relative 1e-12 count as equal and are ordered by ascending input
//! index, so the order is a pure function of the two grids.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use cdshealpix::nested::Layer;
use rayon::prelude::*;

use super::ConnectionGraph;
use crate::error::{Error, Result};
use crate::geometry::HealpixGrid;

/// Relative tolerance under which two distances count as tied.
const TIE_RELATIVE: f64 = 1e-12;
/// Rows handled per parallel task (and per progress report).
const ROWS_PER_TASK: usize = 2048;

/// Spreads the 32 bits of `v` onto the even bits of a u64.
fn spread_bits(v: u32) -> u64 {
    let mut x = v as u64;
    x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x << 2)) & 0x3333_3333_3333_3333;
    x = (x | (x << 1)) & 0x5555_5555_5555_5555;
    x
}

/// Inverse of [`spread_bits`]: gathers the even bits of `x`.
fn compact_bits(x: u64) -> u32 {
    let mut x = x & 0x5555_5555_5555_5555;
    x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
    x = (x | (x >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x >> 4)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x >> 16)) & 0x0000_0000_FFFF_FFFF;
    x as u32
}

fn chord2(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    let d0 = a[0] - b[0];
    let d1 = a[1] - b[1];
    let d2 = a[2] - b[2];
    d0 * d0 + d1 * d1 + d2 * d2
}

fn chord2_to_angle(c2: f64) -> f64 {
    2.0 * (c2.sqrt() * 0.5).min(1.0).asin()
}

fn angle_to_chord2(a: f64) -> f64 {
    let s = (0.5 * a).sin();
    4.0 * s * s
}

/// Input centres grouped by the NESTED bucket cell that contains them.
struct Buckets {
    layer: &'static Layer,
    depth: u8,
    nside: u32,
    start: Vec<usize>,
    ids: Vec<u64>,
    vecs: Vec<[f64; 3]>,
    centers: Vec<[f64; 3]>,
    /// Upper bound on the angle between a bucket centre and any point of the bucket.
    rho: f64,
}

impl Buckets {
    fn new(input: &HealpixGrid) -> Self {
        // One level coarser than the input: about four centres per bucket.
        let depth = (31 - input.nside().leading_zeros()).saturating_sub(1) as u8;
        let layer = cdshealpix::nested::get(depth);
        let nside = 1u32 << depth;
        let n_buckets = layer.n_hash() as usize;
        let t = std::time::Instant::now();
        let centers_in = input.centers();
        if std::env::var_os("IDX_FLOW_PROFILE").is_some() {
            eprintln!("centers {:?}", t.elapsed());
        }
        let bucket_of: Vec<u64> = centers_in
            .par_iter()
            .map(|v| {
                let (theta, phi) = crate::geometry::vec2ang(*v).unwrap_or((0.0, 0.0));
                layer.hash(phi, std::f64::consts::FRAC_PI_2 - theta)
            })
            .collect();
        let mut start = vec![0usize; n_buckets + 1];
        for &b in &bucket_of {
            start[b as usize + 1] += 1;
        }
        for b in 0..n_buckets {
            start[b + 1] += start[b];
        }
        let mut fill = start.clone();
        let mut ids = vec![0u64; centers_in.len()];
        let mut vecs = vec![[0.0; 3]; centers_in.len()];
        for (pix, (&b, v)) in bucket_of.iter().zip(&centers_in).enumerate() {
            let slot = fill[b as usize];
            ids[slot] = pix as u64;
            vecs[slot] = *v;
            fill[b as usize] += 1;
        }
        let centers = HealpixGrid::nested(nside)
            .map(|g| g.centers())
            .unwrap_or_default();
        // cdshealpix bounds the centre-to-vertex distance locally; take the
        // largest over the regions of the sphere and a 10% margin for curved edges.
        let mut rho: f64 = 0.0;
        for lat_deg in [
            0.0f64, 10.0, 20.0, 30.0, 41.8, 42.0, 50.0, 60.0, 70.0, 80.0, 89.0, 90.0,
        ] {
            for lon_deg in [0.0f64, 11.25, 22.5, 33.75, 45.0] {
                rho = rho.max(cdshealpix::largest_center_to_vertex_distance(
                    depth,
                    lon_deg.to_radians(),
                    lat_deg.to_radians(),
                ));
            }
        }
        Self {
            layer,
            depth,
            nside,
            start,
            ids,
            vecs,
            centers,
            rho: rho * 1.1,
        }
    }

    fn hash(&self, d0h: u64, i: u32, j: u32) -> u64 {
        (d0h << (2 * self.depth)) | spread_bits(i) | (spread_bits(j) << 1)
    }
}

/// Reusable per-thread buffers of one search.
struct Search {
    cands: Vec<(f64, u64)>,
    ring: Vec<u64>,
    next: Vec<u64>,
    visited: HashSet<u64>,
}

impl Search {
    fn new() -> Self {
        Self {
            cands: Vec::with_capacity(256),
            ring: Vec::with_capacity(64),
            next: Vec::with_capacity(64),
            visited: HashSet::new(),
        }
    }

    /// Adds the centres of `bucket`; returns the squared chord to the bucket centre.
    fn visit(&mut self, b: &Buckets, q: &[f64; 3], bucket: u64) -> f64 {
        let (s, e) = (b.start[bucket as usize], b.start[bucket as usize + 1]);
        for (id, v) in b.ids[s..e].iter().zip(&b.vecs[s..e]) {
            self.cands.push((chord2(q, v), *id));
        }
        chord2(q, &b.centers[bucket as usize])
    }

    /// True once no centre outside the visited rings can enter the k nearest.
    fn done(&mut self, b: &Buckets, k: usize, ring_min_c2: f64) -> bool {
        if self.cands.len() < k {
            return false;
        }
        let (_, kth, _) = self
            .cands
            .select_nth_unstable_by(k - 1, |x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
        let reach = chord2_to_angle(kth.0) * (1.0 + 4.0 * TIE_RELATIVE) + b.rho;
        reach < std::f64::consts::PI && ring_min_c2 > angle_to_chord2(reach)
    }

    /// The k nearest centres to `q`, written as (input index, angle) into the row slices.
    fn query(&mut self, b: &Buckets, q: &[f64; 3], k: usize, idx: &mut [i64], dist: &mut [f64]) {
        self.cands.clear();
        let lon = q[1].atan2(q[0]).rem_euclid(std::f64::consts::TAU);
        let lat = q[2].clamp(-1.0, 1.0).asin();
        let h0 = b.layer.hash(lon, lat);
        let shift = 2 * b.depth as u32;
        let d0h = h0 >> shift;
        let ij = h0 & ((1u64 << shift) - 1);
        let (i0, j0) = (compact_bits(ij) as i64, compact_bits(ij >> 1) as i64);
        let n = b.nside as i64;
        let mut ring_radius = 0i64;
        let mut in_face = true;
        loop {
            let r = ring_radius;
            let mut ring_min = f64::INFINITY;
            if in_face && i0 - r >= 0 && i0 + r < n && j0 - r >= 0 && j0 + r < n {
                // Fast path: the square ring of radius r lies inside the base face.
                if r == 0 {
                    ring_min = self.visit(b, q, h0);
                } else {
                    for t in -r..=r {
                        for (di, dj) in [(t, -r), (t, r)] {
                            let h = b.hash(d0h, (i0 + di) as u32, (j0 + dj) as u32);
                            ring_min = ring_min.min(self.visit(b, q, h));
                        }
                    }
                    for t in -r + 1..r {
                        for (di, dj) in [(-r, t), (r, t)] {
                            let h = b.hash(d0h, (i0 + di) as u32, (j0 + dj) as u32);
                            ring_min = ring_min.min(self.visit(b, q, h));
                        }
                    }
                }
            } else {
                if in_face {
                    // Leaving the face: continue as a breadth-first search from
                    // the square already visited (radius r - 1).
                    in_face = false;
                    self.visited.clear();
                    self.ring.clear();
                    let p = r - 1;
                    for di in -p..=p {
                        for dj in -p..=p {
                            let h = b.hash(d0h, (i0 + di) as u32, (j0 + dj) as u32);
                            self.visited.insert(h);
                            if di.abs() == p || dj.abs() == p {
                                self.ring.push(h);
                            }
                        }
                    }
                }
                self.next.clear();
                for &h in &self.ring {
                    let map = b.layer.neighbours(h, false);
                    for &nb in map.values_vec().iter() {
                        if self.visited.insert(nb) {
                            self.next.push(nb);
                        }
                    }
                }
                if self.next.is_empty() {
                    break; // the whole sphere has been visited
                }
                std::mem::swap(&mut self.ring, &mut self.next);
                for i in 0..self.ring.len() {
                    let h = self.ring[i];
                    ring_min = ring_min.min(self.visit(b, q, h));
                }
            }
            if self.done(b, k, ring_min) {
                break;
            }
            ring_radius += 1;
        }
        self.finish(k, idx, dist);
    }

    /// Orders the candidates by distance, ties by index, and writes the first k.
    fn finish(&mut self, k: usize, idx: &mut [i64], dist: &mut [f64]) {
        let cmp = |x: &(f64, u64), y: &(f64, u64)| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1));
        let n = self.cands.len();
        debug_assert!(n >= k);
        // Keep the k nearest plus everything tied with the k-th.
        if n > k {
            self.cands.select_nth_unstable_by(k - 1, cmp);
            let kth = self.cands[k - 1].0;
            let limit = kth + kth * 4.0 * TIE_RELATIVE;
            let mut keep = k;
            for i in k..n {
                if self.cands[i].0 <= limit {
                    self.cands.swap(keep, i);
                    keep += 1;
                }
            }
            self.cands.truncate(keep);
        }
        self.cands.sort_unstable_by(cmp);
        // Angles, then ties (relative 1e-12, chained) ordered by index.
        let angles: Vec<(f64, u64)> = self
            .cands
            .iter()
            .map(|&(c2, id)| (chord2_to_angle(c2), id))
            .collect();
        let mut out: Vec<(f64, u64)> = Vec::with_capacity(angles.len());
        let mut group_start = 0;
        for i in 1..=angles.len() {
            let tied =
                i < angles.len() && angles[i].0 - angles[i - 1].0 <= TIE_RELATIVE * angles[i].0;
            if !tied {
                let mut group = angles[group_start..i].to_vec();
                group.sort_unstable_by_key(|x| x.1);
                out.extend(group);
                group_start = i;
            }
        }
        for s in 0..k {
            idx[s] = out[s].1 as i64;
            dist[s] = out[s].0;
        }
    }
}

/// Builds the k-nearest graph; `progress` is told the number of rows done.
pub(super) fn knn(
    input: HealpixGrid,
    output: HealpixGrid,
    k: usize,
    progress: Option<&(dyn Fn(u64) + Sync)>,
) -> Result<ConnectionGraph> {
    let n_in = input.npix();
    if k == 0 || k as u64 > n_in {
        return Err(Error::InvalidK {
            k,
            expected: format!("between 1 and the {n_in} pixels of the input grid ({input})"),
        });
    }
    let n_out = output.npix() as usize;
    let t0 = std::time::Instant::now();
    let buckets = Buckets::new(&input);
    if std::env::var_os("IDX_FLOW_PROFILE").is_some() {
        eprintln!("buckets {:?}", t0.elapsed());
    }
    let mut indices = vec![0i64; n_out * k];
    let mut distances = vec![0f64; n_out * k];
    let done = AtomicU64::new(0);
    indices
        .par_chunks_mut(ROWS_PER_TASK * k)
        .zip(distances.par_chunks_mut(ROWS_PER_TASK * k))
        .enumerate()
        .for_each_init(Search::new, |search, (task, (idx, dist))| {
            let first = task * ROWS_PER_TASK;
            for r in 0..idx.len() / k {
                let q = output
                    .pix2vec((first + r) as u64)
                    .expect("row is a pixel of the output grid");
                search.query(
                    &buckets,
                    &q,
                    k,
                    &mut idx[r * k..(r + 1) * k],
                    &mut dist[r * k..(r + 1) * k],
                );
            }
            let rows = (idx.len() / k) as u64;
            let total = done.fetch_add(rows, AtomicOrdering::Relaxed) + rows;
            if let Some(report) = progress {
                report(total);
            }
        });
    ConnectionGraph::from_parts(input, output, k, indices, distances, None)
}

impl ConnectionGraph {
    /// The k input pixels nearest (by great-circle distance between pixel
    /// centres) to each output pixel centre, rows sorted by distance.
    ///
    /// Any two grids (any nside, any ordering). Ties — distances equal to a
    /// relative 1e-12, such as the four children around a coarse pixel's
    /// centre — are ordered by ascending input index. Fails with
    /// [`Error::InvalidK`] unless `1 <= k <= npix(input)`.
    pub fn knn(input: HealpixGrid, output: HealpixGrid, k: usize) -> Result<Self> {
        knn(input, output, k, None)
    }

    /// [`ConnectionGraph::knn`], reporting the number of rows finished to
    /// `progress` (called from worker threads, in increasing totals per thread).
    pub fn knn_with_progress(
        input: HealpixGrid,
        output: HealpixGrid,
        k: usize,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Self> {
        knn(input, output, k, Some(progress))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{Direction, Ordering};

    #[test]
    fn bit_interleaving_matches_cdshealpix_layout() {
        // Moving +1 in i is the NE neighbour, +1 in j the NW neighbour.
        let depth = 4u8;
        let layer = cdshealpix::nested::get(depth);
        let grid = HealpixGrid::nested(16).unwrap();
        for h in 0..layer.n_hash() {
            let d0h = h >> 8;
            let ij = h & 0xFF;
            let (i, j) = (compact_bits(ij), compact_bits(ij >> 1));
            assert_eq!((d0h << 8) | spread_bits(i) | (spread_bits(j) << 1), h);
            let nb = grid.neighbours(h).unwrap();
            if i + 1 < 16 {
                let ne = (d0h << 8) | spread_bits(i + 1) | (spread_bits(j) << 1);
                assert_eq!(nb[4], Some(ne), "NE of {h}");
            }
            if j + 1 < 16 {
                let nw = (d0h << 8) | spread_bits(i) | (spread_bits(j + 1) << 1);
                assert_eq!(nb[2], Some(nw), "NW of {h}");
            }
        }
        assert_eq!(Direction::ALL[4], Direction::NE);
    }

    /// Brute force: all input centres, sorted by (angle, index) with the same tie rule.
    fn brute(input: HealpixGrid, output: HealpixGrid, k: usize) -> (Vec<i64>, Vec<f64>) {
        let cin = input.centers();
        let mut idx = Vec::new();
        let mut dist = Vec::new();
        for q in output.centers() {
            let mut s = Search::new();
            s.cands = cin
                .iter()
                .enumerate()
                .map(|(i, v)| (chord2(&q, v), i as u64))
                .collect();
            let mut ri = vec![0; k];
            let mut rd = vec![0.0; k];
            s.finish(k, &mut ri, &mut rd);
            idx.extend(ri);
            dist.extend(rd);
        }
        (idx, dist)
    }

    #[test]
    fn equals_brute_force_on_many_grid_pairs() {
        let cases = [
            (1, Ordering::Ring, 1, Ordering::Ring, 12),
            (2, Ordering::Nested, 1, Ordering::Ring, 5),
            (3, Ordering::Ring, 5, Ordering::Ring, 4),
            (8, Ordering::Ring, 4, Ordering::Nested, 9),
            (8, Ordering::Nested, 16, Ordering::Ring, 3),
            (6, Ordering::Ring, 6, Ordering::Ring, 9),
            (16, Ordering::Nested, 8, Ordering::Nested, 4),
            (4, Ordering::Ring, 2, Ordering::Ring, 60),
            (7, Ordering::Ring, 3, Ordering::Ring, 1),
        ];
        for (ni, oi, no, oo, k) in cases {
            let gi = HealpixGrid::new(ni, oi).unwrap();
            let go = HealpixGrid::new(no, oo).unwrap();
            let g = ConnectionGraph::knn(gi, go, k).unwrap();
            let (bi, bd) = brute(gi, go, k);
            assert_eq!(g.indices(), &bi[..], "{gi} -> {go}, k={k}");
            assert_eq!(g.distances_rad(), &bd[..], "{gi} -> {go}, k={k}");
        }
    }

    #[test]
    fn k_must_fit_the_input() {
        let g = HealpixGrid::ring(1).unwrap();
        assert!(matches!(
            ConnectionGraph::knn(g, g, 0),
            Err(Error::InvalidK { k: 0, .. })
        ));
        assert!(matches!(
            ConnectionGraph::knn(g, g, 13),
            Err(Error::InvalidK { k: 13, .. })
        ));
        assert!(ConnectionGraph::knn(g, g, 12).is_ok());
    }
}
