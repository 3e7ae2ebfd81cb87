//! scikit-learn's `NeighborsHeap` row, a max-heap of a query's k best, with
//! each candidate's exact reduced distance computed only when a comparison
//! cannot be decided from an estimate.
//!
//! Most comparisons in a query are between distances that differ by far more
//! than any rounding, and an estimate from unit vectors (a quarter of the
//! squared chord, which is `sin²(d/2)` in exact arithmetic) decides them as
//! the exact values would. Only near-equal pairs, exact ties among them, need
//! scikit-learn's own haversine, two `sin` calls each.

use super::sort::simultaneous_sort;

/// Relative bound assumed on an estimate's difference from scikit-learn's
/// value. They agree to about 1e-15 relative (1e-12 for neighbours 1e-4 rad
/// apart): the bound leaves three orders of magnitude and more.
const RELATIVE_MARGIN: f64 = 1e-9;
/// Absolute bound, for distances near zero (points that nearly coincide).
const ABSOLUTE_MARGIN: f64 = 1e-24;

/// Whether the estimate `a` is below the estimate `b` by more than both
/// estimates' bounds together, so that `a`'s exact value is below `b`'s.
pub(super) fn clearly_below(a: f64, b: f64) -> bool {
    a < b && b - a > margin(a, b)
}

/// A reduced distance known as an estimate, and exactly once a comparison has
/// needed it.
#[derive(Clone, Copy)]
pub(super) struct Lazy {
    pub(super) estimate: f64,
    /// scikit-learn's value; NaN until computed.
    exact: f64,
}

impl Lazy {
    pub(super) fn estimated(estimate: f64) -> Self {
        Self {
            estimate,
            exact: f64::NAN,
        }
    }

    /// Records the exact value (the reference query in the tests).
    #[cfg(test)]
    pub(super) fn set_exact(&mut self, exact: f64) {
        self.exact = exact;
    }

    fn resolve(&mut self, index: usize, exact: &impl Fn(usize) -> f64) -> f64 {
        if self.exact.is_nan() {
            self.exact = exact(index);
        }
        self.exact
    }
}

/// The difference two estimates must exceed for their order to be their
/// exact values' order: both estimates' bounds.
#[inline(always)]
fn margin(x: f64, y: f64) -> f64 {
    2.0 * (RELATIVE_MARGIN * x.max(y).min(f64::MAX) + ABSOLUTE_MARGIN)
}

/// Whether `a < b` holds for the exact values (`exact` gives a point's from
/// its index), computing them only when the estimates do not decide it.
fn less(a: &mut Lazy, ia: usize, b: &mut Lazy, ib: usize, exact: &impl Fn(usize) -> f64) -> bool {
    // Most pairs are far apart: decided by the estimates, in one test each
    // way (infinite estimates are the empty slots, exact already).
    let (x, y) = (a.estimate, b.estimate);
    let margin = margin(x, y);
    if y - x > margin {
        return true;
    }
    if x - y > margin {
        return false;
    }
    a.resolve(ia, exact) < b.resolve(ib, exact)
}

/// scikit-learn's `NeighborsHeap` for one query.
pub(super) struct Heap {
    dist: Vec<Lazy>,
    ind: Vec<usize>,
    /// `√` of the largest's estimate (the sine of half its angle); NaN
    /// until asked for after the largest changed.
    largest_half_sine: f64,
}

impl Heap {
    pub(super) fn new(k: usize) -> Self {
        let empty = Lazy {
            estimate: f64::INFINITY,
            exact: f64::INFINITY,
        };
        Self {
            dist: vec![empty; k],
            ind: vec![0; k],
            largest_half_sine: f64::NAN,
        }
    }

    /// The estimate of the largest kept value (infinite while fewer than k
    /// points were taken).
    pub(super) fn largest_estimate(&self) -> f64 {
        self.dist.first().map_or(f64::NEG_INFINITY, |d| d.estimate)
    }

    /// The estimate above which a point is clearly farther than the largest
    /// kept value (infinite while fewer than k points were taken): `e` with
    /// `e − largest` above both estimates' bounds.
    pub(super) fn clearly_above_largest(&self) -> f64 {
        (self.largest_estimate() + 2.0 * ABSOLUTE_MARGIN) / (1.0 - 2.0 * RELATIVE_MARGIN)
    }

    /// `√largest`: the sine of half the largest kept value's angle, from
    /// its estimate.
    pub(super) fn largest_half_sine(&mut self) -> f64 {
        if self.largest_half_sine.is_nan() {
            self.largest_half_sine = self.largest_estimate().sqrt();
        }
        self.largest_half_sine
    }

