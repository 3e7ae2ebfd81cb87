//! Invariant filter bases: every `M^D` filter of tensor key `(k, p)` that
//! `B_D` leaves unchanged (`g·F = F` for all `g`) is a combination of the
//! filters [`invariant_filters`] returns, which are ginjax's
//! `get_unique_invariant_filters(M, k, p, D, make_all_operators(D))` (default
//! `FilterScaling.NORMALIZE`, `k2_irreps_basis=True`) value for value and in
//! the same order.
//!
//! The construction is ginjax's: average every basis filter over the group,
//! drop the zero averages, scale each to unit `L1` norm, round to 5 decimals,
//! make the first non-zero entry positive, keep the distinct ones (in
//! lexicographic order), make their sum non-negative and their largest entry
//! ±1, sort by ginjax's "bigness" (tensor irreducible part for `k = 2`,
//! farthest non-empty cell in `L1` then `L2`, then norms), fix the sign of
//! scalar and vector filters (`rectify`) and scale the largest cell norm to 1.
//! For `k = 2` the basis is split by the irreducible parts of a matrix (trace,
//! antisymmetric, symmetric traceless) and the three lists are merged and
//! sorted again. Rounding and scaling are done in `f32` as JAX does, so the
//! values agree bit for bit where the arithmetic allows.
//!
//! Even `M` works too: the centre then lies between cells.
//!
//! ```
//! use idx_flow_equivariant::{invariant_filters, TensorKey};
//!
//! // 3×3 scalar filters in 2-D: centre, edge ring, corner ring.
//! let f = invariant_filters(3, TensorKey::SCALAR, 2)?;
//! assert_eq!(f.len(), 3);
//! assert_eq!(f.filter(0), &[0., 0., 0., 0., 1., 0., 0., 0., 0.]);
//! // There is no 3×3 pseudoscalar filter in 2-D.
//! assert!(invariant_filters(3, TensorKey::PSEUDOSCALAR, 2)?.is_empty());
//! # Ok::<(), idx_flow_equivariant::Error>(())
//! ```

use std::cmp::Ordering;

use burn::tensor::{Device, Tensor, TensorData};

use super::group::{GroupElement, hyperoctahedral_group};
use super::image::{TensorKey, check_d};
use crate::{Error, Result};

/// ginjax's `TINY`: tolerance of its zero tests and comparisons.
const TINY: f64 = 1e-5;

/// The invariant filters of one size `M`, key `(k, p)` and dimension `D`:
/// `len()` filters, each `M^D · D^k` values in ginjax's layout
/// `(*(M,)*D, *(D,)*k)` (row-major).
#[derive(Clone, Debug, PartialEq)]
pub struct FilterBasis {
    /// Side length `M`.
    pub size: usize,
    /// Spatial dimensions `D`.
    pub d: usize,
    /// Tensor key of the filters.
    pub key: TensorKey,
    values: Vec<f32>,
}

impl FilterBasis {
    /// Number of filters.
    pub fn len(&self) -> usize {
        self.values.len() / self.filter_len().max(1)
    }

    /// Whether there is no filter of this kind.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Values per filter: `M^D · D^k`.
    pub fn filter_len(&self) -> usize {
        self.size.pow(self.d as u32) * self.key.components(self.d)
    }

    /// Filter `i` (panics when `i >= len()`).
    pub fn filter(&self, i: usize) -> &[f32] {
        let n = self.filter_len();
        &self.values[i * n..(i + 1) * n]
    }

    /// All filters, stacked `(n, *(M,)*D, *(D,)*k)` row-major.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The shape of [`values`](Self::values): `[n, M, …, M, D, …, D]`.
    pub fn shape(&self) -> Vec<usize> {
        let mut s = vec![self.len()];
        s.extend(std::iter::repeat_n(self.size, self.d));
        s.extend(std::iter::repeat_n(self.d, self.key.k));
        s
    }

    /// The filters as a matrix `[n, M^D · D^k]` on `device`.
    pub fn to_matrix(&self, device: &Device) -> Tensor<2> {
        Tensor::from_data(
            TensorData::new(self.values.clone(), [self.len(), self.filter_len()]),
            device,
        )
    }
}

