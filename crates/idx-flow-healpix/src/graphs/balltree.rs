//! scikit-learn's BallTree k-nearest query with the haversine metric,
//! repeated decision for decision, so that neighbours at exactly equal
//! distances come out in the order idx_flow 0.2.1 lists them.
//!
//! Which of several exactly tied points a BallTree query reports first is
//! decided by its tree: the order of the points inside each leaf (left by
//! `std::nth_element` as libstdc++ implements it, through scikit-learn's
//! `partition_node_indices`), the order the query visits nodes (by the
//! bound of each node's ball: centroid and radius), its max-heap of the k
//! best (a point no better than the current k-th is not taken), and the
//! sort that orders the heap at the end. Each is repeated here with the
//! same floating-point values, after scikit-learn 1.9 (the sort at the end:
//! introsort, insertion sort below 16 values).
//!
//! Every decision is a comparison, and most compare values far apart: those
//! are decided from estimates (unit-vector chords and one `asin` per node),
//! and scikit-learn's own haversine arithmetic (three `sin`, a `sqrt` and an
//! `asin` per node bound, two `sin` per point) is computed only for the
//! comparisons the estimates leave open. The decisions, and so the result,
//! are the same; the reference query that computes everything exactly is
//! kept in the tests and compared against this one.

mod heap;
mod sort;

use heap::{Heap, Lazy, clearly_below};

use super::nth_element::nth_element;

/// scikit-learn's default leaf size.
const LEAF_SIZE: usize = 40;

/// Subtrees with more points than this are built on two threads.
const PARALLEL_BUILD: usize = 20_000;

/// Absolute bound assumed on the difference between a node bound's estimate,
/// as the sine of half the angle `d − radius`, and the same sine of
/// scikit-learn's values. They agree to about 1e-15 away from the antipode;
/// the bound leaves four orders of magnitude.
const SINE_MARGIN: f64 = 1e-11;

/// `sin²(1.5)`: beyond the angle 3 rad, `asin(√r)` in scikit-learn's bound
/// amplifies rounding (its slope grows without bound at π), so bounds are
/// computed exactly there.
const NEAR_ANTIPODE: f64 = 0.994_996_248_300_222_7;

/// The haversine "reduced distance" of scikit-learn between `[lat, lon,
/// cos lat]` points (radians): `sin²(Δlat/2) + cos lat₁ cos lat₂ sin²(Δlon/2)`,
/// in its order of operations. The cosines are computed once per point: the
/// same bits as computing them per pair.
pub(super) fn rdist(x1: [f64; 3], x2: [f64; 3]) -> f64 {
    let sin_0 = (0.5 * (x1[0] - x2[0])).sin();
    let sin_1 = (0.5 * (x1[1] - x2[1])).sin();
    sin_0 * sin_0 + x1[2] * x2[2] * sin_1 * sin_1
}

fn rdist_to_dist(r: f64) -> f64 {
    2.0 * r.sqrt().asin()
}

fn dist_to_rdist(d: f64) -> f64 {
    let tmp = (0.5 * d).sin();
    tmp * tmp
}

/// The unit vector of `[lat, lon, cos lat]`.
fn unit_vector(p: [f64; 3]) -> [f64; 3] {
    [p[2] * p[1].cos(), p[2] * p[1].sin(), p[0].sin()]
}

/// A quarter of the squared chord between unit vectors: `sin²(d/2)`, the
/// reduced distance in exact arithmetic.
fn quarter_chord2(a: [f64; 3], b: [f64; 3]) -> f64 {
    let (dx, dy, dz) = (a[0] - b[0], a[1] - b[1], a[2] - b[2]);
    0.25 * (dx * dx + dy * dy + dz * dz)
}

struct Node {
    start: usize,
    end: usize,
    leaf: bool,
    /// `[lat, lon, cos lat]` of the mean of the node's points.
    centroid: [f64; 3],
    /// The centroid's unit vector, for estimates.
    centroid_unit: [f64; 3],
    radius: f64,
    /// `sin(radius/2)` and `cos(radius/2)`, for estimates.
    half_radius: [f64; 2],
}

/// A BallTree over `[lat, lon, cos lat]` points, as scikit-learn builds it
/// (leaf size 40).
pub(super) struct BallTree<'a> {
    data: &'a [[f64; 3]],
    /// Unit vectors of the points in the tree's order (`unit[p]` is point
    /// `idx[p]`'s), so that a leaf's are read in one run.
    unit: Vec<[f64; 3]>,
    idx: Vec<usize>,
    nodes: Vec<Node>,
}

