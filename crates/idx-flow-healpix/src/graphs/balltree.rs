//! scikit-learn's BallTree k-nearest query with the haversine metric,
//! repeated step for step, so that neighbours at exactly equal distances
//! come out in the order idx_flow 0.2.1 lists them.
//!
//! Which of several exactly tied points a BallTree query reports first is
//! decided by its tree: the order of the points inside each leaf (left by
//! `std::nth_element` as libstdc++ implements it, through scikit-learn's
//! `partition_node_indices`), the order the query visits nodes (by the
//! bound of each node's ball: centroid and radius), its max-heap of the k
//! best (a point no better than the current k-th is not taken), and the
//! sort that orders the heap at the end. Each is repeated here in the
//! same order of floating-point operations, after scikit-learn 1.9 (the
//! sort at the end: introsort, insertion sort below 16 values).

use super::nth_element::nth_element;

/// scikit-learn's default leaf size.
const LEAF_SIZE: usize = 40;

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

struct Node {
    start: usize,
    end: usize,
    leaf: bool,
    /// `[lat, lon, cos lat]` of the mean of the node's points.
    centroid: [f64; 3],
    radius: f64,
}

/// A BallTree over `[lat, lon, cos lat]` points, as scikit-learn builds it
/// (leaf size 40).
pub(super) struct BallTree<'a> {
    data: &'a [[f64; 3]],
    /// Unit vectors of the points, for a cheap and safe "too far" test.
    unit: Vec<[f64; 3]>,
    idx: Vec<usize>,
    nodes: Vec<Node>,
}

/// The unit vector of `[lat, lon, cos lat]`.
fn unit_vector(p: [f64; 3]) -> [f64; 3] {
    [p[2] * p[1].cos(), p[2] * p[1].sin(), p[0].sin()]
}

/// A point whose reduced distance exceeds the heap's largest by more than
/// this relative margin (far above the rounding of either formula) cannot
/// enter the heap, so its exact reduced distance is not needed.
const FAR_MARGIN: f64 = 1e-9;

impl<'a> BallTree<'a> {
    pub(super) fn new(data: &'a [[f64; 3]]) -> Self {
        let n = data.len();
        // int(log2(max(1, (n - 1) / leaf_size)) + 1), with true division.
        let ratio = ((n as f64 - 1.0) / LEAF_SIZE as f64).max(1.0);
        let levels = ratio.log2().floor() as u32 + 1;
        let n_nodes = (1usize << levels) - 1;
        let mut tree = Self {
            data,
            unit: data.iter().map(|&p| unit_vector(p)).collect(),
            idx: (0..n).collect(),
            nodes: (0..n_nodes)
                .map(|_| Node {
                    start: 0,
                    end: 0,
                    leaf: true,
                    centroid: [0.0; 3],
                    radius: 0.0,
                })
                .collect(),
        };
        if n > 0 {
            tree.build(0, 0, n);
        }
        tree
    }

    fn build(&mut self, node: usize, start: usize, end: usize) {
        self.init_node(node, start, end);
        let n_points = end - start;
        if 2 * node + 1 >= self.nodes.len() || n_points < 2 {
            self.nodes[node].leaf = true;
            return;
        }
        self.nodes[node].leaf = false;
        let dim = self.split_dim(start, end);
        let mid = n_points / 2;
        let data = self.data;
        nth_element(&mut self.idx[start..end], mid, &|a: &usize, b: &usize| {
            let (va, vb) = (data[*a][dim], data[*b][dim]);
            if va == vb { a < b } else { va < vb }
        });
        self.build(2 * node + 1, start, start + mid);
        self.build(2 * node + 2, start + mid, end);
    }

    fn init_node(&mut self, node: usize, start: usize, end: usize) {
        let mut centroid = [0.0f64; 3];
        for &i in &self.idx[start..end] {
            centroid[0] += self.data[i][0];
            centroid[1] += self.data[i][1];
        }
        let n = (end - start) as f64;
        centroid[0] /= n;
        centroid[1] /= n;
        centroid[2] = centroid[0].cos();
        let mut radius = 0.0f64;
        for &i in &self.idx[start..end] {
            radius = radius.max(rdist(centroid, self.data[i]));
        }
        let nd = &mut self.nodes[node];
        nd.start = start;
        nd.end = end;
        nd.centroid = centroid;
        nd.radius = rdist_to_dist(radius);
    }

