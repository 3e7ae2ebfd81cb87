//! The Legendre half of the transforms: for one order `m` and a group of
//! ring pairs, run the recursion of the normalised associated Legendre
//! functions `λ_lm(cos θ)` up through `l` and either sum `λ·phase` into the
//! coefficients (analysis) or `λ·a_lm` into the rings' phases (synthesis).
//!
//! `λ_mm = (−1)^m √(1/4π · ∏ₖ₌₁..m (2k+1)/2k) · sin^m θ` underflows a double
//! long before `m` reaches 4096 next to the poles, so each lane carries its
//! value as `v · 2^(600·scale)`: a lane with `scale < 0` is below `2^-300`
//! and contributes nothing, and it is rescaled as the recursion grows it
//! (libsharp's scheme). Lanes of one group are neighbouring rings, so they
//! come into range together; until one does, the recursion runs without
//! summing, and once all have it runs without checks.
//!
//! North and south rings of a pair share `|cos θ|`: `λ_lm(−x) = (−1)^{l+m} λ_lm(x)`,
//! so the sums use the pair's symmetric part for even `l − m` and its
//! antisymmetric part for odd `l − m`.

// Lane loops index several arrays at once, as the formulas read; they vectorise.
#![allow(clippy::needless_range_loop)]

use rustfft::num_complex::Complex64;

/// Ring pairs per group: the lanes the recursion runs on together. The
/// analysis folds its lanes to one vector once per degree, so wider groups
/// spread that over more rings: at nside 1024 (lmax 2048, one thread, lanes
/// summed per group) 32 lanes analysed in 1.74 s against 2.61 s with 16 and
/// 2.05 s with 64, whose lane arrays no longer fit the vector registers.
pub(crate) const GROUP: usize = 32;
pub(crate) type Lanes = [f64; GROUP];

const SCALE_BITS: i32 = 600;
/// `2^-600`: one scale step down.
const SCALE_DOWN: f64 = f64::from_bits(((1023 - SCALE_BITS) as u64) << 52);
/// A lane still scaled down is rescaled once it passes `2^300`.
const RESCALE_ABOVE: f64 = f64::from_bits(((1023 + SCALE_BITS / 2) as u64) << 52);

/// `√(1/4π · ∏ₖ₌₁..m (2k+1)/2k)` for `m = 0..=mmax`: `|λ_mm|` without `sin^m θ`.
pub(crate) fn diagonal_norms(mmax: usize) -> Vec<f64> {
    let mut norms = Vec::with_capacity(mmax + 1);
    let mut squared = 1.0 / (4.0 * std::f64::consts::PI);
    norms.push(squared.sqrt());
    for k in 1..=mmax {
        squared *= (2 * k + 1) as f64 / (2 * k) as f64;
        norms.push(squared.sqrt());
    }
    norms
}

/// Length of [`recursion_coefficients`]' table for one `m`.
pub(crate) fn coefficient_count(m: usize, lmax: usize) -> usize {
    lmax + 3 - m
}

/// The recursion `λ_l = a_l·x·λ_{l−1} − c_l·λ_{l−2}` for one `m`:
/// `coef[k] = [a_l, c_l]` for `l = m + 1 + k`, up to `lmax + 3` (the loops run
/// two steps at a time and may compute one value past `lmax`).
pub(crate) fn recursion_coefficients(m: usize, coef: &mut [[f64; 2]]) {
    let m2 = (m * m) as f64;
    for (k, out) in coef.iter_mut().enumerate() {
        let l = (m + 1 + k) as f64;
        let l2 = l * l;
        let a = ((4.0 * l2 - 1.0) / (l2 - m2)).sqrt();
        let lp = l - 1.0;
        let c = if k == 0 {
            0.0
        } else {
            a * ((lp * lp - m2) / (4.0 * lp * lp - 1.0)).sqrt()
        };
        *out = [a, c];
    }
}

/// `x = mant · 2^exp` with `mant ∈ [0.5, 1)`, for a positive normal `x`.
#[inline(always)]
fn frexp(x: f64) -> (f64, f64) {
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i64 - 1022;
    (
        f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52)),
        exp as f64,
    )
}

/// `2^k` for a whole `k` in the normal range.
#[inline(always)]
fn exp2i(k: f64) -> f64 {
    f64::from_bits(((k as i64 + 1023) as u64) << 52)
}