/// One query point.
struct Query {
    pt: [f64; 3],
    unit: [f64; 3],
}

/// A node's lower bound for one query: scikit-learn's `min_rdist`, which is
/// `sin²(max(0, d − radius)/2)`, known as an interval `[lo, hi]` around
/// `max(0, sin((d − radius)/2))`, and exactly once a decision has needed it.
struct Bound {
    lo: f64,
    hi: f64,
    /// scikit-learn's reduced value; NaN until computed.
    exact: f64,
}

impl<'a> BallTree<'a> {
    pub(super) fn new(data: &'a [[f64; 3]]) -> Self {
        use rayon::prelude::*;
        let n = data.len();
        // int(log2(max(1, (n - 1) / leaf_size)) + 1), with true division.
        let ratio = ((n as f64 - 1.0) / LEAF_SIZE as f64).max(1.0);
        let levels = ratio.log2().floor() as u32 + 1;
        let n_nodes = (1usize << levels) - 1;
        let mut recs: Vec<Record> = data
            .par_iter()
            .enumerate()
            .map(|(index, &p)| Record {
                p,
                unit: unit_vector(p),
                index,
            })
            .collect();
        let mut built = Vec::with_capacity(n_nodes);
        if n > 0 {
            build(0, n_nodes, 0, &mut recs, &mut built);
        }
        let mut nodes: Vec<Node> = (0..n_nodes)
            .map(|_| Node {
                start: 0,
                end: 0,
                leaf: true,
                centroid: [0.0; 3],
                centroid_unit: [0.0; 3],
                radius: 0.0,
                half_radius: [0.0, 1.0],
            })
            .collect();
        for (i, node) in built {
            nodes[i] = node;
        }
        let idx = recs.iter().map(|r| r.index).collect();
        let unit = recs.iter().map(|r| r.unit).collect();
        Self {
            data,
            unit,
            idx,
            nodes,
        }
    }

    /// scikit-learn's `min_rdist`, exactly: the reduced distance from `pt`
    /// to the node's ball.
    fn min_rdist(&self, node: usize, pt: [f64; 3]) -> f64 {
        let nd = &self.nodes[node];
        let d = rdist_to_dist(rdist(pt, nd.centroid));
        dist_to_rdist(f64::max(0.0, d - nd.radius))
    }

    fn bound(&self, node: usize, q: &Query) -> Bound {
        let nd = &self.nodes[node];
        // sin(d/2) and cos(d/2) from the chord, then sin((d − radius)/2):
        // no inverse sine.
        let half_sin2 = quarter_chord2(q.unit, nd.centroid_unit).min(1.0);
        if half_sin2 > NEAR_ANTIPODE {
            return Bound {
                lo: 0.0,
                hi: f64::INFINITY,
                exact: self.min_rdist(node, q.pt),
            };
        }
        let [sin_r, cos_r] = nd.half_radius;
        let t = half_sin2.sqrt() * cos_r - (1.0 - half_sin2).sqrt() * sin_r;
        if t < -SINE_MARGIN {
            // Inside the ball: scikit-learn's bound is sin²(max(0, ·)) = 0.
            return Bound {
                lo: 0.0,
                hi: 0.0,
                exact: 0.0,
            };
        }
        Bound {
            lo: (t - SINE_MARGIN).max(0.0),
            hi: t + SINE_MARGIN,
            exact: f64::NAN,
        }
    }

    fn resolve(&self, node: usize, b: &mut Bound, q: &Query) -> f64 {
        if b.exact.is_nan() {
            b.exact = self.min_rdist(node, q.pt);
        }
        b.exact
    }

    /// scikit-learn's `lb1 <= lb2`: whether the first child is visited first.
    fn first_child_first(
        &self,
        (n1, b1): (usize, &mut Bound),
        (n2, b2): (usize, &mut Bound),
        q: &Query,
    ) -> bool {
        if b1.exact == 0.0 || b1.hi < b2.lo {
            return true;
        }
        if b1.lo > b2.hi {
            return false;
        }
        self.resolve(n1, b1, q) <= self.resolve(n2, b2, q)
    }

    /// scikit-learn's `lb > heap.largest()`: whether the node is skipped.
    fn prunes(
        &self,
        node: usize,
        b: &mut Bound,
        q: &Query,
        heap: &mut Heap,
        exact: &impl Fn(usize) -> f64,
    ) -> bool {
        if heap.largest_estimate() == f64::INFINITY || b.exact == 0.0 {
            return false;
        }
        // The bound's sine against the largest kept value's, √largest.
        let largest = heap.largest_half_sine();
        if b.lo > largest * (1.0 + 1e-9) + SINE_MARGIN {
            return true;
        }
        if b.hi < largest * (1.0 - 1e-9) - SINE_MARGIN {
            return false;
        }
        self.resolve(node, b, q) > heap.largest_exact(exact)
    }

