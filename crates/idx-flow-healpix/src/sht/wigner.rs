//! The Legendre half of the spin-weighted transforms: for one order `m`,
//! one spin `s` and a group of ring pairs, run the recursion in `l` of the
//! Wigner functions behind the spin-`±s` harmonics and hand each degree's
//! `G±_lm(θ)` of the northern rings to an accumulator.
//!
//! With `λ_a = √((2l+1)/4π)·d^l_{m,−s}(θ)` and `λ_b = (−1)^s·√((2l+1)/4π)·d^l_{m,s}(θ)`,
//! healpy's (libsharp's) gradient / curl convention reads
//! `G± = −(−1)^s·(λ_a ± λ_b)/2`, and a spin map pair `(Q, U)` is
//! `Q = Σ_lm (E·G+ + i·B·G−)·e^{imφ}`, `U = Σ_lm (B·G+ − i·E·G−)·e^{imφ}`
//! over `m = −mmax..mmax` (each map real). Those signs were fitted to
//! healpy 1.20's `alm2map_spin` for spins 1, 2 and 3, and the fixtures
//! check them.
//!
//! Both functions follow `l·√(((l+1)²−m²)((l+1)²−s²))·d_{l+1} =
//! (2l+1)(l(l+1)·cos θ − m·s')·d_l − (l+1)·√((l²−m²)(l²−s²))·d_{l−1}`
//! (`s' = ∓s`), from `l₀ = max(m, s)`, where `d^{l₀}` is a product of
//! `cos(θ/2)` and `sin(θ/2)` powers. Those starting values underflow next to
//! the poles, so each lane carries its value as `v · 2^(600·scale)` exactly
//! as the scalar recursion does (libsharp's scheme); a lane below range adds
//! nothing.
//!
//! The southern ring of a pair has `G+(π−θ) = ε·G+(θ)` and
//! `G−(π−θ) = −ε·G−(θ)` with `ε = (−1)^{l+m+s}`, so both rings share one
//! recursion, as in the scalar transform.

// Lane loops index several arrays at once, as the formulas read; they vectorise.
#![allow(clippy::needless_range_loop)]

use super::wide::{Wide, WideLanes};

/// One value per ring pair of a group; the lane count `N` is the caller's
/// (analysis and synthesis keep different amounts in registers).
pub(crate) type Lanes<const N: usize> = [f64; N];

pub(super) const SCALE_BITS: i32 = 600;
/// `2^-600`: one scale step down.
const SCALE_DOWN: f64 = f64::from_bits(((1023 - SCALE_BITS) as u64) << 52);
/// A lane still scaled down is rescaled once it passes `2^300`.
const RESCALE_ABOVE: f64 = f64::from_bits(((1023 + SCALE_BITS / 2) as u64) << 52);

/// What a spin recursion of order `m` needs beyond the rings: its first
/// degree, the norm of its starting values and the recursion's coefficients.
pub(crate) struct SpinOrder {
    pub m: usize,
    pub spin: usize,
    /// `l₀ = max(m, s)`: every function vanishes below it.
    pub l0: usize,
    /// `√((2l₀+1)/4π · C(2l₀, l₀+min(m, s)))`.
    norm: Wide,
    /// `[α_l, β_l, γ_l]` for `l = l₀..=lmax + 1`: `λ_{l+1} = (α_l·x ± β_l)·λ_l − γ_l·λ_{l−1}`
    /// (`+` for `λ_a`, `−` for `λ_b`); the recursion steps two degrees at a
    /// time and may compute values past `lmax`, which nobody reads.
    pub coef: Vec<[f64; 3]>,
}