/// One filter during the construction (dense values in ginjax's layout).
type Dense = Vec<f32>;

/// The invariant filters of side `m`, key `key` in `d` (2 or 3) dimensions,
/// equal to ginjax's (see the [module docs](self)).
pub fn invariant_filters(m: usize, key: TensorKey, d: usize) -> Result<FilterBasis> {
    check_d(d)?;
    if m == 0 {
        return Err(Error::arg("filter size", "got 0, expected at least 1"));
    }
    if key.k > 4 {
        return Err(Error::arg(
            "tensor order",
            format!("got {}, expected at most 4 for filters", key.k),
        ));
    }
    let group = hyperoctahedral_group(d)?;
    let geo = Geometry::new(m, d, key);
    let filters = if key.k == 2 {
        let mut all = Vec::new();
        for part in k2_irrep_basis(&geo) {
            all.extend(unique_filters(&geo, &group, &part));
        }
        sort_filters(&geo, all)
    } else {
        let one_hot: Vec<Vec<(usize, f32)>> = (0..geo.len()).map(|i| vec![(i, 1.0)]).collect();
        unique_filters(&geo, &group, &one_hot)
    };
    Ok(FilterBasis {
        size: m,
        d,
        key,
        values: filters.concat(),
    })
}

/// Sizes and index arithmetic of a filter.
struct Geometry {
    m: usize,
    d: usize,
    key: TensorKey,
    comps: usize,
    cells: usize,
}

impl Geometry {
    fn new(m: usize, d: usize, key: TensorKey) -> Self {
        Geometry {
            m,
            d,
            key,
            comps: key.components(d),
            cells: m.pow(d as u32),
        }
    }

    fn len(&self) -> usize {
        self.cells * self.comps
    }

    /// The cell's indices, row-major.
    fn cell_index(&self, mut c: usize) -> Vec<usize> {
        let mut idx = vec![0; self.d];
        for a in (0..self.d).rev() {
            idx[a] = c % self.m;
            c /= self.m;
        }
        idx
    }

    fn cell_flat(&self, idx: &[usize]) -> usize {
        idx.iter().fold(0, |acc, &i| acc * self.m + i)
    }

    /// The cell's offset from the centre.
    fn centred(&self, c: usize) -> Vec<f64> {
        let h = (self.m as f64 - 1.0) / 2.0;
        self.cell_index(c).iter().map(|&i| i as f64 - h).collect()
    }
}

/// `g·e` of a sparse filter: where each entry goes and with which sign.
struct SparseAction {
    cell: Vec<usize>,
    comp: Vec<(usize, f32)>,
}

impl SparseAction {
    fn new(geo: &Geometry, g: &GroupElement) -> Self {
        let n = vec![geo.m; geo.d];
        let cell = (0..geo.cells)
            .map(|c| geo.cell_flat(&g.move_cell(&geo.cell_index(c), &n)))
            .collect();
        let (source, sign) = g.component_action(geo.key);
        let mut comp = vec![(0, 0.0); geo.comps];
        for (j, (&s, &v)) in source.iter().zip(&sign).enumerate() {
            comp[s] = (j, v);
        }
        SparseAction { cell, comp }
    }
}