/// `λ_mm` of every lane, as `(v, scale)` with the true value `v · 2^(600·scale)`.
/// Inlined into the recursion, so that it runs on the same wide vectors.
#[inline(always)]
pub(crate) fn diagonal(m: usize, norm: f64, sin_theta: &Lanes) -> (Lanes, Lanes) {
    // sin^m θ by squaring, all lanes at once, each as mant · 2^exp so that
    // nothing underflows; the exponents are whole numbers held in doubles.
    let mut base = [0.0; GROUP];
    let mut base_exp = [0.0; GROUP];
    for i in 0..GROUP {
        (base[i], base_exp[i]) = frexp(sin_theta[i]);
    }
    let mut mant = [1.0; GROUP];
    let mut exp = [0.0; GROUP];
    let mut power = m;
    while power > 0 {
        if power & 1 == 1 {
            for i in 0..GROUP {
                let (f, e) = frexp(mant[i] * base[i]);
                mant[i] = f;
                exp[i] += base_exp[i] + e;
            }
        }
        power >>= 1;
        if power > 0 {
            for i in 0..GROUP {
                let (f, e) = frexp(base[i] * base[i]);
                base[i] = f;
                base_exp[i] = 2.0 * base_exp[i] + e;
            }
        }
    }
    let sign = if m % 2 == 1 { -norm } else { norm };
    let mut values = [0.0; GROUP];
    let mut scales = [0.0; GROUP];
    for i in 0..GROUP {
        // floor((exp + 300) / 600) in integers: `f64::floor` is a libm call
        // on the baseline target, and exp is a whole number.
        let scale = (exp[i] as i64 + (SCALE_BITS / 2) as i64).div_euclid(SCALE_BITS as i64) as f64;
        values[i] = sign * mant[i] * exp2i(exp[i] - SCALE_BITS as f64 * scale);
        scales[i] = scale;
    }
    (values, scales)
}

/// One pair group's phases at one `m`: `sym = north + south`, `anti = north − south`.
/// Aligned to a cache line, as [`LaneSums`]: the synthesis loads and stores
/// its lanes as whole vectors at every degree.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct GroupPhases {
    pub sym_re: Lanes,
    pub sym_im: Lanes,
    pub anti_re: Lanes,
    pub anti_im: Lanes,
}

// By hand: the standard library derives `Default` only for arrays of at most 32.
impl Default for GroupPhases {
    fn default() -> Self {
        let zero = [0.0; GROUP];
        GroupPhases {
            sym_re: zero,
            sym_im: zero,
            anti_re: zero,
            anti_im: zero,
        }
    }
}

#[inline(always)]
fn madd<const FMA: bool>(a: f64, b: f64, c: f64) -> f64 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// Two recursion steps: `lo = λ_l, hi = λ_{l+1}` become `λ_{l+2}, λ_{l+3}`.
#[inline(always)]
fn step2<const FMA: bool>(
    x: &Lanes,
    lo: &mut Lanes,
    hi: &mut Lanes,
    next: [f64; 2],
    after: [f64; 2],
) {
    for i in 0..GROUP {
        lo[i] = madd::<FMA>(next[0] * x[i], hi[i], -next[1] * lo[i]);
    }
    for i in 0..GROUP {
        hi[i] = madd::<FMA>(after[0] * x[i], lo[i], -after[1] * hi[i]);
    }
}

/// Rescales lanes still below range that the recursion has grown; returns
/// the lanes' weights (1 in range, 0 below) and whether all, and whether
/// any, are in range. Written without branches so that it runs on vectors.
#[inline(always)]
fn rescale(
    lo: &mut Lanes,
    hi: &mut Lanes,
    scales: &mut Lanes,
    weights: &mut Lanes,
) -> (bool, bool) {
    let mut below = 0.0;
    for i in 0..GROUP {
        let grown = scales[i] < 0.0 && lo[i].abs().max(hi[i].abs()) > RESCALE_ABOVE;
        let factor = if grown { SCALE_DOWN } else { 1.0 };
        lo[i] *= factor;
        hi[i] *= factor;
        scales[i] += if grown { 1.0 } else { 0.0 };
        weights[i] = if scales[i] == 0.0 { 1.0 } else { 0.0 };
        below += 1.0 - weights[i];
    }
    (below == 0.0, below < GROUP as f64)
}