    /// The dimension of largest spread (the first on equal spreads).
    fn split_dim(&self, start: usize, end: usize) -> usize {
        let mut max_spread = 0.0;
        let mut j_max = 0;
        // The two coordinates (the cosine is not one).
        for j in 0..2 {
            let first = self.data[self.idx[start]][j];
            let (mut lo, mut hi) = (first, first);
            for &i in &self.idx[start + 1..end] {
                let v = self.data[i][j];
                hi = f64::max(hi, v);
                lo = f64::min(lo, v);
            }
            let spread = hi - lo;
            if spread > max_spread {
                max_spread = spread;
                j_max = j;
            }
        }
        j_max
    }

    fn min_rdist(&self, node: usize, pt: [f64; 3]) -> f64 {
        let nd = &self.nodes[node];
        let d = rdist_to_dist(rdist(pt, nd.centroid));
        dist_to_rdist(f64::max(0.0, d - nd.radius))
    }

    /// The `k` nearest points to `pt` as `(reduced distance, index)`, in
    /// the order scikit-learn's query returns them.
    pub(super) fn query(&self, pt: [f64; 3], k: usize) -> Vec<(f64, usize)> {
        let mut heap = Heap {
            dist: vec![f64::INFINITY; k],
            ind: vec![0; k],
        };
        let lb = self.min_rdist(0, pt);
        self.depth_first(0, pt, unit_vector(pt), &mut heap, lb);
        simultaneous_sort(&mut heap.dist, &mut heap.ind);
        heap.dist.into_iter().zip(heap.ind).collect()
    }

    fn depth_first(&self, node: usize, pt: [f64; 3], unit: [f64; 3], heap: &mut Heap, lb: f64) {
        let nd = &self.nodes[node];
        if lb > heap.dist[0] {
            return;
        }
        if nd.leaf {
            for &i in &self.idx[nd.start..nd.end] {
                // sin²(d/2) is a quarter of the squared chord: when that is
                // clearly above the heap's largest, scikit-learn's push
                // would do nothing, and neither do we.
                let u = self.unit[i];
                let (dx, dy, dz) = (u[0] - unit[0], u[1] - unit[1], u[2] - unit[2]);
                let approx = 0.25 * (dx * dx + dy * dy + dz * dz);
                if approx > heap.dist[0] * (1.0 + FAR_MARGIN) + 1e-300 {
                    continue;
                }
                heap.push(rdist(pt, self.data[i]), i);
            }
            return;
        }
        let (i1, i2) = (2 * node + 1, 2 * node + 2);
        let lb1 = self.min_rdist(i1, pt);
        let lb2 = self.min_rdist(i2, pt);
        if lb1 <= lb2 {
            self.depth_first(i1, pt, unit, heap, lb1);
            self.depth_first(i2, pt, unit, heap, lb2);
        } else {
            self.depth_first(i2, pt, unit, heap, lb2);
            self.depth_first(i1, pt, unit, heap, lb1);
        }
    }
}

/// scikit-learn's `NeighborsHeap` row: a max-heap of the k best.
struct Heap {
    dist: Vec<f64>,
    ind: Vec<usize>,
}

impl Heap {
    fn push(&mut self, val: f64, i_val: usize) {
        let size = self.dist.len();
        if size == 0 || val >= self.dist[0] {
            return;
        }
        self.dist[0] = val;
        self.ind[0] = i_val;
        let mut i = 0;
        loop {
            let ic1 = 2 * i + 1;
            let ic2 = ic1 + 1;
            let swap = if ic1 >= size {
                break;
            } else if ic2 >= size || self.dist[ic1] >= self.dist[ic2] {
                // Only a left child, or the larger one is the left.
                if val < self.dist[ic1] { ic1 } else { break }
            } else if val < self.dist[ic2] {
                ic2
            } else {
                break;
            };
            self.dist[i] = self.dist[swap];
            self.ind[i] = self.ind[swap];
            i = swap;
        }
        self.dist[i] = val;
        self.ind[i] = i_val;
    }
}

/// scikit-learn's `simultaneous_sort` (1.9: introsort with a two-way
/// partition around a median-of-three pivot, insertion sort from 15 values
/// down, heapsort past the depth limit).
fn simultaneous_sort(dist: &mut [f64], idx: &mut [usize]) {
    let n = dist.len();
    if n == 0 {
        return;
    }
    let maxd = 2 * (n as f64).log2() as isize;
    introsort_2way(dist, idx, maxd);
}