    /// The `k` nearest points to `pt` as `(reduced distance, index)`, in
    /// the order scikit-learn's query returns them.
    pub(super) fn query(&self, pt: [f64; 3], k: usize) -> Vec<(f64, usize)> {
        let q = Query {
            pt,
            unit: unit_vector(pt),
        };
        let exact = |i: usize| rdist(pt, self.data[i]);
        let mut heap = Heap::new(k);
        let root = self.bound(0, &q);
        self.depth_first(0, &q, &mut heap, root, &exact);
        heap.into_sorted(&exact)
    }

    fn depth_first(
        &self,
        node: usize,
        q: &Query,
        heap: &mut Heap,
        mut b: Bound,
        exact: &impl Fn(usize) -> f64,
    ) {
        if self.prunes(node, &mut b, q, heap, exact) {
            return;
        }
        let nd = &self.nodes[node];
        if nd.leaf {
            let points = self.idx[nd.start..nd.end].iter();
            let mut skip_above = heap.clearly_above_largest();
            for (&i, &unit) in points.zip(&self.unit[nd.start..nd.end]) {
                let estimate = quarter_chord2(unit, q.unit);
                // Clearly no better than the largest kept: scikit-learn's
                // push would do nothing.
                if estimate > skip_above {
                    continue;
                }
                heap.push(Lazy::estimated(estimate), i, exact);
                skip_above = heap.clearly_above_largest();
            }
            return;
        }
        let (i1, i2) = (2 * node + 1, 2 * node + 2);
        let mut b1 = self.bound(i1, q);
        let mut b2 = self.bound(i2, q);
        if self.first_child_first((i1, &mut b1), (i2, &mut b2), q) {
            self.depth_first(i1, q, heap, b1, exact);
            self.depth_first(i2, q, heap, b2, exact);
        } else {
            self.depth_first(i2, q, heap, b2, exact);
            self.depth_first(i1, q, heap, b1, exact);
        }
    }
}

/// A point as the build carries it: coordinates, unit vector and index,
/// side by side, so that every pass over a node's points reads one run.
#[derive(Clone, Copy)]
struct Record {
    p: [f64; 3],
    unit: [f64; 3],
    index: usize,
}

/// Builds `node` over `recs` (the points from `start` on), as scikit-learn's
/// `_recursive_build`; pushes `(node number, node)` for it and below. The
/// records move as scikit-learn's indices do: nth_element compares the same
/// keys (coordinate, then index), so it makes the same moves.
fn build(
    node: usize,
    n_nodes: usize,
    start: usize,
    recs: &mut [Record],
    out: &mut Vec<(usize, Node)>,
) {
    let n_points = recs.len();
    let (mut info, dim) = init_node(recs, start);
    if 2 * node + 1 >= n_nodes || n_points < 2 {
        out.push((node, info));
        return;
    }
    info.leaf = false;
    out.push((node, info));
    let mid = n_points / 2;
    nth_element(recs, mid, &|a: &Record, b: &Record| {
        let (va, vb) = (a.p[dim], b.p[dim]);
        if va == vb { a.index < b.index } else { va < vb }
    });
    let (left, right) = recs.split_at_mut(mid);
    let (l, r) = (2 * node + 1, 2 * node + 2);
    if n_points > PARALLEL_BUILD {
        let mut right_out = Vec::new();
        rayon::join(
            || build(l, n_nodes, start, left, out),
            || build(r, n_nodes, start + mid, right, &mut right_out),
        );
        out.append(&mut right_out);
    } else {
        build(l, n_nodes, start, left, out);
        build(r, n_nodes, start + mid, right, out);
    }
}