    /// The largest kept value, exactly.
    pub(super) fn largest_exact(&mut self, exact: &impl Fn(usize) -> f64) -> f64 {
        match self.dist.first_mut() {
            Some(d) => d.resolve(self.ind[0], exact),
            None => f64::NEG_INFINITY,
        }
    }

    /// scikit-learn's `push`: a value no better than the largest kept is not
    /// taken; otherwise it replaces the largest and sinks to its place.
    pub(super) fn push(&mut self, mut val: Lazy, i_val: usize, exact: &impl Fn(usize) -> f64) {
        let size = self.dist.len();
        if size == 0 {
            return;
        }
        let mut top = self.dist[0];
        let taken = less(&mut val, i_val, &mut top, self.ind[0], exact);
        self.dist[0] = top;
        if !taken {
            return;
        }
        self.largest_half_sine = f64::NAN;
        let mut i = 0;
        loop {
            let ic1 = 2 * i + 1;
            let ic2 = ic1 + 1;
            if ic1 >= size {
                break;
            }
            // scikit-learn's `ic2 >= size or dist[ic1] >= dist[ic2]`: only a
            // left child, or the larger one is the left. Estimates clearly
            // apart decide it with a select, not a branch.
            let larger = if ic2 >= size {
                ic1
            } else {
                let (x, y) = (self.dist[ic1].estimate, self.dist[ic2].estimate);
                if (x - y).abs() > margin(x, y) {
                    if x >= y { ic1 } else { ic2 }
                } else {
                    let (mut d1, mut d2) = (self.dist[ic1], self.dist[ic2]);
                    let smaller = less(&mut d1, self.ind[ic1], &mut d2, self.ind[ic2], exact);
                    (self.dist[ic1], self.dist[ic2]) = (d1, d2);
                    if smaller { ic2 } else { ic1 }
                }
            };
            let mut d = self.dist[larger];
            let go = less(&mut val, i_val, &mut d, self.ind[larger], exact);
            self.dist[larger] = d;
            if !go {
                break;
            }
            self.dist[i] = d;
            self.ind[i] = self.ind[larger];
            i = larger;
        }
        self.dist[i] = val;
        self.ind[i] = i_val;
    }

    /// The k kept as `(exact reduced distance, index)`, in the order
    /// scikit-learn's final sort leaves them.
    pub(super) fn into_sorted(mut self, exact: &impl Fn(usize) -> f64) -> Vec<(f64, usize)> {
        let mut dist: Vec<f64> = self
            .dist
            .iter_mut()
            .zip(&self.ind)
            .map(|(d, &i)| d.resolve(i, exact))
            .collect();
        simultaneous_sort(&mut dist, &mut self.ind);
        dist.into_iter().zip(self.ind).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values with many exact ties, in a scrambled order.
    fn values() -> Vec<f64> {
        (0..300)
            .map(|i| ((i * 37 + 11) % 50) as f64 * 1e-3)
            .collect()
    }

    #[test]
    fn the_heap_keeps_the_k_smallest() {
        let values = values();
        let exact = |i: usize| values[i];
        let mut heap = Heap::new(9);
        for (i, &v) in values.iter().enumerate() {
            heap.push(Lazy::estimated(v), i, &exact);
        }
        let kept: Vec<f64> = heap.into_sorted(&exact).into_iter().map(|p| p.0).collect();
        let mut all = values.clone();
        all.sort_by(f64::total_cmp);
        assert_eq!(kept, all[..9]);
    }

    #[test]
    fn estimates_within_their_bounds_decide_as_the_exact_values() {
        let values = values();
        let exact = |i: usize| values[i];
        for k in [1, 2, 9, 16, 40] {
            // Estimates off by up to 1e-12 relative (ties among them
            // included, in both directions) and the exact values themselves.
            let mut noisy = Heap::new(k);
            let mut known = Heap::new(k);
            for (i, &v) in values.iter().enumerate() {
                let wobble = 1.0 + 1e-12 * (((i * 7919) % 13) as f64 - 6.0);
                noisy.push(Lazy::estimated(v * wobble), i, &exact);
                known.push(Lazy::estimated(v), i, &exact);
            }
            let (noisy, known) = (noisy.into_sorted(&exact), known.into_sorted(&exact));
            assert_eq!(noisy, known, "k {k}");
            assert!(known.windows(2).all(|w| w[0].0 <= w[1].0));
        }
    }

    #[test]
    fn clearly_below_needs_both_margins() {
        assert!(clearly_below(1.0, 1.0 + 1e-6));
        assert!(!clearly_below(1.0, 1.0 + 1e-12));
        assert!(!clearly_below(1.0, 1.0));
        assert!(clearly_below(1.0, f64::INFINITY));
        assert!(!clearly_below(f64::INFINITY, f64::INFINITY));
    }
}