fn swap_both(d: &mut [f64], x: &mut [usize], i: usize, j: usize) {
    d.swap(i, j);
    x.swap(i, j);
}

fn introsort_2way(mut d: &mut [f64], mut x: &mut [usize], mut maxd: isize) {
    while d.len() > 15 {
        let n = d.len();
        if maxd <= 0 {
            heapsort(d, x);
            return;
        }
        maxd -= 1;
        // Median of three: the smallest first, the pivot last.
        let mid = n / 2;
        if d[0] > d[n - 1] {
            swap_both(d, x, 0, n - 1);
        }
        if d[n - 1] > d[mid] {
            swap_both(d, x, n - 1, mid);
            if d[0] > d[n - 1] {
                swap_both(d, x, 0, n - 1);
            }
        }
        let pivot = d[n - 1];
        let (mut i, mut j) = (1usize, n as isize - 2);
        loop {
            while (i as isize) <= j && d[i] < pivot {
                i += 1;
            }
            while (i as isize) <= j && d[j as usize] > pivot {
                j -= 1;
            }
            if i as isize >= j {
                break;
            }
            swap_both(d, x, i, j as usize);
            i += 1;
            j -= 1;
        }
        swap_both(d, x, i, n - 1);
        let (left_d, right_d) = std::mem::take(&mut d).split_at_mut(i);
        let (left_x, right_x) = std::mem::take(&mut x).split_at_mut(i);
        introsort_2way(left_d, left_x, maxd);
        d = &mut right_d[1..];
        x = &mut right_x[1..];
    }
    // Insertion sort of what is left.
    for i in 1..d.len() {
        let (tv, ti) = (d[i], x[i]);
        let mut j = i;
        while j > 0 && d[j - 1] > tv {
            d[j] = d[j - 1];
            x[j] = x[j - 1];
            j -= 1;
        }
        d[j] = tv;
        x[j] = ti;
    }
}

fn heapsort(d: &mut [f64], x: &mut [usize]) {
    let n = d.len();
    let mut start = (n - 2) / 2;
    loop {
        sift_down(d, x, start, n);
        if start == 0 {
            break;
        }
        start -= 1;
    }
    let mut end = n - 1;
    while end > 0 {
        swap_both(d, x, 0, end);
        sift_down(d, x, 0, end);
        end -= 1;
    }
}

fn sift_down(d: &mut [f64], x: &mut [usize], start: usize, end: usize) {
    let mut root = start;
    loop {
        let child = 2 * root + 1;
        let mut max = root;
        if child < end && d[max] < d[child] {
            max = child;
        }
        if child + 1 < end && d[max] < d[child + 1] {
            max = child + 1;
        }
        if max == root {
            return;
        }
        swap_both(d, x, root, max);
        root = max;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_sort_sorts_and_the_heap_keeps_the_k_smallest() {
        for n in [0usize, 1, 2, 3, 15, 16, 40, 200] {
            let mut d: Vec<f64> = (0..n).map(|i| ((i * 37 + 11) % 50) as f64).collect();
            let mut x: Vec<usize> = (0..n).collect();
            let before: Vec<(f64, usize)> = d.iter().copied().zip(x.iter().copied()).collect();
            simultaneous_sort(&mut d, &mut x);
            assert!(d.windows(2).all(|w| w[0] <= w[1]), "n {n}");
            // The same pairs, permuted.
            let mut after: Vec<(f64, usize)> = d.iter().copied().zip(x.iter().copied()).collect();
            let mut sorted_before = before.clone();
            sorted_before.sort_by_key(|p| p.1);
            after.sort_by_key(|p| p.1);
            assert_eq!(after, sorted_before);
        }
        let values: Vec<f64> = (0..300).map(|i| ((i * 37 + 11) % 50) as f64).collect();
        let mut heap = Heap {
            dist: vec![f64::INFINITY; 9],
            ind: vec![0; 9],
        };
        for (i, &v) in values.iter().enumerate() {
            heap.push(v, i);
        }
        let mut kept = heap.dist.clone();
        kept.sort_by(f64::total_cmp);
        let mut all = values.clone();
        all.sort_by(f64::total_cmp);
        assert_eq!(kept, all[..9]);
    }
}
