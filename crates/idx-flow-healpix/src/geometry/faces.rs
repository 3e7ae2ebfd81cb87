//! Base-face coordinates `(face, x, y)` of the RING scheme, for any nside.
//!
//! cdshealpix covers RING centres and hashing for every nside, but its RING
//! module has no neighbour function and its NESTED module needs a power of
//! two. RING neighbours at any nside therefore go through the twelve
//! `nside × nside` base-face grids (Górski et al. 2005, and healpix_base's
//! `neighbors`): x runs from a face's south corner towards its east corner,
//! y towards its west corner.

/// Ring number (in units of nside) of the southern corner of each base face.
const JRLL: [i64; 12] = [2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4];
/// Longitude index (in units of π/4) of each base face's centre.
const JPLL: [i64; 12] = [1, 3, 5, 7, 0, 2, 4, 6, 1, 3, 5, 7];

/// Face reached when leaving a face, indexed by `[offset][face]`, where
/// `offset = 4 + dx + 3·dy` with `dx, dy ∈ {-1, 0, 1}` the overflow of x and y;
/// -1 where no face is there (the corners where only three faces meet).
const FACE_ACROSS: [[i64; 12]; 9] = [
    [8, 9, 10, 11, -1, -1, -1, -1, 10, 11, 8, 9],
    [5, 6, 7, 4, 8, 9, 10, 11, 9, 10, 11, 8],
    [-1, -1, -1, -1, 5, 6, 7, 4, -1, -1, -1, -1],
    [4, 5, 6, 7, 11, 8, 9, 10, 11, 8, 9, 10],
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
    [1, 2, 3, 0, 0, 1, 2, 3, 5, 6, 7, 4],
    [-1, -1, -1, -1, 7, 4, 5, 6, -1, -1, -1, -1],
    [3, 0, 1, 2, 3, 0, 1, 2, 4, 5, 6, 7],
    [2, 3, 0, 1, -1, -1, -1, -1, 0, 1, 2, 3],
];

/// How coordinates transform when crossing into the face above, indexed by
/// `[offset][face / 4]`: bit 1 mirrors x, bit 2 mirrors y, bit 4 swaps x and y.
const SWAP_ACROSS: [[u8; 3]; 9] = [
    [0, 0, 3],
    [0, 0, 6],
    [0, 0, 0],
    [0, 0, 5],
    [0, 0, 0],
    [5, 0, 0],
    [0, 0, 0],
    [6, 0, 0],
    [3, 0, 0],
];

/// Offsets `(dx, dy)` of the 8 neighbours in healpy's order SW, W, NW, N, NE, E, SE, S.
const NEIGHBOUR_OFFSETS: [(i64, i64); 8] = [
    (-1, 0),
    (-1, 1),
    (0, 1),
    (1, 1),
    (1, 0),
    (1, -1),
    (0, -1),
    (-1, -1),
];

fn isqrt(v: u64) -> u64 {
    let mut r = (v as f64).sqrt() as u64;
    while r > 0 && r.checked_mul(r).is_none_or(|sq| sq > v) {
        r -= 1;
    }
    while (r + 1).checked_mul(r + 1).is_some_and(|sq| sq <= v) {
        r += 1;
    }
    r
}

/// `(x, y, face)` of RING pixel `pix`; the caller guarantees `pix < 12·nside²`.
pub(crate) fn ring_to_xyf(nside: i64, pix: i64) -> (i64, i64, usize) {
    let npix = 12 * nside * nside;
    let ncap = 2 * nside * (nside - 1);
    let nl2 = 2 * nside;
    let (iring, iphi, kshift, nr, face);
    if pix < ncap {
        // North polar cap.
        let r = ((1 + isqrt((1 + 2 * pix) as u64)) >> 1) as i64;
        iring = r;
        iphi = (pix + 1) - 2 * r * (r - 1);
        kshift = 0;
        nr = r;
        face = ((iphi - 1) / nr) as usize;
    } else if pix < npix - ncap {
        // Equatorial belt.
        let ip = pix - ncap;
        let tmp = ip / (4 * nside);
        iring = tmp + nside;
        iphi = ip - tmp * 4 * nside + 1;
        kshift = (iring + nside) & 1;
        nr = nside;
        let ire = tmp + 1;
        let irm = nl2 + 2 - ire;
        let ifm = (iphi - ire / 2 + nside - 1) / nside;
        let ifp = (iphi - irm / 2 + nside - 1) / nside;
        face = if ifp == ifm {
            (ifp | 4) as usize
        } else if ifp < ifm {
            ifp as usize
        } else {
            (ifm + 8) as usize
        };
    } else {
        // South polar cap.
        let ip = npix - pix;
        let r = ((1 + isqrt((2 * ip - 1) as u64)) >> 1) as i64;
        iphi = 4 * r + 1 - (ip - 2 * r * (r - 1));
        kshift = 0;
        nr = r;
        iring = 2 * nl2 - r;
        face = ((iphi - 1) / nr + 8) as usize;
    }
    let irt = iring - JRLL[face] * nside + 1;
    let mut ipt = 2 * iphi - JPLL[face] * nr - kshift - 1;
    if ipt >= nl2 {
        ipt -= 8 * nside;
    }
    ((ipt - irt) >> 1, (-ipt - irt) >> 1, face)
}