/// ginjax's `get_unique_irrep_filters` on one basis (sparse elements).
fn unique_filters(
    geo: &Geometry,
    group: &[GroupElement],
    basis: &[Vec<(usize, f32)>],
) -> Vec<Dense> {
    let actions: Vec<SparseAction> = group.iter().map(|g| SparseAction::new(geo, g)).collect();
    let n = geo.len();
    let mut rows: Vec<Dense> = Vec::new();
    for e in basis {
        let mut row = vec![0f32; n];
        for a in &actions {
            for &(i, v) in e {
                let (c, j) = (i / geo.comps, i % geo.comps);
                let (jj, s) = a.comp[j];
                row[a.cell[c] * geo.comps + jj] += s * v;
            }
        }
        let l1: f32 = row.iter().map(|v| v.abs()).sum();
        if f64::from(l1) <= TINY {
            continue;
        }
        // XLA divides by a broadcast value as a product with its f32
        // reciprocal, which is at times one ulp off a true division.
        let inv = 1.0 / l1;
        for v in row.iter_mut() {
            *v = round5(*v * inv);
        }
        if let Some(&lead) = row.iter().find(|v| **v != 0.0)
            && lead < 0.0
        {
            row.iter_mut().for_each(|v| *v = -*v);
        }
        rows.push(row);
    }
    // np.unique(axis=0): sorted lexicographically, duplicates dropped.
    rows.sort_by(|a, b| lexicographic(a, b));
    rows.dedup_by(|a, b| lexicographic(a, b) == Ordering::Equal);
    let sums = xla_row_sums(&rows);
    let filters: Vec<Dense> = rows
        .into_iter()
        .zip(sums)
        .map(|(mut r, sum)| {
            if sum < 0.0 {
                r.iter_mut().for_each(|v| *v = -*v);
            }
            // `amps /= max`, a product with the f32 reciprocal (see above).
            let max = r.iter().fold(0f32, |m, v| m.max(v.abs()));
            let inv = 1.0 / max;
            r.iter_mut().for_each(|v| *v *= inv);
            r
        })
        .collect();
    sort_filters(geo, filters)
        .into_iter()
        .map(|f| normalize(geo, rectify(geo, f)))
        .collect()
}

/// `jnp.sum(amps, axis=1)` as XLA on the CPU computes it. Rows whose entries
/// cancel exactly get their sign from the rounding noise in ginjax, so the
/// order of the additions matters, and XLA picks it by the size of the whole
/// matrix: below 4096 entries [`window_sum`], from 4096 on [`lane_sum`]
/// (at `M = 5` the 3-D `k = 1, 2` and the 2-D `k = 3` filters cross it; at
/// `M = 3` none does).
fn xla_row_sums(rows: &[Dense]) -> Vec<f32> {
    let total: usize = rows.iter().map(Vec::len).sum();
    rows.iter()
        .map(|r| {
            if total >= 4096 {
                lane_sum(r)
            } else {
                window_sum(r)
            }
        })
        .collect()
}

fn sequential_sum(v: &[f32]) -> f32 {
    v.iter().fold(0f32, |s, &x| s + x)
}

/// XLA's own reduction: sequential up to 32 entries; longer rows padded with
/// zeros to whole windows of 32 (the padding split evenly, the smaller half
/// first), each window summed sequentially, and the window sums reduced the
/// same way (so rows of more than 1024 entries take two rounds).
fn window_sum(row: &[f32]) -> f32 {
    const W: usize = 32;
    let mut vals = row.to_vec();
    while vals.len() > W {
        let n = vals.len();
        let windows = n.div_ceil(W);
        let left = (windows * W - n) / 2;
        vals = (0..windows)
            .map(|w| {
                let lo = (w * W).saturating_sub(left);
                let hi = ((w + 1) * W).saturating_sub(left).min(n);
                sequential_sum(&vals[lo..hi])
            })
            .collect();
    }
    sequential_sum(&vals)
}

