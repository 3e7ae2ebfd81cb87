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
use std::hash::{BuildHasherDefault, Hasher};

use cdshealpix::compass_point::MainWind;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use cdshealpix::nested::Layer;
use rayon::prelude::*;

use super::ConnectionGraph;
use crate::error::{Error, Result};
use crate::geometry::{HealpixGrid, Ordering, RingCenters};

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
    /// Input centres and their indices, bucket by bucket.
    entries: Vec<([f64; 3], u64)>,
    /// CSR offsets of the buckets in `entries` and the bucket centres; `None`
    /// when nside_in is a power of two: then bucket `b` is the input pixel of
    /// NESTED index `b`, alone, and its centre is its pixel's.
    layout: Option<(Vec<usize>, Vec<[f64; 3]>)>,
    /// Upper bound on the angle between a bucket centre and any point of its
    /// bucket, anywhere on the sphere.
    rho: f64,
    /// Angular size of a bucket, to scale the local bound's cone.
    resolution: f64,
}

/// Margin on cdshealpix's centre-to-vertex bounds, for cell edges that bulge.
const RHO_MARGIN: f64 = 1.05;

impl Buckets {
    fn new(input: &HealpixGrid) -> Self {
        // The largest power of two <= nside_in: one to four centres per bucket.
        let depth = (31 - input.nside().leading_zeros()) as u8;
        let layer = cdshealpix::nested::get(depth);
        let nside = 1u32 << depth;
        let n_buckets = layer.n_hash() as usize;
        let n_in = input.npix() as usize;
        let centers = RingCenters::new(input.nside());
        let (entries, layout) = if nside == input.nside() {
            let entries = (0..n_buckets as u64)
                .into_par_iter()
                .map(|nested| {
                    let ring = layer.to_ring(nested);
                    let id = match input.ordering() {
                        Ordering::Nested => nested,
                        Ordering::Ring => ring,
                    };
                    (centers.vec(ring), id)
                })
                .collect();
            (entries, None)
        } else {
            let placed: Vec<([f64; 3], u64)> = (0..n_in as u64)
                .into_par_iter()
                .map(|p| {
                    // Not a power of two: a RING grid.
                    let (lon, lat) = input.center_lonlat(p);
                    (centers.vec(p), layer.hash(lon, lat))
                })
                .collect();
            let mut start = vec![0usize; n_buckets + 1];
            for &(_, b) in &placed {
                start[b as usize + 1] += 1;
            }
            for b in 0..n_buckets {
                start[b + 1] += start[b];
            }
            let mut fill = start.clone();
            let mut entries = vec![([0.0; 3], 0u64); n_in];
            for (pix, &(v, b)) in placed.iter().enumerate() {
                entries[fill[b as usize]] = (v, pix as u64);
                fill[b as usize] += 1;
            }
            let centers = HealpixGrid::nested(nside)
                .map(|g| g.centers())
                .unwrap_or_default();
            (entries, Some((start, centers)))
        };
        // cdshealpix bounds the centre-to-vertex distance by region; the
        // largest over the regions bounds it everywhere.
        let mut rho: f64 = 0.0;
        for lat_deg in [0.0f64, 20.0, 41.0, 41.9, 42.0, 60.0, 89.0, 90.0] {
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
            entries,
            layout,
            rho: rho * RHO_MARGIN,
            resolution: (4.0 * std::f64::consts::PI / n_buckets as f64).sqrt(),
        }
    }

    fn hash(&self, d0h: u64, i: u32, j: u32) -> u64 {
        (d0h << (2 * self.depth)) | spread_bits(i) | (spread_bits(j) << 1)
    }
}

const ALL_WINDS: [MainWind; 8] = [
    MainWind::S,
    MainWind::SE,
    MainWind::E,
    MainWind::SW,
    MainWind::NE,
    MainWind::W,
    MainWind::NW,
    MainWind::N,
];

/// A cheap hasher for bucket numbers (the default SipHash dominated the
/// breadth-first search near face edges).
#[derive(Default)]
struct BucketHasher(u64);

