//! Pixel centres as unit vectors by the closed forms of the HEALPix paper
//! (Górski et al. 2005, eqs. 4–9; healpy's `pix2vec_ring`).
//!
//! Every grid's centre vectors come from here, so that the k-nearest search,
//! the brute-force checks and `pix2vec` agree to the last bit. The equatorial
//! belt (two thirds of the pixels) shares one table of longitudes — its rings
//! all have `4·nside` pixels at multiples of `π / (4·nside)` — so most centres
//! cost no trigonometry at all; the polar caps compute theirs.

/// Centre vectors of the RING pixels of one nside.
pub(crate) struct RingCenters {
    nside: u64,
    npix: u64,
    /// Pixels in the north polar cap, `2·nside·(nside − 1)`.
    ncap: u64,
    /// `π / (4·nside)`, the longitude step of the belt.
    step: f64,
    /// `(sin, cos)` of `m·step` for `m` in `0..8·nside`, when the grid is
    /// small enough for a table to pay; the same values are computed inline otherwise.
    belt: Option<Vec<(f64, f64)>>,
}

/// Belt tables up to this many entries (nside 2^20: 128 MiB).
const MAX_BELT_TABLE: u64 = 1 << 23;

/// `floor(sqrt(x))`, exact for every `u64`.
fn isqrt(x: u64) -> u64 {
    let mut r = (x as f64).sqrt() as u64;
    while (r as u128) * (r as u128) > x as u128 {
        r -= 1;
    }
    while ((r + 1) as u128) * ((r + 1) as u128) <= x as u128 {
        r += 1;
    }
    r
}

impl RingCenters {
    /// With the belt table: for computing many centres.
    pub(crate) fn new(nside: u32) -> Self {
        let mut rc = Self::without_table(nside);
        if 8 * rc.nside <= MAX_BELT_TABLE {
            let step = rc.step;
            rc.belt = Some(
                (0..8 * rc.nside)
                    .map(|m| (m as f64 * step).sin_cos())
                    .collect(),
            );
        }
        rc
    }

    /// Without the table: for a few centres (the values are the same bits).
    pub(crate) fn without_table(nside: u32) -> Self {
        let ns = nside as u64;
        Self {
            nside: ns,
            npix: 12 * ns * ns,
            ncap: 2 * ns * (ns - 1),
            step: std::f64::consts::PI / (4.0 * nside as f64),
            belt: None,
        }
    }

    /// The unit vector of RING pixel `p` (< 12·nside²).
    pub(crate) fn vec(&self, p: u64) -> [f64; 3] {
        let ns = self.nside;
        if p < self.ncap {
            let i = isqrt(1 + 2 * p).div_ceil(2);
            let j = p + 1 - 2 * i * (i - 1);
            self.cap(i, j, 1.0)
        } else if p < self.npix - self.ncap {
            let ip = p - self.ncap;
            let i = ip / (4 * ns) + ns;
            let j = ip % (4 * ns) + 1;
            // Rings of odd i + nside start at φ = 0, the others half a pixel on.
            let m = if (i + ns) & 1 == 1 {
                2 * (j - 1)
            } else {
                2 * j - 1
            };
            let z = 2.0 * (2 * ns as i64 - i as i64) as f64 / (3 * ns) as f64;
            let sin_theta = ((1.0 - z) * (1.0 + z)).sqrt();
            let (s, c) = match &self.belt {
                Some(table) => table[m as usize],
                None => (m as f64 * self.step).sin_cos(),
            };
            [sin_theta * c, sin_theta * s, z]
        } else {
            let ip = self.npix - p;
            let i = isqrt(2 * ip - 1).div_ceil(2);
            let j = 4 * i + 1 - (ip - 2 * i * (i - 1));
            self.cap(i, j, -1.0)
        }
    }

    /// Pixel `j` (from 1) of cap ring `i` (from the pole, from 1), in the
    /// northern (`sign` 1) or southern (`sign` −1) cap.
    fn cap(&self, i: u64, j: u64, sign: f64) -> [f64; 3] {
        let ns = self.nside as f64;
        let i_f = i as f64;
        // 1 − |z|, exact enough near the pole where 1 − z² would cancel.
        let t = i_f * i_f / (3.0 * ns * ns);
        let sin_theta = (t * (2.0 - t)).sqrt();
        let phi = (2 * j - 1) as f64 * std::f64::consts::PI / (4.0 * i_f);
        let (s, c) = phi.sin_cos();
        [sin_theta * c, sin_theta * s, sign * (1.0 - t)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_forms_match_cdshealpix_centres() {
        for nside in [1u32, 2, 3, 5, 8, 13, 64] {
            let rc = RingCenters::new(nside);
            for p in 0..12 * nside as u64 * nside as u64 {
                let (lon, lat) = cdshealpix::ring::center(nside, p);
                let v = super::super::lonlat_to_vec(lon, lat);
                let w = rc.vec(p);
                for a in 0..3 {
                    assert!(
                        (v[a] - w[a]).abs() < 1e-14,
                        "nside {nside} pixel {p}: {v:?} vs {w:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_table_and_the_inline_belt_agree_bitwise() {
        let (a, b) = (RingCenters::new(64), RingCenters::without_table(64));
        for p in 0..12 * 64 * 64 {
            assert_eq!(a.vec(p), b.vec(p), "pixel {p}");
        }
    }

    #[test]
    fn integer_square_root_is_exact_at_the_top_of_the_range() {
        for x in [
            0u64,
            1,
            2,
            3,
            4,
            15,
            16,
            17,
            (1 << 60) - 1,
            1 << 60,
            u64::MAX,
        ] {
            let r = isqrt(x) as u128;
            assert!(r * r <= x as u128 && (r + 1) * (r + 1) > x as u128, "{x}");
        }
    }
}