/// The reduction XLA hands to its YNNPACK fusion: 16 lanes (entry `i` goes to
/// lane `i % 16`), each a lanewise sequential sum of the 16-entry pieces of a
/// block of 64 entries; in each span of 1024 entries the 256-entry tiles (four
/// blocks, summed in order) and then the blocks left over are added in
/// order; the spans are added in order; the lanes are folded in halves
/// (`l + 8`, `l + 4`, `l + 2`, `l + 1`). Measured against jax 0.10 on the
/// CPU for rows of up to 2047 entries; longer rows take yet another order,
/// not known here, and such filters may differ from ginjax's in sign.
fn lane_sum(row: &[f32]) -> f32 {
    const L: usize = 16;
    type Lanes = [f32; L];
    let add = |acc: &mut Lanes, x: &Lanes| acc.iter_mut().zip(x).for_each(|(a, b)| *a += b);
    // Blocks start at multiples of 16, so the pieces line up with the lanes.
    let block = |lo: usize, hi: usize| -> Lanes {
        let mut acc = [0f32; L];
        for piece in row[lo..hi].chunks(L) {
            acc.iter_mut().zip(piece).for_each(|(a, b)| *a += b);
        }
        acc
    };
    let mut total = [0f32; L];
    for lo in (0..row.len()).step_by(1024) {
        let hi = (lo + 1024).min(row.len());
        let mut span = [0f32; L];
        let mut p = lo;
        while hi - p >= 256 {
            let mut tile = [0f32; L];
            for b in (p..p + 256).step_by(64) {
                add(&mut tile, &block(b, b + 64));
            }
            add(&mut span, &tile);
            p += 256;
        }
        while p < hi {
            let q = (p + 64).min(hi);
            add(&mut span, &block(p, q));
            p = q;
        }
        add(&mut total, &span);
    }
    let mut w = L;
    while w > 1 {
        w /= 2;
        let (low, high) = total.split_at_mut(w);
        low.iter_mut().zip(&high[..w]).for_each(|(a, b)| *a += b);
    }
    total[0]
}

/// `jnp.round(x, 5)` in f32: `round_half_even(x · 1e5) · (1 / 1e5)` (XLA
/// turns the division by the constant into a product with its reciprocal).
fn round5(x: f32) -> f32 {
    (x * 1e5f32).round_ties_even() * (1.0 / 1e5f32)
}

fn lexicographic(a: &[f32], b: &[f32]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        match x.partial_cmp(y) {
            Some(Ordering::Equal) | None => continue,
            Some(o) => return o,
        }
    }
    Ordering::Equal
}

/// Python's `sorted` with ginjax's `GeometricFilter.__lt__` (stable).
fn sort_filters(geo: &Geometry, filters: Vec<Dense>) -> Vec<Dense> {
    let stats: Vec<Stats> = filters.iter().map(|f| Stats::new(geo, f)).collect();
    let mut order: Vec<usize> = Vec::with_capacity(filters.len());
    for i in 0..filters.len() {
        let mut at = order.len();
        while at > 0 && stats[i].lt(&stats[order[at - 1]], geo.key.k) {
            at -= 1;
        }
        order.insert(at, i);
    }
    order.into_iter().map(|i| filters[i].clone()).collect()
}

/// What `__lt__` compares.
struct Stats {
    component: u32,
    sym: f64,
    antisym: f64,
    trace: f64,
    l1: f64,
    l2: f64,
    norm_sum: f32,
}

impl Stats {
    fn new(geo: &Geometry, f: &[f32]) -> Self {
        let (d, comps) = (geo.d, geo.comps);
        let (mut sym, mut antisym, mut trace) = (0f64, 0f64, 0f64);
        if geo.key.k == 2 {
            for c in 0..geo.cells {
                let a = |i: usize, j: usize| f64::from(f[c * comps + i * d + j]);
                let tr = (0..d).map(|i| a(i, i)).sum::<f64>() / d as f64;
                // Upper triangle with the diagonal, less its last entry.
                let mut s2 = 0.0;
                let upper: Vec<(usize, usize)> =
                    (0..d).flat_map(|i| (i..d).map(move |j| (i, j))).collect();
                for &(i, j) in &upper[..upper.len() - 1] {
                    let s = (a(i, j) + a(j, i)) / 2.0 - if i == j { tr } else { 0.0 };
                    s2 += s * s;
                }
                let mut a2 = 0.0;
                for i in 0..d {
                    for j in i + 1..d {
                        let s = (a(i, j) - a(j, i)) / 2.0;
                        a2 += s * s;
                    }
                }
                sym += s2.sqrt();
                antisym += a2.sqrt();
                trace += tr.abs();
            }
        }
        let component =
            u32::from(trace != 0.0) + 10 * u32::from(antisym != 0.0) + 100 * u32::from(sym != 0.0);
        let (mut l1, mut l2) = (0f64, 0f64);
        let mut norm_sum = 0f32;
        for c in 0..geo.cells {
            let cell = &f[c * comps..(c + 1) * comps];
            norm_sum += norm_f32(cell);
            if cell.iter().any(|v| f64::from(v.abs()) > TINY) {
                let x = geo.centred(c);
                l1 = l1.max(x.iter().map(|v| v.abs()).sum());
                l2 = l2.max(x.iter().map(|v| v * v).sum::<f64>().sqrt());
            }
        }
        Stats {
            component,
            sym,
            antisym,
            trace,
            l1,
            l2,
            norm_sum,
        }
    }