/// scikit-learn's `init_node`: the mean of the points' `[lat, lon]` and the
/// largest distance to it, with the dimension of largest spread that
/// `find_node_split_dim` would pick (the first on equal spreads), in two
/// passes over the points. The largest distance is taken exactly among the
/// points whose estimate could make it, not computed for every point.
fn init_node(recs: &[Record], start: usize) -> (Node, usize) {
    let mut centroid = [0.0f64; 3];
    let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
    for r in recs {
        centroid[0] += r.p[0];
        centroid[1] += r.p[1];
        for j in 0..2 {
            lo[j] = lo[j].min(r.p[j]);
            hi[j] = hi[j].max(r.p[j]);
        }
    }
    // (The cosine is not a coordinate to split on.)
    let dim = if hi[1] - lo[1] > hi[0] - lo[0] { 1 } else { 0 };
    let n = recs.len() as f64;
    centroid[0] /= n;
    centroid[1] /= n;
    centroid[2] = centroid[0].cos();
    let centroid_unit = unit_vector(centroid);
    // The points that could be the farthest: each not clearly below the
    // largest estimate seen so far (a superset of those not clearly below
    // the final largest).
    let mut top = 0.0f64;
    let mut candidates: Vec<(f64, usize)> = Vec::new();
    for (i, r) in recs.iter().enumerate() {
        let estimate = quarter_chord2(centroid_unit, r.unit);
        if !clearly_below(estimate, top) {
            top = top.max(estimate);
            candidates.push((estimate, i));
        }
    }
    let largest = candidates
        .iter()
        .filter(|&&(estimate, _)| !clearly_below(estimate, top))
        .map(|&(_, i)| rdist(centroid, recs[i].p))
        .fold(0.0f64, f64::max);
    let radius = rdist_to_dist(largest);
    let node = Node {
        start,
        end: start + recs.len(),
        leaf: true,
        centroid,
        centroid_unit,
        radius,
        half_radius: [(0.5 * radius).sin(), (0.5 * radius).cos()],
    };
    (node, dim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graphs::idx_flow_order::idx_flow_coordinates;

    impl BallTree<'_> {
        /// scikit-learn's query with every bound and distance computed
        /// exactly, as scikit-learn computes them: the reference for
        /// [`BallTree::query`].
        fn query_reference(&self, pt: [f64; 3], k: usize) -> Vec<(f64, usize)> {
            let exact = |i: usize| rdist(pt, self.data[i]);
            let known = |v: f64| {
                let mut l = Lazy::estimated(v);
                l.set_exact(v);
                l
            };
            fn visit(
                t: &BallTree,
                node: usize,
                pt: [f64; 3],
                heap: &mut Heap,
                lb: f64,
                known: &impl Fn(f64) -> Lazy,
                exact: &impl Fn(usize) -> f64,
            ) {
                if lb > heap.largest_exact(exact) {
                    return;
                }
                let nd = &t.nodes[node];
                if nd.leaf {
                    for &i in &t.idx[nd.start..nd.end] {
                        heap.push(known(rdist(pt, t.data[i])), i, exact);
                    }
                    return;
                }
                let (i1, i2) = (2 * node + 1, 2 * node + 2);
                let (lb1, lb2) = (t.min_rdist(i1, pt), t.min_rdist(i2, pt));
                if lb1 <= lb2 {
                    visit(t, i1, pt, heap, lb1, known, exact);
                    visit(t, i2, pt, heap, lb2, known, exact);
                } else {
                    visit(t, i2, pt, heap, lb2, known, exact);
                    visit(t, i1, pt, heap, lb1, known, exact);
                }
            }
            let mut heap = Heap::new(k);
            visit(
                self,
                0,
                pt,
                &mut heap,
                self.min_rdist(0, pt),
                &known,
                &exact,
            );
            heap.into_sorted(&exact)
        }
    }

    #[test]
    fn the_query_decides_as_the_exact_reference_does() {
        let cases: [(u32, &[u32], &[usize]); 3] = [
            (8, &[4, 8, 16, 32], &[1, 4, 9, 20]),
            (16, &[4, 8, 16, 32], &[1, 4, 9, 20]),
            // A deeper tree (9 levels), as the graphs idx_flow users build.
            (32, &[16], &[9]),
        ];
        for (nside_in, outputs, ks) in cases {
            let points = idx_flow_coordinates(nside_in);
            let tree = BallTree::new(&points);
            for &nside_out in outputs {
                let queries = idx_flow_coordinates(nside_out);
                for &k in ks {
                    for (row, &q) in queries.iter().enumerate() {
                        assert_eq!(
                            tree.query(q, k),
                            tree.query_reference(q, k),
                            "nside {nside_in} -> {nside_out}, k {k}, row {row}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_radius_is_the_largest_exact_distance() {
        let points = idx_flow_coordinates(16);
        let tree = BallTree::new(&points);
        for nd in &tree.nodes {
            let largest = tree.idx[nd.start..nd.end]
                .iter()
                .map(|&i| rdist(nd.centroid, points[i]))
                .fold(0.0, f64::max);
            assert_eq!(nd.radius, rdist_to_dist(largest));
        }
    }
}