impl SpinOrder {
    /// The recursion of order `m`, spin `spin ≥ 1`, up to `lmax ≥ max(m, spin)`.
    pub(crate) fn new(m: usize, spin: usize, lmax: usize) -> Self {
        let l0 = m.max(spin);
        let low = m.min(spin);
        // C(2l₀, l₀ + low) = Π_{k=1..l₀−low} (l₀ + low + k) / k.
        let mut binomial = Wide::new(1.0);
        for k in 1..=(l0 - low) {
            binomial = binomial.mul(Wide::new((l0 + low + k) as f64 / k as f64));
        }
        let norm = binomial
            .mul(Wide::new(
                (2 * l0 + 1) as f64 / (4.0 * std::f64::consts::PI),
            ))
            .sqrt();
        let (mf, sf) = (m as f64, spin as f64);
        let coef = (l0..lmax + 2)
            .map(|l| {
                let lf = l as f64;
                let next = lf + 1.0;
                let d = lf * ((next * next - mf * mf) * (next * next - sf * sf)).sqrt();
                let up = ((2.0 * lf + 3.0) / (2.0 * lf + 1.0)).sqrt();
                let alpha = up * (2.0 * lf + 1.0) * lf * next / d;
                let beta = up * (2.0 * lf + 1.0) * mf * sf / d;
                let gamma = if l == l0 {
                    // λ_{l₀−1} = 0: the term is absent (and its root is 0 there).
                    0.0
                } else {
                    ((2.0 * lf + 3.0) / (2.0 * lf - 1.0)).sqrt()
                        * next
                        * ((lf * lf - mf * mf) * (lf * lf - sf * sf)).sqrt()
                        / d
                };
                [alpha, beta, gamma]
            })
            .collect();
        SpinOrder {
            m,
            spin,
            l0,
            norm,
            coef,
        }
    }

    /// `λ_a` and `λ_b` at `l₀` for each lane, as `(values, scales)`, from the
    /// lanes' `cos θ` and `sin θ` (northern rings, `cos θ ≥ 0`).
    ///
    /// `λ_a = (−1)^{m+s}·K·c^{l₀−k}·t^{l₀+k}`, `λ_b = (−1)^{l₀}·K·c^{l₀+k}·t^{l₀−k}`
    /// with `c = cos(θ/2)`, `t = sin(θ/2)`, `k = min(m, s)` and `K` the norm.
    /// Inlined into the recursion, so that its lane loops run on the same
    /// wide vectors.
    #[inline(always)]
    pub(crate) fn start<const N: usize>(
        &self,
        cos: &Lanes<N>,
        sin: &Lanes<N>,
    ) -> [(Lanes<N>, Lanes<N>); 2] {
        let k = self.m.min(self.spin);
        let sign_a = if (self.m + self.spin).is_multiple_of(2) {
            1.0
        } else {
            -1.0
        };
        let sign_b = if self.l0.is_multiple_of(2) { 1.0 } else { -1.0 };
        let (mut c, mut t, mut ct) = ([0.0; N], [0.0; N], [0.0; N]);
        for i in 0..N {
            // c from 1 + cos θ (no cancellation north of the equator), t from sin θ = 2ct.
            c[i] = ((1.0 + cos[i]) / 2.0).sqrt();
            t[i] = sin[i] / (2.0 * c[i]);
            ct[i] = c[i] * t[i];
        }
        // c^{l₀−k}·t^{l₀+k} = (ct)^{l₀−k}·t^{2k} and c^{l₀+k}·t^{l₀−k} = (ct)^{l₀−k}·c^{2k}:
        // one large power shared, two small ones (k ≤ s).
        let shared = WideLanes::splat(self.norm).mul(&WideLanes::new(&ct).powi(self.l0 - k));
        let value_a = shared.mul(&WideLanes::new(&t).powi(2 * k));
        let value_b = shared.mul(&WideLanes::new(&c).powi(2 * k));
        let mut a = ([0.0; N], [0.0; N]);
        let mut b = ([0.0; N], [0.0; N]);
        for i in 0..N {
            (a.0[i], a.1[i]) = value_a.lane(i).scaled(sign_a);
            (b.0[i], b.1[i]) = value_b.lane(i).scaled(sign_b);
        }
        [a, b]
    }
}

/// What one group's recursion does at each degree.
pub(crate) trait SpinAccumulate<const N: usize> {
    /// `plus = G+_l`, `minus = G−_l` of every lane (0 for lanes below
    /// range); `EVEN` when `l + m + s` is even.
    fn add<const EVEN: bool>(&mut self, l: usize, plus: &Lanes<N>, minus: &Lanes<N>);
}

/// One function's recursion state over the lanes.
struct Track<const N: usize> {
    prev: Lanes<N>,
    cur: Lanes<N>,
    scale: Lanes<N>,
}