    fn lt(&self, other: &Stats, k: usize) -> bool {
        if k == 2 && self.component != other.component {
            return self.component < other.component;
        }
        if (self.l1 - other.l1).abs() > TINY {
            return self.l1 < other.l1;
        }
        if (self.l2 - other.l2).abs() > TINY {
            return self.l2 < other.l2;
        }
        if k == 2 {
            for (a, b) in [
                (self.sym, other.sym),
                (self.antisym, other.antisym),
                (self.trace, other.trace),
            ] {
                if (a - b).abs() > TINY {
                    return a < b;
                }
            }
        }
        self.norm_sum < other.norm_sum
    }
}

fn norm_f32(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

/// ginjax's `rectify`: scalar filters sum to a non-negative number, vector
/// filters point outwards (`Σ key·F ≥ 0`), 2-D pseudovector filters turn
/// anticlockwise (`Σ key × F ≥ 0`), with `key` the cell's indices.
fn rectify(geo: &Geometry, mut f: Dense) -> Dense {
    let score: f64 = match (geo.key.k, geo.key.parity, geo.d) {
        (0, _, _) => f.iter().map(|&v| f64::from(v)).sum(),
        (1, 0, _) => (0..geo.cells)
            .map(|c| {
                let idx = geo.cell_index(c);
                (0..geo.d)
                    .map(|i| idx[i] as f64 * f64::from(f[c * geo.d + i]))
                    .sum::<f64>()
            })
            .sum(),
        (1, 1, 2) => (0..geo.cells)
            .map(|c| {
                let idx = geo.cell_index(c);
                idx[0] as f64 * f64::from(f[c * 2 + 1]) - idx[1] as f64 * f64::from(f[c * 2])
            })
            .sum(),
        _ => 0.0,
    };
    if score < 0.0 {
        f.iter_mut().for_each(|v| *v = -*v);
    }
    f
}

/// ginjax's `normalize`: divide by the largest cell norm (when above `TINY`).
fn normalize(geo: &Geometry, mut f: Dense) -> Dense {
    let max = (0..geo.cells)
        .map(|c| norm_f32(&f[c * geo.comps..(c + 1) * geo.comps]))
        .fold(0f32, f32::max);
    if f64::from(max) > TINY {
        let s = (1.0 / f64::from(max)) as f32;
        f.iter_mut().for_each(|v| *v *= s);
    }
    f
}

/// ginjax's `get_k2_irrep_basis`: per cell, the trace part, the
/// antisymmetric parts and the symmetric traceless parts of a matrix.
fn k2_irrep_basis(geo: &Geometry) -> [Vec<Vec<(usize, f32)>>; 3] {
    let d = geo.d;
    let at = |c: usize, i: usize, j: usize| c * geo.comps + i * d + j;
    let (mut trace, mut anti, mut sym) = (Vec::new(), Vec::new(), Vec::new());
    for c in 0..geo.cells {
        trace.push((0..d).map(|i| (at(c, i, i), 1.0)).collect());
        for i in 0..d {
            for j in i + 1..d {
                anti.push(vec![(at(c, i, j), 1.0), (at(c, j, i), -1.0)]);
            }
        }
        for i in 0..d - 1 {
            sym.push(vec![(at(c, i, i), 1.0), (at(c, d - 1, d - 1), -1.0)]);
        }
        for i in 0..d {
            for j in i + 1..d {
                sym.push(vec![(at(c, i, j), 1.0), (at(c, j, i), 1.0)]);
            }
        }
    }
    [trace, anti, sym]
}
