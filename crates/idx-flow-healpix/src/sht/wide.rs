//! Numbers far outside a double's range, as `mant · 2^exp`: the Wigner
//! recursion's starting values (powers of `cos(θ/2)` and `sin(θ/2)` up to
//! degree `lmax`), which underflow next to the poles long before the
//! recursion brings them back into range.

// Lane loops index several arrays at once; they vectorise.
#![allow(clippy::needless_range_loop)]

use super::wigner::SCALE_BITS;

/// `x = mant · 2^exp` with `mant ∈ [0.5, 1)`, for a positive normal `x`.
fn frexp(x: f64) -> (f64, i64) {
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i64 - 1022;
    (f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52)), exp)
}

/// A positive number far outside a double's range, as `mant · 2^exp`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Wide {
    mant: f64,
    exp: i64,
}

impl Wide {
    pub(super) fn new(x: f64) -> Self {
        let (mant, exp) = frexp(x);
        Wide { mant, exp }
    }

    pub(super) fn mul(self, other: Wide) -> Wide {
        let (mant, exp) = frexp(self.mant * other.mant);
        Wide {
            mant,
            exp: self.exp + other.exp + exp,
        }
    }

    pub(super) fn sqrt(self) -> Wide {
        // Make the exponent even so that it halves exactly.
        let (mant, exp) = if self.exp % 2 == 0 {
            (self.mant, self.exp)
        } else {
            (self.mant * 2.0, self.exp - 1)
        };
        let root = Wide::new(mant.sqrt());
        Wide {
            mant: root.mant,
            exp: root.exp + exp / 2,
        }
    }

    /// `(v, scale)` with the value `v · 2^(600·scale)`, `|v|` within `2^±300`.
    pub(super) fn scaled(self, sign: f64) -> (f64, f64) {
        let scale = (self.exp + (SCALE_BITS / 2) as i64).div_euclid(SCALE_BITS as i64);
        let rest = self.exp - SCALE_BITS as i64 * scale;
        let v = sign * self.mant * f64::from_bits(((rest + 1023) as u64) << 52);
        (v, scale as f64)
    }
}

/// [`Wide`] values of every lane: the same operations lane by lane, in
/// loops the compiler vectorises (the exponent of [`WideLanes::powi`] is
/// the same for every lane, and so are its branches). Computed one lane at
/// a time, the starting values were a quarter of a spin transform at
/// nside 64.
#[derive(Clone, Copy)]
pub(super) struct WideLanes<const N: usize> {
    mant: [f64; N],
    exp: [i64; N],
}

impl<const N: usize> WideLanes<N> {
    #[inline(always)]
    pub(super) fn new(x: &[f64; N]) -> Self {
        let (mut mant, mut exp) = ([0.0; N], [0; N]);
        for i in 0..N {
            (mant[i], exp[i]) = frexp(x[i]);
        }
        WideLanes { mant, exp }
    }

    #[inline(always)]
    pub(super) fn splat(w: Wide) -> Self {
        WideLanes {
            mant: [w.mant; N],
            exp: [w.exp; N],
        }
    }

    #[inline(always)]
    pub(super) fn lane(&self, i: usize) -> Wide {
        Wide {
            mant: self.mant[i],
            exp: self.exp[i],
        }
    }

    /// [`Wide::mul`] of every lane.
    #[inline(always)]
    pub(super) fn mul(&self, other: &Self) -> Self {
        let (mut mant, mut exp) = ([0.0; N], [0; N]);
        for i in 0..N {
            let (m, e) = frexp(self.mant[i] * other.mant[i]);
            mant[i] = m;
            exp[i] = self.exp[i] + other.exp[i] + e;
        }
        WideLanes { mant, exp }
    }

    /// `x^n` of every lane by binary powering (squarings, and a product
    /// for each set bit of `n`), renormalised after each product.
    #[inline(always)]
    pub(super) fn powi(self, mut n: usize) -> Self {
        let mut result = Self::splat(Wide::new(1.0));
        let mut base = self;
        while n > 0 {
            if n & 1 == 1 {
                result = result.mul(&base);
            }
            n >>= 1;
            if n > 0 {
                base = base.mul(&base);
            }
        }
        result
    }
}
