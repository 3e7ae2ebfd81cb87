//! The iso-latitude rings of a RING-ordered HEALPix map, paired north with
//! south: the spherical-harmonic transforms work ring by ring.

/// One ring: where its pixels start in a RING map, how many there are, its
/// colatitude and the longitude of its first pixel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Ring {
    /// Index of the ring's first pixel in RING order.
    pub start: usize,
    /// Number of pixels (`4i` in the polar caps, `4·nside` between).
    pub len: usize,
    /// `cos θ`.
    pub cos_theta: f64,
    /// `sin θ`, computed from `1 − cos θ` where that is exact, so that it
    /// keeps its relative precision next to the poles.
    pub sin_theta: f64,
    /// Longitude of the first pixel; the others follow every `2π/len`.
    pub phi0: f64,
}

/// A northern ring and its mirror image in the south (same length and
/// longitudes, `cos θ` negated), or the equator alone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct RingPair {
    pub north: Ring,
    pub south: Option<Ring>,
}

/// The largest order `m` whose functions on `ring` can matter up to `lmax`
/// for spin `spin` (0 for the scalar transforms): libsharp's rule
/// (`sharp_get_mlim`), which healpy's results carry. Past it a ring is
/// skipped: `λ_lm(θ)` is evanescent there, since the turning point
/// `l ≈ m / sin θ` lies beyond `lmax` by a margin of at least 100 orders
/// (1% of `lmax` when that is more), and the skipped terms are many orders of
/// magnitude below rounding (the unit test checks them).
pub(crate) fn order_limit(lmax: usize, spin: usize, ring: &Ring) -> usize {
    let margin = (0.01 * lmax as f64).max(100.0);
    let spin = spin as f64;
    let t1 = lmax as f64 * ring.sin_theta + margin;
    // The larger root of m² − 2·s·|cos θ|·m + s² − t1² = 0.
    let b = -2.0 * spin * ring.cos_theta.abs();
    let c = spin * spin - t1 * t1;
    let discriminant = b * b - 4.0 * c;
    if discriminant <= 0.0 {
        return lmax;
    }
    let root = (-b + discriminant.sqrt()) / 2.0;
    (root.min(lmax as f64) + 0.5) as usize
}

/// The `2·nside` ring pairs of a grid, from the north pole to the equator.
pub(crate) fn ring_pairs(nside: u32) -> Vec<RingPair> {
    let n = nside as usize;
    let npix = 12 * n * n;
    let nside_f = nside as f64;
    (1..=2 * n)
        .map(|i| {
            let (start, len, one_minus_z, z, phi0) = if i < n {
                // Polar cap: 4i pixels, z = 1 − i²/(3 nside²).
                let one_minus_z = (i * i) as f64 / (3.0 * nside_f * nside_f);
                (
                    2 * i * (i - 1),
                    4 * i,
                    one_minus_z,
                    1.0 - one_minus_z,
                    std::f64::consts::PI / (4 * i) as f64,
                )
            } else {
                // Equatorial belt: 4·nside pixels, alternate rings shifted by half a pixel.
                let z = (4.0 / 3.0) - (2 * i) as f64 / (3.0 * nside_f);
                let shifted = (i - n + 1) % 2;
                let phi0 = shifted as f64 * std::f64::consts::PI / (4.0 * nside_f);
                (2 * n * (n - 1) + (i - n) * 4 * n, 4 * n, 1.0 - z, z, phi0)
            };
            let sin_theta = (one_minus_z * (1.0 + z)).sqrt();
            let north = Ring {
                start,
                len,
                cos_theta: z,
                sin_theta,
                phi0,
            };
            // Ring i's mirror is ring 4·nside − i: the pixels after it, read backwards.
            let south = (i < 2 * n).then(|| Ring {
                start: npix - start - len,
                cos_theta: -z,
                ..north
            });
            RingPair { north, south }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::HealpixGrid;

    #[test]
    fn rings_cover_the_map_and_agree_with_the_pixel_centres() {
        for nside in [1u32, 2, 3, 4, 5, 8] {
            let grid = HealpixGrid::ring(nside).unwrap();
            let mut seen = vec![false; grid.npix() as usize];
            for pair in ring_pairs(nside) {
                for ring in std::iter::once(pair.north).chain(pair.south) {
                    for j in 0..ring.len {
                        let pix = ring.start + j;
                        assert!(!seen[pix], "pixel {pix} twice at nside {nside}");
                        seen[pix] = true;
                        let (theta, phi) = grid.pix2ang(pix as u64).unwrap();
                        let phi_j =
                            ring.phi0 + 2.0 * std::f64::consts::PI * j as f64 / ring.len as f64;
                        assert!(
                            (theta.cos() - ring.cos_theta).abs() < 1e-13,
                            "nside {nside} pixel {pix}"
                        );
                        assert!(
                            (theta.sin() - ring.sin_theta).abs() < 1e-13,
                            "nside {nside} pixel {pix}"
                        );
                        assert!(
                            (phi - phi_j).abs() < 1e-12,
                            "nside {nside} pixel {pix}: {phi} vs {phi_j}"
                        );
                    }
                }
            }
            assert!(
                seen.iter().all(|&s| s),
                "nside {nside}: some pixel in no ring"
            );
        }
    }
}