/// What one group's recursion does at each `l`: analysis sums into the
/// coefficients, synthesis into the phases.
pub(crate) trait Accumulate {
    /// `lam = λ_l` of every lane (weighted: 0 for lanes below range), `even`
    /// when `l − m` is even.
    fn add<const FMA: bool>(&mut self, l_offset: usize, lam: &Lanes, even: bool);
}

/// One degree's per-lane partial sums, `K` vectors of 8 lanes, aligned to a
/// cache line: the analyses load and store one per degree and group, and a
/// vector split over two lines costs both threads (with the synthesis'
/// phases unaligned, `alm2map` at nside 1024 took 0.73 s on two cores
/// instead of 0.60).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct LaneSums<const K: usize>(pub [[f64; 8]; K]);

impl<const K: usize> LaneSums<K> {
    pub(crate) const ZERO: Self = LaneSums([[0.0; 8]; K]);
}

/// Analysis: `partial[l] += λ_l · phase`, the lanes folded to 8 by
/// multiply-adds; [`reduce_partial`] sums the 8 into the coefficients once all the
/// groups of a chunk are in, so the horizontal sum is paid once per degree
/// and chunk instead of once per degree and group.
pub(crate) struct Analysis<'a> {
    pub phases: &'a GroupPhases,
    /// `[re, im]` partial sums of this `m`, `l = m..=lmax`.
    pub partial: &'a mut [LaneSums<2>],
}

/// `alm[l] += Σ partial[l]` (a tree over the 8, the same order everywhere).
pub(crate) fn reduce_partial(partial: &[LaneSums<2>], alm: &mut [Complex64]) {
    let sum8 = |v: &[f64; 8]| ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
    for (LaneSums(p), a) in partial.iter().zip(alm) {
        *a += Complex64::new(sum8(&p[0]), sum8(&p[1]));
    }
}

impl Accumulate for Analysis<'_> {
    #[inline(always)]
    fn add<const FMA: bool>(&mut self, l_offset: usize, lam: &Lanes, even: bool) {
        let (re, im) = if even {
            (&self.phases.sym_re, &self.phases.sym_im)
        } else {
            (&self.phases.anti_re, &self.phases.anti_im)
        };
        // One multiply-add per vector of 8 lanes into the partial sums.
        let LaneSums([mut acc_re, mut acc_im]) = self.partial[l_offset];
        for k in 0..GROUP / 8 {
            for i in 0..8 {
                acc_re[i] = madd::<FMA>(lam[8 * k + i], re[8 * k + i], acc_re[i]);
                acc_im[i] = madd::<FMA>(lam[8 * k + i], im[8 * k + i], acc_im[i]);
            }
        }
        self.partial[l_offset] = LaneSums([acc_re, acc_im]);
    }
}

/// Synthesis: `phase += λ_l · alm[l]`, symmetric or antisymmetric part.
pub(crate) struct Synthesis<'a> {
    pub alm: &'a [Complex64],
    pub phases: GroupPhases,
}

impl Accumulate for Synthesis<'_> {
    #[inline(always)]
    fn add<const FMA: bool>(&mut self, l_offset: usize, lam: &Lanes, even: bool) {
        let a = self.alm[l_offset];
        let (re, im) = if even {
            (&mut self.phases.sym_re, &mut self.phases.sym_im)
        } else {
            (&mut self.phases.anti_re, &mut self.phases.anti_im)
        };
        for i in 0..GROUP {
            re[i] += lam[i] * a.re;
            im[i] += lam[i] * a.im;
        }
    }
}