/// RING pixel of face coordinates `(x, y, face)`, `0 <= x, y < nside`.
pub(crate) fn xyf_to_ring(nside: i64, ix: i64, iy: i64, face: usize) -> i64 {
    let nl4 = 4 * nside;
    let npix = 12 * nside * nside;
    let ncap = 2 * nside * (nside - 1);
    let jr = JRLL[face] * nside - ix - iy - 1;
    let (nr, n_before, kshift) = if jr < nside {
        (jr, 2 * jr * (jr - 1), 0)
    } else if jr > 3 * nside {
        let nr = nl4 - jr;
        (nr, npix - 2 * (nr + 1) * nr, 0)
    } else {
        (nside, ncap + (jr - nside) * nl4, (jr - nside) & 1)
    };
    let mut jp = (JPLL[face] * nr + ix - iy + 1 + kshift) / 2;
    if jp > nl4 {
        jp -= nl4;
    } else if jp < 1 {
        jp += nl4;
    }
    n_before + jp - 1
}

/// The 8 neighbours of RING pixel `pix` in healpy's order (SW, W, NW, N, NE, E, SE, S),
/// -1 where there is none.
pub(crate) fn ring_neighbours(nside: i64, pix: i64) -> [i64; 8] {
    let (ix, iy, face) = ring_to_xyf(nside, pix);
    let mut out = [-1i64; 8];
    for (slot, &(dx, dy)) in NEIGHBOUR_OFFSETS.iter().enumerate() {
        let mut x = ix + dx;
        let mut y = iy + dy;
        if (0..nside).contains(&x) && (0..nside).contains(&y) {
            out[slot] = xyf_to_ring(nside, x, y, face);
            continue;
        }
        let mut offset = 4i64;
        if x < 0 {
            x += nside;
            offset -= 1;
        } else if x >= nside {
            x -= nside;
            offset += 1;
        }
        if y < 0 {
            y += nside;
            offset -= 3;
        } else if y >= nside {
            y -= nside;
            offset += 3;
        }
        let f = FACE_ACROSS[offset as usize][face];
        if f < 0 {
            continue;
        }
        let bits = SWAP_ACROSS[offset as usize][face / 4];
        if bits & 1 != 0 {
            x = nside - x - 1;
        }
        if bits & 2 != 0 {
            y = nside - y - 1;
        }
        if bits & 4 != 0 {
            std::mem::swap(&mut x, &mut y);
        }
        out[slot] = xyf_to_ring(nside, x, y, f as usize);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xyf_round_trip_for_odd_and_even_nsides() {
        for nside in [1i64, 2, 3, 5, 6, 8, 13] {
            for pix in 0..12 * nside * nside {
                let (x, y, f) = ring_to_xyf(nside, pix);
                assert!((0..nside).contains(&x) && (0..nside).contains(&y) && f < 12);
                assert_eq!(xyf_to_ring(nside, x, y, f), pix, "nside {nside} pix {pix}");
            }
        }
    }

    #[test]
    fn isqrt_is_exact() {
        for v in [
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
            let r = isqrt(v);
            assert!(r as u128 * r as u128 <= v as u128);
            assert!((r as u128 + 1) * (r as u128 + 1) > v as u128);
        }
    }
}