impl<const N: usize> Track<N> {
    /// Rescales the lanes the recursion has grown back into range; returns
    /// how many lanes are still below range.
    #[inline(always)]
    fn rescale(&mut self) -> usize {
        let mut below = 0.0;
        // Without branches, so that it runs on vectors.
        for i in 0..N {
            let grown =
                self.scale[i] < 0.0 && self.cur[i].abs().max(self.prev[i].abs()) > RESCALE_ABOVE;
            let factor = if grown { SCALE_DOWN } else { 1.0 };
            self.cur[i] *= factor;
            self.prev[i] *= factor;
            self.scale[i] += if grown { 1.0 } else { 0.0 };
            below += if self.scale[i] == 0.0 { 0.0 } else { 1.0 };
        }
        below as usize
    }

    /// The current values, zero where a lane is below range.
    #[inline(always)]
    fn weighted(&self) -> Lanes<N> {
        let mut out = [0.0; N];
        for i in 0..N {
            out[i] = if self.scale[i] == 0.0 {
                self.cur[i]
            } else {
                0.0
            };
        }
        out
    }

    #[inline(always)]
    fn step<const FMA: bool>(&mut self, x: &Lanes<N>, [alpha, beta, gamma]: [f64; 3], sign: f64) {
        for i in 0..N {
            let factor = madd::<FMA>(alpha, x[i], sign * beta);
            let next = madd::<FMA>(factor, self.cur[i], -gamma * self.prev[i]);
            self.prev[i] = self.cur[i];
            self.cur[i] = next;
        }
    }
}

#[inline(always)]
fn madd<const FMA: bool>(a: f64, b: f64, c: f64) -> f64 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// `G± = −(−1)^s·(λ_a ± λ_b)/2` of the current degree, handed to `acc`.
#[inline(always)]
fn emit<A: SpinAccumulate<N>, const N: usize, const EVEN: bool>(
    acc: &mut A,
    l: usize,
    half: f64,
    la: &Lanes<N>,
    lb: &Lanes<N>,
) {
    let mut plus = [0.0; N];
    let mut minus = [0.0; N];
    for i in 0..N {
        plus[i] = half * (la[i] + lb[i]);
        minus[i] = half * (la[i] - lb[i]);
    }
    acc.add::<EVEN>(l, &plus, &minus);
}

/// The recursion of one group from `l₀` to `lmax`: while some lane is below
/// range, one degree at a time with weights and rescaling; then two degrees
/// (an even and an odd one) at a time without checks.
#[inline(always)]
fn recurse<A: SpinAccumulate<N>, const N: usize, const FMA: bool>(
    order: &SpinOrder,
    lmax: usize,
    cos: &Lanes<N>,
    sin: &Lanes<N>,
    acc: &mut A,
) {
    let [(va, sa), (vb, sb)] = order.start(cos, sin);
    let zero = [0.0; N];
    let mut a = Track {
        prev: zero,
        cur: va,
        scale: sa,
    };
    let mut b = Track {
        prev: zero,
        cur: vb,
        scale: sb,
    };
    let half = if order.spin.is_multiple_of(2) {
        -0.5
    } else {
        0.5
    };
    let even = |l: usize| (l + order.m + order.spin).is_multiple_of(2);
    let coef = |l: usize| order.coef[l - order.l0];
    let mut l = order.l0;
    // Lanes of each function below range; while every lane of both is, the
    // degree adds nothing and only the recursion runs.
    let (mut below_a, mut below_b) = (a.rescale(), b.rescale());
    while below_a + below_b > 0 {
        if below_a < N || below_b < N {
            let (la, lb) = (a.weighted(), b.weighted());
            if even(l) {
                emit::<A, N, true>(acc, l, half, &la, &lb);
            } else {
                emit::<A, N, false>(acc, l, half, &la, &lb);
            }
        }
        if l == lmax {
            return;
        }
        a.step::<FMA>(cos, coef(l), 1.0);
        b.step::<FMA>(cos, coef(l), -1.0);
        (below_a, below_b) = (a.rescale(), b.rescale());
        l += 1;
    }
    if !even(l) {
        emit::<A, N, false>(acc, l, half, &a.cur, &b.cur);
        if l == lmax {
            return;
        }
        a.step::<FMA>(cos, coef(l), 1.0);
        b.step::<FMA>(cos, coef(l), -1.0);
        l += 1;
    }
    while l < lmax {
        emit::<A, N, true>(acc, l, half, &a.cur, &b.cur);
        a.step::<FMA>(cos, coef(l), 1.0);
        b.step::<FMA>(cos, coef(l), -1.0);
        emit::<A, N, false>(acc, l + 1, half, &a.cur, &b.cur);
        a.step::<FMA>(cos, coef(l + 1), 1.0);
        b.step::<FMA>(cos, coef(l + 1), -1.0);
        l += 2;
    }
    if l == lmax {
        emit::<A, N, true>(acc, l, half, &a.cur, &b.cur);
    }
}