/// Runs the recursion for order `m` from `l = m` to `lmax` over one group.
#[inline(always)]
fn recurse<const FMA: bool, A: Accumulate>(
    m: usize,
    lmax: usize,
    coef: &[[f64; 2]],
    x: &Lanes,
    (sin, norm): (&Lanes, f64),
    acc: &mut A,
) {
    let (mut lo, mut scales) = diagonal(m, norm, sin);
    let mut hi = [0.0; GROUP];
    for i in 0..GROUP {
        hi[i] = coef[0][0] * x[i] * lo[i];
    }
    let mut weights = [0.0; GROUP];
    let mut l = m;
    let (mut all, mut any) = rescale(&mut lo, &mut hi, &mut scales, &mut weights);
    // Some lanes below range: weigh, step, rescale.
    while !all && l <= lmax {
        if any {
            let mut lam = [0.0; GROUP];
            for i in 0..GROUP {
                lam[i] = lo[i] * weights[i];
            }
            acc.add::<FMA>(l - m, &lam, true);
            if l < lmax {
                for i in 0..GROUP {
                    lam[i] = hi[i] * weights[i];
                }
                acc.add::<FMA>(l + 1 - m, &lam, false);
            }
        }
        step2::<FMA>(x, &mut lo, &mut hi, coef[l + 1 - m], coef[l + 2 - m]);
        (all, any) = rescale(&mut lo, &mut hi, &mut scales, &mut weights);
        l += 2;
    }
    // Every lane in range: no more checks.
    while l < lmax {
        acc.add::<FMA>(l - m, &lo, true);
        acc.add::<FMA>(l + 1 - m, &hi, false);
        step2::<FMA>(x, &mut lo, &mut hi, coef[l + 1 - m], coef[l + 2 - m]);
        l += 2;
    }
    if l == lmax {
        acc.add::<FMA>(l - m, &lo, true);
    }
}

