//! What the spin recursion ([`super::wigner`]) sums into: a group's ring
//! phases and the coefficients' partial sums (analysis), or the phases from
//! the coefficients (synthesis).

// Lane loops index several arrays at once, as the formulas read; they vectorise.
#![allow(clippy::needless_range_loop)]

use rustfft::num_complex::Complex64;

use super::legendre::LaneSums;
use super::wigner::{Lanes, SpinAccumulate};

/// One pair group's phases of a map pair at one `m`: for `Q` and `U`,
/// `sym = north + south` and `anti = north − south`, each `[re, im]`.
/// Aligned to a cache line, as [`LaneSums`]: the synthesis loads and stores
/// its lanes as whole vectors at every degree.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct SpinPhases<const N: usize> {
    pub q_sym: [Lanes<N>; 2],
    pub q_anti: [Lanes<N>; 2],
    pub u_sym: [Lanes<N>; 2],
    pub u_anti: [Lanes<N>; 2],
}

// By hand: `Default` is derived only for arrays of a known length up to 32.
impl<const N: usize> Default for SpinPhases<N> {
    fn default() -> Self {
        let zero = [[0.0; N]; 2];
        SpinPhases {
            q_sym: zero,
            q_anti: zero,
            u_sym: zero,
            u_anti: zero,
        }
    }
}

/// Analysis: `E_l += Σ_lanes G+·Q + i·G−·U`, `B_l += Σ_lanes G+·U − i·G−·Q`
/// with the symmetric or antisymmetric parts as the parity asks, kept as
/// per-lane partial sums `[E re, E im, B re, B im]` per degree until
/// [`reduce_spin_partial`] folds them once per chunk.
pub(crate) struct SpinAnalysis<'a, const N: usize> {
    pub phases: &'a SpinPhases<N>,
    /// Partial sums of this order, `l = m..=lmax` (index `l − m`).
    pub partial: &'a mut [LaneSums<4>],
    pub m: usize,
}

impl<const N: usize> SpinAccumulate<N> for SpinAnalysis<'_, N> {
    #[inline(always)]
    fn add<const EVEN: bool>(&mut self, l: usize, plus: &Lanes<N>, minus: &Lanes<N>) {
        let p = self.phases;
        // Even: G+ meets the symmetric parts, G− the antisymmetric ones.
        let (q1, u1, q2, u2) = if EVEN {
            (&p.q_sym, &p.u_sym, &p.q_anti, &p.u_anti)
        } else {
            (&p.q_anti, &p.u_anti, &p.q_sym, &p.u_sym)
        };
        // Copied in and out whole, so that the lanes stay in vector
        // registers; the group's lanes fold onto the 8 partial sums.
        let LaneSums(mut acc) = self.partial[l - self.m];
        for k in 0..N / 8 {
            for j in 0..8 {
                let i = 8 * k + j;
                acc[0][j] += plus[i] * q1[0][i] - minus[i] * u2[1][i];
                acc[1][j] += plus[i] * q1[1][i] + minus[i] * u2[0][i];
                acc[2][j] += plus[i] * u1[0][i] + minus[i] * q2[1][i];
                acc[3][j] += plus[i] * u1[1][i] - minus[i] * q2[0][i];
            }
        }
        self.partial[l - self.m] = LaneSums(acc);
    }
}

/// `e[l] += Σ partial[l][0..2]`, `b[l] += Σ partial[l][2..4]` (a fixed tree over the lanes).
pub(crate) fn reduce_spin_partial(
    partial: &[LaneSums<4>],
    e: &mut [Complex64],
    b: &mut [Complex64],
) {
    let sum8 = |v: &[f64; 8]| ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
    for ((LaneSums(p), e), b) in partial.iter().zip(e).zip(b) {
        *e += Complex64::new(sum8(&p[0]), sum8(&p[1]));
        *b += Complex64::new(sum8(&p[2]), sum8(&p[3]));
    }
}

/// Synthesis: the phases of `Q` and `U` from `E` and `B` of one order.
/// `q_sym` gathers `E·G+` of even and `i·B·G−` of odd degrees, `q_anti`
/// the others, so that `north = sym + anti` and `south = sym − anti`.
pub(crate) struct SpinSynthesis<'a, const N: usize> {
    /// `E_lm` and `B_lm` of this order, `l = m..=lmax` (index `l − m`).
    pub e: &'a [Complex64],
    pub b: &'a [Complex64],
    pub m: usize,
    pub phases: SpinPhases<N>,
}

impl<const N: usize> SpinAccumulate<N> for SpinSynthesis<'_, N> {
    #[inline(always)]
    fn add<const EVEN: bool>(&mut self, l: usize, plus: &Lanes<N>, minus: &Lanes<N>) {
        let (e, b) = (self.e[l - self.m], self.b[l - self.m]);
        let p = &mut self.phases;
        // Q: t_E = E·G+, t_B = i·B·G−;  U: t_E = B·G+, t_B = −i·E·G−.
        let (q_e, q_b, u_e, u_b) = if EVEN {
            (&mut p.q_sym, &mut p.q_anti, &mut p.u_sym, &mut p.u_anti)
        } else {
            (&mut p.q_anti, &mut p.q_sym, &mut p.u_anti, &mut p.u_sym)
        };
        for i in 0..N {
            q_e[0][i] += plus[i] * e.re;
            q_e[1][i] += plus[i] * e.im;
            q_b[0][i] -= minus[i] * b.im;
            q_b[1][i] += minus[i] * b.re;
            u_e[0][i] += plus[i] * b.re;
            u_e[1][i] += plus[i] * b.im;
            u_b[0][i] += minus[i] * e.im;
            u_b[1][i] -= minus[i] * e.re;
        }
    }
}
