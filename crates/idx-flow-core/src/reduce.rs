//! Accurate sums over long axes (the rows of a batch norm, the points of a map).
//!
//! burn's CPU reductions over a leading axis accumulate sequentially, so the
//! rounding error of a sum over `M` rows grows like `M` (and so does that of
//! the gradient of anything broadcast over those rows: a bias, a batch norm's
//! scale). PyTorch sums in blocks. Here a long axis of length `m = a·b` is
//! viewed as `[a, b]` and reduced in two stages, forward (the statistic) and
//! backward (a parameter broadcast first over `a`, then over `b`, so that
//! autodiff sums its gradient in two stages too): the error grows like `a + b ≈ 2√m`.

use burn::tensor::Tensor;

/// `m = a·b` with `b` the largest divisor of `m` not above `√m` (`b = 1` for primes).
pub fn split(m: usize) -> (usize, usize) {
    let mut b = (m as f64).sqrt().floor() as usize;
    while b > 1 && !m.is_multiple_of(b) {
        b -= 1;
    }
    let b = b.max(1);
    (m / b, b)
}

/// Per-channel statistics over the rows of `[M, C]`, viewed as `[a, b, C]`.
#[derive(Clone, Copy, Debug)]
pub struct Rows {
    a: usize,
    b: usize,
    c: usize,
}

impl Rows {
    /// `m` rows of `c` channels.
    pub fn new(m: usize, c: usize) -> Self {
        let (a, b) = split(m);
        Self { a, b, c }
    }

    /// Number of rows.
    pub fn m(&self) -> usize {
        self.a * self.b
    }

    /// `[M, C]` → `[a, b, C]`.
    pub fn view(&self, x: Tensor<2>) -> Tensor<3> {
        x.reshape([self.a, self.b, self.c])
    }

    /// `[a, b, C]` → `[M, C]`.
    pub fn unview(&self, x: Tensor<3>) -> Tensor<2> {
        x.reshape([self.m(), self.c])
    }

    /// Mean over the rows, two-stage: `[a, b, C]` → `[1, 1, C]`.
    pub fn mean(&self, x: Tensor<3>) -> Tensor<3> {
        x.sum_dim(1).sum_dim(0) / self.m() as f64
    }

    /// A per-channel `[1, 1, C]` (or `[C]` reshaped) spread over `[a, 1, C]`,
    /// ready to broadcast over `b`: its gradient is summed over `b`, then `a`.
    pub fn spread(&self, s: Tensor<3>) -> Tensor<3> {
        s.expand([self.a, 1, self.c])
    }

    /// A `[C]` vector spread as [`spread`](Self::spread).
    pub fn spread_vec(&self, v: Tensor<1>) -> Tensor<3> {
        self.spread(v.reshape([1, 1, self.c]))
    }
}

/// `y + bias` over the last axis of `y`, with the bias gradient summed in two stages.
pub fn add_bias<const D: usize>(y: Tensor<D>, bias: Tensor<1>) -> Tensor<D> {
    let dims = y.dims();
    let c = dims[D - 1];
    let m: usize = dims[..D - 1].iter().product();
    let rows = Rows::new(m, c);
    let y3 = rows.view(y.reshape([m, c])) + rows.spread_vec(bias);
    rows.unview(y3).reshape(dims)
}

/// Mean over the points of `[B, N, C]`, two-stage: `[B, 1, C]`.
pub fn mean_points(x: Tensor<3>) -> Tensor<3> {
    sum_points(x.clone()) / x.dims()[1] as f64
}

/// Sum over the points of `[B, N, C]`, two-stage: `[B, 1, C]`.
pub fn sum_points(x: Tensor<3>) -> Tensor<3> {
    let [bs, n, c] = x.dims();
    let (a, b) = split(n);
    x.reshape([bs, a, b, c])
        .sum_dim(2)
        .sum_dim(1)
        .reshape([bs, 1, c])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    #[test]
    fn splits_are_exact_and_balanced() {
        assert_eq!(split(3072), (64, 48));
        assert_eq!(split(12), (4, 3));
        assert_eq!(split(7), (7, 1));
        assert_eq!(split(1), (1, 1));
        for m in 1..500 {
            let (a, b) = split(m);
            assert_eq!(a * b, m);
            assert!(b * b <= m);
        }
    }

    #[test]
    fn two_stage_sums_are_more_accurate_than_one_pass() {
        // 1 + many tiny values: a one-pass float32 sum loses them, blocks keep them.
        let device = Device::default();
        let m = 1 << 16;
        let x = Tensor::<2>::random([m, 1], Distribution::Uniform(0.0, 1e-3), &device) + 1.0;
        let exact: f64 = x
            .clone()
            .into_data()
            .iter::<f32>()
            .map(|v| v as f64)
            .sum::<f64>()
            / m as f64;
        let rows = Rows::new(m, 1);
        let two: f32 = rows.mean(rows.view(x.clone())).into_scalar();
        assert!((two as f64 - exact).abs() < 1e-6, "{two} vs {exact}");
    }
}