/// Runs order `order.m`'s recursion from `l₀` to `lmax` over one group of
/// lanes (`cos θ`, `sin θ` of the northern rings), handing `G±_l` to `acc`,
/// on the widest vectors the CPU has.
pub(crate) fn spin_recurse<A: SpinAccumulate<N>, const N: usize>(
    order: &SpinOrder,
    lmax: usize,
    cos: &Lanes<N>,
    sin: &Lanes<N>,
    acc: &mut A,
) {
    if order.l0 > lmax {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,fma")]
        unsafe fn widest<A: SpinAccumulate<N>, const N: usize>(
            order: &SpinOrder,
            lmax: usize,
            cos: &Lanes<N>,
            sin: &Lanes<N>,
            acc: &mut A,
        ) {
            recurse::<A, N, true>(order, lmax, cos, sin, acc)
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn wide<A: SpinAccumulate<N>, const N: usize>(
            order: &SpinOrder,
            lmax: usize,
            cos: &Lanes<N>,
            sin: &Lanes<N>,
            acc: &mut A,
        ) {
            recurse::<A, N, true>(order, lmax, cos, sin, acc)
        }
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX-512F and FMA.
            return unsafe { widest(order, lmax, cos, sin, acc) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { wide(order, lmax, cos, sin, acc) };
        }
    }
    recurse::<A, N, false>(order, lmax, cos, sin, acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LANES: usize = 8;

    /// Collects `λ_a` and `λ_b` of every lane back from `G±`.
    struct Collect {
        spin: usize,
        lambdas: Vec<(usize, Lanes<LANES>, Lanes<LANES>)>,
    }

    impl SpinAccumulate<LANES> for Collect {
        fn add<const EVEN: bool>(&mut self, l: usize, plus: &Lanes<LANES>, minus: &Lanes<LANES>) {
            let sign = if self.spin.is_multiple_of(2) {
                -1.0
            } else {
                1.0
            };
            // λ_a = sign·(G+ + G−), λ_b = sign·(G+ − G−).
            let a = std::array::from_fn(|i| sign * (plus[i] + minus[i]));
            let b = std::array::from_fn(|i| sign * (plus[i] - minus[i]));
            self.lambdas.push((l, a, b));
        }
    }

    /// `Σ_{m=−l..l} |_sY_lm(θ)|² = (2l+1)/4π` (the addition theorem for spin
    /// harmonics; `|_sY_{l,−m}| = |λ_b|` of order `m`), at every degree up
    /// to 4095, from next to the pole to the equator (one lane each): the
    /// starting values, their scaling and the recursion's stability at once.
    #[test]
    fn spin_harmonics_satisfy_the_addition_theorem_to_high_degree() {
        let lmax = 4095;
        // One lane each, from next to the pole to the equator.
        let thetas: Lanes<LANES> = std::array::from_fn(|i| {
            1e-3 * (std::f64::consts::FRAC_PI_2 / 1e-3).powf(i as f64 / (LANES - 1) as f64)
        });
        let cos = thetas.map(f64::cos);
        let sin = thetas.map(f64::sin);
        for spin in [1usize, 2, 3] {
            let mut sums = vec![[0.0f64; LANES]; lmax + 1];
            for m in 0..=lmax {
                let order = SpinOrder::new(m, spin, lmax);
                let mut acc = Collect {
                    spin,
                    lambdas: Vec::new(),
                };
                spin_recurse(&order, lmax, &cos, &sin, &mut acc);
                for (l, a, b) in acc.lambdas {
                    for i in 0..LANES {
                        sums[l][i] += a[i] * a[i] + if m > 0 { b[i] * b[i] } else { 0.0 };
                    }
                }
            }
            for l in 0..=lmax {
                let want = if l < spin {
                    0.0
                } else {
                    (2 * l + 1) as f64 / (4.0 * std::f64::consts::PI)
                };
                for (i, theta) in thetas.iter().enumerate() {
                    let err = (sums[l][i] - want).abs() / want.max(1.0);
                    assert!(
                        err < 1e-10,
                        "spin {spin} θ {theta} l {l}: Σ|Y|² off by {err:e}"
                    );
                }
            }
        }
    }

    /// Degree `l₀`'s closed form against the Wigner sum formula's value for
    /// small degrees (where plain doubles hold it).
    #[test]
    fn starting_values_follow_the_wigner_formula() {
        // d^l_{m,s'}(θ) by Wigner's sum, in floats.
        fn wigner_d(l: i64, mp: i64, m: i64, theta: f64) -> f64 {
            let f = |n: i64| (1..=n).map(|k| k as f64).product::<f64>();
            let (c, s) = ((theta / 2.0).cos(), (theta / 2.0).sin());
            let mut sum = 0.0;
            for k in 0..=2 * l {
                let (a, b, cc, d) = (l + m - k, k, mp - m + k, l - mp - k);
                if a < 0 || cc < 0 || d < 0 {
                    continue;
                }
                let sign = if (mp - m + k) % 2 == 0 { 1.0 } else { -1.0 };
                sum += sign
                    * c.powi((2 * l + m - mp - 2 * k) as i32)
                    * s.powi((mp - m + 2 * k) as i32)
                    / (f(a) * f(b) * f(cc) * f(d));
            }
            sum * (f(l + mp) * f(l - mp) * f(l + m) * f(l - m)).sqrt()
        }
        let theta: f64 = 0.7;
        for spin in 1..=3usize {
            for m in 0..=6usize {
                let order = SpinOrder::new(m, spin, 12);
                let l0 = order.l0;
                let [(a, sa), (b, sb)] = order.start(&[theta.cos(); LANES], &[theta.sin(); LANES]);
                assert_eq!((sa[0], sb[0]), (0.0, 0.0));
                let n = ((2 * l0 + 1) as f64 / (4.0 * std::f64::consts::PI)).sqrt();
                let (l, m, s) = (l0 as i64, m as i64, spin as i64);
                let want_a = n * wigner_d(l, m, -s, theta);
                let want_b = if s % 2 == 0 { 1.0 } else { -1.0 } * n * wigner_d(l, m, s, theta);
                assert!(
                    (a[0] - want_a).abs() < 1e-13,
                    "s {s} m {m}: {} vs {want_a}",
                    a[0]
                );
                assert!(
                    (b[0] - want_b).abs() < 1e-13,
                    "s {s} m {m}: {} vs {want_b}",
                    b[0]
                );
            }
        }
    }

    /// The spin functions past their [`order_limit`](super::super::rings::order_limit)
    /// are negligible too, for spins 1 to 3 at nside 1024, lmax 2047: below
    /// 5e-11, as the scalar test checks for spin 0.
    #[test]
    fn skipped_spin_orders_are_negligible() {
        struct Largest(f64);
        impl SpinAccumulate<LANES> for Largest {
            fn add<const EVEN: bool>(
                &mut self,
                _l: usize,
                plus: &Lanes<LANES>,
                minus: &Lanes<LANES>,
            ) {
                for (p, m) in plus.iter().zip(minus) {
                    self.0 = self.0.max(p.abs()).max(m.abs());
                }
            }
        }
        let (nside, lmax) = (1024u32, 2047usize);
        let pairs = super::super::rings::ring_pairs(nside);
        for spin in 1..=3 {
            for group in pairs.chunks(LANES).step_by(4) {
                let mut cos = [0.0; LANES];
                let mut sin = [0.0; LANES];
                let mut limit = 0;
                for (lane, pair) in group.iter().enumerate() {
                    cos[lane] = pair.north.cos_theta;
                    sin[lane] = pair.north.sin_theta;
                    limit = limit.max(super::super::rings::order_limit(lmax, spin, &pair.north));
                }
                if group.len() < LANES || limit >= lmax {
                    continue;
                }
                let order = SpinOrder::new(limit + 1, spin, lmax);
                let mut largest = Largest(0.0);
                spin_recurse(&order, lmax, &cos, &sin, &mut largest);
                assert!(
                    largest.0 < 5e-11,
                    "spin {spin} θ {}: m {} reaches {:e}",
                    cos[0].acos(),
                    limit + 1,
                    largest.0
                );
            }
        }
    }
}