impl Hasher for BucketHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (v ^ (v >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Reusable per-thread buffers of one search.
struct Search {
    /// The k nearest candidates so far, ascending by (chord², index), plus any
    /// candidates tied with the k-th.
    best: Vec<(f64, u64)>,
    k: usize,
    ring: Vec<u64>,
    next: Vec<u64>,
    visited: HashSet<u64, BuildHasherDefault<BucketHasher>>,
    ordered: Vec<(f64, u64)>,
}

/// A local bound on the bucket size: valid for the buckets whose centres lie
/// within `cone` of the query.
struct LocalRho {
    rho: f64,
    cone: f64,
}

fn tie_limit(c2: f64) -> f64 {
    // Angles tie at a relative 1e-12; chords squared then at about 2e-12.
    c2 + c2 * 4.0 * TIE_RELATIVE
}

impl Search {
    fn new(k: usize) -> Self {
        Self {
            best: Vec::with_capacity(k + 8),
            k,
            ring: Vec::with_capacity(64),
            next: Vec::with_capacity(64),
            visited: HashSet::default(),
            ordered: Vec::with_capacity(k + 8),
        }
    }

    /// Offers one candidate to the running k nearest.
    fn offer(&mut self, c2: f64, id: u64) {
        let k = self.k;
        if self.best.len() >= k && c2 > tie_limit(self.best[k - 1].0) {
            return;
        }
        let pos = self
            .best
            .partition_point(|&(d, i)| d < c2 || (d == c2 && i < id));
        self.best.insert(pos, (c2, id));
        if self.best.len() > k {
            let limit = tie_limit(self.best[k - 1].0);
            while self.best.len() > k && self.best[self.best.len() - 1].0 > limit {
                self.best.pop();
            }
        }
    }

    /// Offers the centres of `bucket`; returns the squared chord to the bucket centre.
    fn visit(&mut self, b: &Buckets, q: &[f64; 3], bucket: u64) -> f64 {
        match &b.layout {
            None => {
                let (v, id) = b.entries[bucket as usize];
                let c2 = chord2(q, &v);
                self.offer(c2, id);
                c2
            }
            Some((start, centers)) => {
                let (s, e) = (start[bucket as usize], start[bucket as usize + 1]);
                for &(v, id) in &b.entries[s..e] {
                    self.offer(chord2(q, &v), id);
                }
                chord2(q, &centers[bucket as usize])
            }
        }
    }

    /// True once no centre outside the visited rings can enter the k nearest:
    /// every unvisited centre is farther than `ring_min − rho`, where
    /// `ring_min` is the nearest bucket centre of the outermost ring.
    fn done(&self, b: &Buckets, local: &LocalRho, ring_min_c2: f64, ring_max_c2: f64) -> bool {
        if self.best.len() < self.k {
            return false;
        }
        let kth = self.best[self.k - 1].0;
        let rho = if chord2_to_angle(ring_max_c2) <= local.cone {
            local.rho
        } else {
            b.rho
        };
        let reach = chord2_to_angle(tie_limit(kth)) + rho;
        reach < std::f64::consts::PI && ring_min_c2 > angle_to_chord2(reach)
    }

    /// The k nearest centres to the direction `(lon, lat)` = `q`, written as
    /// (input index, angle) into the row slices.
    #[allow(clippy::too_many_arguments)]
    fn query(
        &mut self,
        b: &Buckets,
        lon: f64,
        lat: f64,
        q: &[f64; 3],
        idx: &mut [i64],
        dist: &mut [f64],
    ) {
        self.best.clear();
        let (h0, dx, dy) = b.layer.hash_with_dxdy(lon, lat);
        let cone = 24.0 * b.resolution;
        let local = if cone < 0.5 {
            LocalRho {
                rho: RHO_MARGIN
                    * cdshealpix::largest_center_to_vertex_distance_with_radius(
                        b.depth, lon, lat, cone,
                    ),
                cone,
            }
        } else {
            LocalRho {
                rho: b.rho,
                cone: 0.0,
            }
        };
        let shift = 2 * b.depth as u32;
        let d0h = h0 >> shift;
        let ij = h0 & ((1u64 << shift) - 1);
        let (i0, j0) = (compact_bits(ij) as i64, compact_bits(ij >> 1) as i64);
        let n = b.nside as i64;
        // The core of the rings: the query's bucket, widened to two buckets
        // along an axis where the query sits near an edge, so that the rings
        // stay centred on the query (the centre of a coarser output pixel is
        // the corner of four input buckets).
        let span = |c: i64, f: f64| -> (i64, i64) {
            if f < 0.25 && c > 0 {
                (c - 1, c)
            } else if f > 0.75 && c + 1 < n {
                (c, c + 1)
            } else {
                (c, c)
            }
        };
        let (ilo, ihi) = span(i0, dx);
        let (jlo, jhi) = span(j0, dy);
        let mut ring_radius = 0i64;
        let mut in_face = true;
        loop {
            let r = ring_radius;
            let mut ring_min = f64::INFINITY;
            let mut ring_max = 0.0f64;
            let (ia, ib, ja, jb) = (ilo - r, ihi + r, jlo - r, jhi + r);
            if in_face && ia >= 0 && ib < n && ja >= 0 && jb < n {
                // Fast path: the rectangle's boundary lies inside the base face.
                for i in ia..=ib {
                    for j in [ja, jb] {
                        let c2 = self.visit(b, q, b.hash(d0h, i as u32, j as u32));
                        ring_min = ring_min.min(c2);
                        ring_max = ring_max.max(c2);
                        if ja == jb {
                            break;
                        }
                    }
                }
                for j in ja + 1..jb {
                    for i in [ia, ib] {
                        let c2 = self.visit(b, q, b.hash(d0h, i as u32, j as u32));
                        ring_min = ring_min.min(c2);
                        ring_max = ring_max.max(c2);
                        if ia == ib {
                            break;
                        }
                    }
                }
            } else {
                if in_face {
                    // Leaving the face: continue as a breadth-first search from
                    // the rectangle already visited (radius r - 1).
                    in_face = false;
                    self.visited.clear();
                    self.ring.clear();
                    let (ia, ib, ja, jb) = (ia + 1, ib - 1, ja + 1, jb - 1);
                    for i in ia..=ib {
                        for j in ja..=jb {
                            let h = b.hash(d0h, i as u32, j as u32);
                            self.visited.insert(h);
                            if i == ia || i == ib || j == ja || j == jb {
                                self.ring.push(h);
                            }
                        }
                    }
                }
                self.next.clear();
                for &h in &self.ring {
                    let map = b.layer.neighbours(h, false);
                    for dir in ALL_WINDS {
                        if let Some(&nb) = map.get(dir)
                            && self.visited.insert(nb)
                        {
                            self.next.push(nb);
                        }
                    }
                }
                if self.next.is_empty() {
                    break; // the whole sphere has been visited
                }
                std::mem::swap(&mut self.ring, &mut self.next);
                for i in 0..self.ring.len() {
                    let c2 = self.visit(b, q, self.ring[i]);
                    ring_min = ring_min.min(c2);
                    ring_max = ring_max.max(c2);
                }
            }
            if self.done(b, &local, ring_min, ring_max) {
                break;
            }
            ring_radius += 1;
        }
        self.finish(idx, dist);
    }

    /// The k nearest input pixels of output pixel `p` into `idx`, `dist`.
    fn query_pixel(
        &mut self,
        buckets: &Buckets,
        output: &HealpixGrid,
        out_centers: &RingCenters,
        p: u64,
        idx: &mut [i64],
        dist: &mut [f64],
    ) {
        let (lon, lat) = output.center_lonlat(p);
        let ring = match output.ordering() {
            Ordering::Ring => p,
            Ordering::Nested => output.to_ring(p).unwrap_or(p),
        };
        self.query(buckets, lon, lat, &out_centers.vec(ring), idx, dist);
    }

    /// Writes the k nearest as (index, angle), ties ordered by index.
    fn finish(&mut self, idx: &mut [i64], dist: &mut [f64]) {
        // Angles, then runs of ties (relative 1e-12, chained) ordered by index.
        self.ordered.clear();
        self.ordered
            .extend(self.best.iter().map(|&(c2, id)| (chord2_to_angle(c2), id)));
        let len = self.ordered.len();
        let mut group_start = 0;
        for i in 1..=len {
            let tied = i < len
                && self.ordered[i].0 - self.ordered[i - 1].0 <= TIE_RELATIVE * self.ordered[i].0;
            if !tied {
                if i - group_start > 1 {
                    self.ordered[group_start..i].sort_unstable_by_key(|x| x.1);
                }
                group_start = i;
            }
        }
        for s in 0..self.k {
            idx[s] = self.ordered[s].1 as i64;
            dist[s] = self.ordered[s].0;
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
    let buckets = Buckets::new(&input);
    let out_centers = RingCenters::new(output.nside());
    let mut indices = vec![0i64; n_out * k];
    let mut distances = vec![0f64; n_out * k];
    let done = AtomicU64::new(0);
    indices
        .par_chunks_mut(ROWS_PER_TASK * k)
        .zip(distances.par_chunks_mut(ROWS_PER_TASK * k))
        .enumerate()
        .for_each_init(
            || Search::new(k),
            |search, (task, (idx, dist))| {
                let first = task * ROWS_PER_TASK;
                for r in 0..idx.len() / k {
                    search.query_pixel(
                        &buckets,
                        &output,
                        &out_centers,
                        (first + r) as u64,
                        &mut idx[r * k..(r + 1) * k],
                        &mut dist[r * k..(r + 1) * k],
                    );
                }
                let rows = (idx.len() / k) as u64;
                let total = done.fetch_add(rows, AtomicOrdering::Relaxed) + rows;
                if let Some(report) = progress {
                    report(total);
                }
            },
        );
    ConnectionGraph::from_parts(input, output, k, indices, distances, None)
}

/// The `k` nearest input pixels of the output pixels `rows` only (indices,
/// row after row), as [`knn`] finds them.
pub(super) fn knn_rows(
    input: HealpixGrid,
    output: HealpixGrid,
    rows: &[usize],
    k: usize,
) -> Result<Vec<i64>> {
    let n_in = input.npix();
    if k == 0 || k as u64 > n_in {
        return Err(Error::InvalidK {
            k,
            expected: format!("between 1 and the {n_in} pixels of the input grid ({input})"),
        });
    }
    let buckets = Buckets::new(&input);
    let out_centers = RingCenters::new(output.nside());
    let mut indices = vec![0i64; rows.len() * k];
    let mut distances = vec![0f64; rows.len() * k];
    indices
        .par_chunks_mut(k)
        .zip(distances.par_chunks_mut(k))
        .zip(rows.par_iter())
        .for_each_init(
            || Search::new(k),
            |search, ((idx, dist), &row)| {
                search.query_pixel(&buckets, &output, &out_centers, row as u64, idx, dist);
            },
        );
    Ok(indices)
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
            let mut all: Vec<(f64, u64)> = cin
                .iter()
                .enumerate()
                .map(|(i, v)| (chord2(&q, v), i as u64))
                .collect();
            all.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
            let limit = tie_limit(all[k - 1].0);
            all.retain(|x| x.0 <= limit);
            let mut s = Search::new(k);
            s.best = all;
            let mut ri = vec![0; k];
            let mut rd = vec![0.0; k];
            s.finish(&mut ri, &mut rd);
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
            (32, Ordering::Ring, 16, Ordering::Ring, 9),
            (12, Ordering::Ring, 24, Ordering::Ring, 7),
            (16, Ordering::Nested, 16, Ordering::Ring, 25),
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
    fn equals_brute_force_on_all_small_grid_pairs() {
        let grids: Vec<HealpixGrid> = [1u32, 2, 3, 4, 5, 8]
            .iter()
            .flat_map(|&n| {
                let mut g = vec![HealpixGrid::ring(n).unwrap()];
                if n.is_power_of_two() {
                    g.push(HealpixGrid::nested(n).unwrap());
                }
                g
            })
            .collect();
        for &gi in &grids {
            for &go in &grids {
                for k in [1usize, 4, 9] {
                    if k as u64 > gi.npix() {
                        continue;
                    }
                    let g = ConnectionGraph::knn(gi, go, k).unwrap();
                    let (bi, bd) = brute(gi, go, k);
                    assert_eq!(g.indices(), &bi[..], "{gi} -> {go}, k={k}");
                    assert_eq!(g.distances_rad(), &bd[..], "{gi} -> {go}, k={k}");
                }
            }
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