macro_rules! dispatch_fma {
    ($(#[$doc:meta])* fn $name:ident<$acc:ident>($($arg:ident: $ty:ty),* $(,)?)) => {
        $(#[$doc])*
        pub(crate) fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,fma")]
                unsafe fn widest($($arg: $ty),*) {
                    recurse::<true, $acc>($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide($($arg: $ty),*) {
                    recurse::<true, $acc>($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has AVX-512F and FMA.
                    return unsafe { widest($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has AVX2 and FMA.
                    return unsafe { wide($($arg),*) };
                }
            }
            recurse::<false, $acc>($($arg),*)
        }
    };
}

dispatch_fma! {
    /// Analysis of one group at one `m`, on the widest vectors the CPU has.
    fn analyse_group<Analysis>(
        m: usize,
        lmax: usize,
        coef: &[[f64; 2]],
        x: &Lanes,
        start: (&Lanes, f64),
        acc: &mut Analysis<'_>,
    )
}

dispatch_fma! {
    /// Synthesis of one group at one `m`, on the widest vectors the CPU has.
    fn synthesise_group<Synthesis>(
        m: usize,
        lmax: usize,
        coef: &[[f64; 2]],
        x: &Lanes,
        start: (&Lanes, f64),
        acc: &mut Synthesis<'_>,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `λ_lm(x)` by the textbook recursion in plain doubles (fine where nothing underflows).
    fn reference(l: usize, m: usize, x: f64) -> f64 {
        let s = (1.0 - x * x).sqrt();
        let mut p = diagonal_norms(m)[m] * s.powi(m as i32) * if m % 2 == 1 { -1.0 } else { 1.0 };
        if l == m {
            return p;
        }
        let mut coef = vec![[0.0; 2]; coefficient_count(m, l)];
        recursion_coefficients(m, &mut coef);
        let mut prev = 0.0;
        for k in 0..l - m {
            let next = coef[k][0] * x * p - coef[k][1] * prev;
            prev = p;
            p = next;
        }
        p
    }

    struct Record(Vec<(usize, Lanes, bool)>);
    impl Accumulate for Record {
        fn add<const FMA: bool>(&mut self, l_offset: usize, lam: &Lanes, even: bool) {
            self.0.push((l_offset, *lam, even));
        }
    }

    #[test]
    fn recursion_matches_the_closed_forms_and_the_plain_recursion() {
        // Y_20 = √(5/16π)(3x² − 1), Y_21's λ = −√(15/8π) x √(1−x²).
        let x = 0.3f64;
        let y20 = (5.0 / (16.0 * std::f64::consts::PI)).sqrt() * (3.0 * x * x - 1.0);
        let y21 = -(15.0 / (8.0 * std::f64::consts::PI)).sqrt() * x * (1.0 - x * x).sqrt();
        assert!((reference(2, 0, x) - y20).abs() < 1e-15);
        assert!((reference(2, 1, x) - y21).abs() < 1e-15);

        let lanes: Lanes = std::array::from_fn(|i| -0.95 + 1.9 * i as f64 / (GROUP - 1) as f64);
        let sines = lanes.map(|x| (1.0 - x * x).sqrt());
        for m in [0usize, 1, 5, 30] {
            let lmax = 61;
            let mut coef = vec![[0.0; 2]; coefficient_count(m, lmax)];
            recursion_coefficients(m, &mut coef);
            let mut record = Record(Vec::new());
            let start = (&sines, diagonal_norms(m)[m]);
            recurse::<false, _>(m, lmax, &coef, &lanes, start, &mut record);
            assert_eq!(record.0.len(), lmax - m + 1, "m {m}");
            for (l_offset, lam, even) in record.0 {
                assert_eq!(even, l_offset % 2 == 0);
                for (i, &x) in lanes.iter().enumerate() {
                    let want = reference(m + l_offset, m, x);
                    assert!(
                        (lam[i] - want).abs() <= 1e-12 * want.abs().max(1e-3),
                        "l {} m {m} x {x}: {} vs {want}",
                        m + l_offset,
                        lam[i]
                    );
                }
            }
        }
    }

    /// Keeps `λ_lm` at one `l` of every lane.
    struct At(usize, Lanes);
    impl Accumulate for At {
        fn add<const FMA: bool>(&mut self, l_offset: usize, lam: &Lanes, _even: bool) {
            if l_offset == self.0 {
                self.1 = *lam;
            }
        }
    }

    #[test]
    fn addition_theorem_holds_at_high_degree_next_to_the_poles() {
        // Σ_m |Y_lm|² = (2l+1)/4π at every point: with λ_lm real,
        // λ_l0² + 2 Σ_{m≥1} λ_lm² = (2l+1)/4π. At l = 4095 and θ down to
        // 10⁻³ most λ_mm underflow a double by hundreds of orders: every m
        // must come in through the scaling for the sum to close.
        let l = 4095;
        let thetas: Lanes = std::array::from_fn(|i| 1e-3 * 2f64.powi((i * 11 / GROUP) as i32));
        let x = thetas.map(f64::cos);
        let sines = thetas.map(f64::sin);
        let norms = diagonal_norms(l);
        let mut sums = [0.0; GROUP];
        for m in 0..=l {
            let mut coef = vec![[0.0; 2]; coefficient_count(m, l)];
            recursion_coefficients(m, &mut coef);
            let mut at = At(l - m, [0.0; GROUP]);
            recurse::<false, _>(m, l, &coef, &x, (&sines, norms[m]), &mut at);
            let factor = if m == 0 { 1.0 } else { 2.0 };
            for i in 0..GROUP {
                sums[i] += factor * at.1[i] * at.1[i];
            }
        }
        let want = (2 * l + 1) as f64 / (4.0 * std::f64::consts::PI);
        for i in 0..GROUP {
            assert!(
                (sums[i] / want - 1.0).abs() < 1e-10,
                "θ {}: {} vs {want}",
                thetas[i],
                sums[i]
            );
        }
    }

    /// Orders past [`order_limit`](super::super::rings::order_limit) are
    /// negligible: on every 8th ring of nside 2048 (lmax 4095) and nside 256
    /// (lmax 767), `|λ_lm|` for the first skipped `m` stays below 5e-11 at
    /// every degree (it falls further as `m` grows; the largest, about 1e-11,
    /// are at mid-latitudes with lmax 4095), against kept values of O(1–30).
    #[test]
    fn skipped_orders_are_negligible() {
        struct Largest(f64);
        impl Accumulate for Largest {
            fn add<const FMA: bool>(&mut self, _l: usize, lam: &Lanes, _even: bool) {
                self.0 = lam.iter().fold(self.0, |a, v| a.max(v.abs()));
            }
        }
        for (nside, lmax) in [(2048u32, 4095usize), (256, 767)] {
            let pairs = super::super::rings::ring_pairs(nside);
            let norms = diagonal_norms(lmax);
            for pair in pairs.iter().step_by(8) {
                let m = super::super::rings::order_limit(lmax, 0, &pair.north) + 1;
                if m > lmax {
                    continue;
                }
                let mut coef = vec![[0.0; 2]; coefficient_count(m, lmax)];
                recursion_coefficients(m, &mut coef);
                let x = [pair.north.cos_theta; GROUP];
                let sines = [pair.north.sin_theta; GROUP];
                let start = (&sines, norms[m]);
                let mut largest = Largest(0.0);
                recurse::<false, _>(m, lmax, &coef, &x, start, &mut largest);
                assert!(
                    largest.0 < 5e-11,
                    "nside {nside} θ {}: m {m} reaches {:e}",
                    pair.north.cos_theta.acos(),
                    largest.0
                );
            }
        }
    }
}
