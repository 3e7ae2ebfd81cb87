//! Spherical-harmonic coefficients in healpy's layout.

use rustfft::num_complex::Complex64;

use crate::{Error, Result};

/// The coefficients `a_lm`, `0 ≤ m ≤ mmax`, `m ≤ l ≤ lmax`, of a real field,
/// in healpy's order: `m` major, `l` minor, index
/// `m·(2·lmax + 1 − m)/2 + l` (healpy's `Alm.getidx`). Negative `m` are not
/// stored: `a_{l,−m} = (−1)^m conj(a_lm)` for a real field.
///
/// ```
/// use idx_flow_healpix::sht::{Alm, Complex64};
/// let mut alm = Alm::zeros(4, 4)?;
/// assert_eq!(alm.values().len(), 15);
/// assert_eq!(Alm::index_of(4, 2, 1), Some(6));
/// alm.set(2, 1, Complex64::new(0.5, -0.25))?;
/// assert_eq!(alm.get(2, 1), Some(Complex64::new(0.5, -0.25)));
/// # Ok::<(), idx_flow_healpix::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Alm {
    lmax: usize,
    mmax: usize,
    values: Vec<Complex64>,
}

impl Alm {
    /// Number of coefficients up to `lmax` and `mmax ≤ lmax` (healpy's `Alm.getsize`).
    pub fn size(lmax: usize, mmax: usize) -> usize {
        let mmax = mmax.min(lmax);
        (mmax + 1) * (lmax + 1) - mmax * (mmax + 1) / 2
    }

    /// Where `(l, m)` sits in the layout of `lmax`, or `None` outside it.
    pub fn index_of(lmax: usize, l: usize, m: usize) -> Option<usize> {
        (m <= l && l <= lmax).then(|| m * (2 * lmax + 1 - m) / 2 + l)
    }

    fn check_limits(lmax: usize, mmax: usize) -> Result<()> {
        if mmax > lmax {
            return Err(Error::InvalidArgument {
                name: "mmax",
                message: format!("mmax {mmax} exceeds lmax {lmax}; expected mmax ≤ lmax"),
            });
        }
        Ok(())
    }

    /// All coefficients zero.
    pub fn zeros(lmax: usize, mmax: usize) -> Result<Self> {
        Self::check_limits(lmax, mmax)?;
        Ok(Alm {
            lmax,
            mmax,
            values: vec![Complex64::default(); Self::size(lmax, mmax)],
        })
    }

    /// Coefficients in healpy's order (as `healpy.map2alm` returns them).
    pub fn from_values(lmax: usize, mmax: usize, values: Vec<Complex64>) -> Result<Self> {
        Self::check_limits(lmax, mmax)?;
        let size = Self::size(lmax, mmax);
        if values.len() != size {
            return Err(Error::Shape {
                context: format!("alm of lmax {lmax}, mmax {mmax}"),
                expected: format!("{size} coefficients"),
                got: format!("{}", values.len()),
            });
        }
        Ok(Alm { lmax, mmax, values })
    }

    /// Largest degree `l`.
    pub fn lmax(&self) -> usize {
        self.lmax
    }

    /// Largest order `m`.
    pub fn mmax(&self) -> usize {
        self.mmax
    }

    /// The coefficients in healpy's order.
    pub fn values(&self) -> &[Complex64] {
        &self.values
    }

    /// The coefficients in healpy's order, to change in place.
    pub fn values_mut(&mut self) -> &mut [Complex64] {
        &mut self.values
    }

    /// The coefficients in healpy's order.
    pub fn into_values(self) -> Vec<Complex64> {
        self.values
    }

    /// `a_lm`, or `None` outside `m ≤ mmax`, `m ≤ l ≤ lmax`.
    pub fn get(&self, l: usize, m: usize) -> Option<Complex64> {
        (m <= self.mmax)
            .then(|| Self::index_of(self.lmax, l, m))
            .flatten()
            .map(|i| self.values[i])
    }

    /// Sets `a_lm`; an error names the degree and order outside the layout.
    pub fn set(&mut self, l: usize, m: usize, value: Complex64) -> Result<()> {
        match (m <= self.mmax)
            .then(|| Self::index_of(self.lmax, l, m))
            .flatten()
        {
            Some(i) => {
                self.values[i] = value;
                Ok(())
            }
            None => Err(Error::InvalidArgument {
                name: "(l, m)",
                message: format!(
                    "({l}, {m}) is outside lmax {}, mmax {} (expected m ≤ l ≤ lmax, m ≤ mmax)",
                    self.lmax, self.mmax
                ),
            }),
        }
    }

    /// The same field cut to `l ≤ lmax`, `m ≤ min(mmax, lmax)`, or
    /// zero-padded up to a larger `lmax` (healpy's `resize_alm`).
    pub fn resized(&self, lmax: usize, mmax: usize) -> Result<Alm> {
        let mut out = Alm::zeros(lmax, mmax)?;
        for m in 0..=mmax.min(self.mmax) {
            for l in m..=lmax.min(self.lmax) {
                out.values[Self::index_of(lmax, l, m).expect("inside")] =
                    self.values[Self::index_of(self.lmax, l, m).expect("inside")];
            }
        }
        Ok(out)
    }

    /// Where the coefficients of order `m` (`l = m..=lmax`) sit: contiguous
    /// in this layout. `m ≤ lmax` is the caller's to ensure.
    pub(crate) fn order_range(lmax: usize, m: usize) -> std::ops::Range<usize> {
        let start = m * (2 * lmax + 1 - m) / 2 + m;
        start..start + lmax + 1 - m
    }

    /// The coefficients of every order `m ≤ mmax`, split as [`Self::order_range`] places them.
    pub(crate) fn split_by_order(
        values: &mut [Complex64],
        lmax: usize,
        mmax: usize,
    ) -> Vec<&mut [Complex64]> {
        let mut rest = values;
        let mut out = Vec::with_capacity(mmax + 1);
        for m in 0..=mmax {
            let (head, tail) = rest.split_at_mut(lmax + 1 - m);
            out.push(head);
            rest = tail;
        }
        out
    }

    /// Number of real values of a real field's coefficients: `a_l0` are
    /// real, the others complex.
    pub fn real_values(lmax: usize, mmax: usize) -> usize {
        2 * Self::size(lmax, mmax) - (lmax + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-order ranges, the split and `index_of` describe one layout:
    /// the ranges tile the storage in order and agree with `index_of`.
    #[test]
    fn order_ranges_tile_the_layout_as_index_of_places_it() {
        for (lmax, mmax) in [(0, 0), (4, 4), (7, 3), (12, 12)] {
            let mut values = vec![Complex64::new(0.0, 0.0); Alm::size(lmax, mmax)];
            let lengths: Vec<usize> = Alm::split_by_order(&mut values, lmax, mmax)
                .iter()
                .map(|s| s.len())
                .collect();
            let mut next = 0;
            for (m, &length) in lengths.iter().enumerate() {
                let range = Alm::order_range(lmax, m);
                assert_eq!(range.start, next, "lmax {lmax} m {m}");
                assert_eq!(range.len(), length, "lmax {lmax} m {m}");
                for l in m..=lmax {
                    assert_eq!(Alm::index_of(lmax, l, m), Some(range.start + l - m));
                }
                next = range.end;
            }
            assert_eq!((lengths.len(), next), (mmax + 1, Alm::size(lmax, mmax)));
        }
    }
}
