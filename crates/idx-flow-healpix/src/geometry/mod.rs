//! HEALPix pixel geometry: orderings, pixel centres, the pixel containing a
//! direction, neighbours, and RING ↔ NESTED conversion.
//!
//! The arithmetic is cdshealpix's; this module validates user input, speaks
//! healpy's conventions (colatitude θ ∈ [0, π], longitude φ ∈ [0, 2π),
//! neighbours in the order SW, W, NW, N, NE, E, SE, S) and adds RING
//! neighbours for nsides that are not powers of two.
//!
//! ```
//! use idx_flow_healpix::geometry::{HealpixGrid, Ordering};
//!
//! let grid = HealpixGrid::new(4, Ordering::Nested)?;
//! assert_eq!(grid.npix(), 192);
//! let (theta, phi) = grid.pix2ang(0)?;
//! assert_eq!(grid.ang2pix(theta, phi)?, 0);
//! let ring = grid.to_ring(0)?;
//! assert_eq!(HealpixGrid::new(4, Ordering::Ring)?.to_nested(ring)?, 0);
//! # Ok::<(), idx_flow_healpix::Error>(())
//! ```

mod centers;
mod faces;
mod interpolation;

pub(crate) use centers::RingCenters;

use std::f64::consts::{FRAC_PI_2, PI, TAU};
use std::fmt;
use std::str::FromStr;

use cdshealpix::compass_point::MainWind;
use rayon::prelude::*;

use crate::error::{Error, Result};

/// The largest nside of either ordering (2^29, so pixel indices need 64 bits).
pub const NSIDE_MAX: u32 = cdshealpix::NSIDE_MAX;

/// Pixel numbering scheme of a HEALPix map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Ordering {
    /// Rings of constant latitude from north to south; any nside.
    #[default]
    Ring,
    /// Hierarchical: the children of pixel p at nside 2n are 4p..4p+3; nside a power of two.
    Nested,
}

impl Ordering {
    /// The lowercase name, as accepted by [`FromStr`].
    pub fn as_str(self) -> &'static str {
        match self {
            Ordering::Ring => "ring",
            Ordering::Nested => "nested",
        }
    }
}

impl fmt::Display for Ordering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Ordering {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "ring" => Ok(Ordering::Ring),
            "nested" | "nest" => Ok(Ordering::Nested),
            _ => Err(Error::arg(
                "ordering",
                format!("unknown ordering '{s}', expected 'ring' or 'nested'"),
            )),
        }
    }
}

/// The eight compass directions of a pixel's neighbours, in healpy's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// South-west (across the pixel's SW edge).
    SW,
    /// West (across the W corner).
    W,
    /// North-west (across the NW edge).
    NW,
    /// North (across the N corner).
    N,
    /// North-east (across the NE edge).
    NE,
    /// East (across the E corner).
    E,
    /// South-east (across the SE edge).
    SE,
    /// South (across the S corner).
    S,
}

impl Direction {
    /// All eight, in healpy's order (the slot order of [`HealpixGrid::neighbours`]).
    pub const ALL: [Direction; 8] = [
        Direction::SW,
        Direction::W,
        Direction::NW,
        Direction::N,
        Direction::NE,
        Direction::E,
        Direction::SE,
        Direction::S,
    ];

    fn main_wind(self) -> MainWind {
        match self {
            Direction::SW => MainWind::SW,
            Direction::W => MainWind::W,
            Direction::NW => MainWind::NW,
            Direction::N => MainWind::N,
            Direction::NE => MainWind::NE,
            Direction::E => MainWind::E,
            Direction::SE => MainWind::SE,
            Direction::S => MainWind::S,
        }
    }
}

/// A HEALPix grid: an nside and an ordering, validated.
///
/// RING grids accept every nside in `1..=2^29`; NESTED grids need a power of two.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HealpixGrid {
    nside: u32,
    ordering: Ordering,
}

impl fmt::Display for HealpixGrid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nside {} {}", self.nside, self.ordering)
    }
}

/// Checks an nside for the given ordering and returns it as `u32`.
pub fn check_nside(nside: u64, ordering: Ordering) -> Result<u32> {
    if nside == 0 || nside > NSIDE_MAX as u64 {
        return Err(Error::InvalidNside {
            nside,
            expected: format!("an integer in 1..={NSIDE_MAX}"),
        });
    }
    if ordering == Ordering::Nested && !nside.is_power_of_two() {
        return Err(Error::InvalidNside {
            nside,
            expected: "a power of two for NESTED ordering (RING takes any nside)".into(),
        });
    }
    Ok(nside as u32)
}

/// Number of pixels `12·nside²` of a grid of that nside.
pub fn nside2npix(nside: u32) -> u64 {
    12 * nside as u64 * nside as u64
}

/// The nside of a map with `npix` pixels, if there is one.
pub fn npix2nside(npix: u64) -> Option<u32> {
    if npix == 0 || !npix.is_multiple_of(12) {
        return None;
    }
    let n2 = npix / 12;
    let n = (n2 as f64).sqrt().round() as u64;
    (n * n == n2 && n <= NSIDE_MAX as u64).then_some(n as u32)
}

/// `(theta, phi)` (colatitude, longitude) of a unit vector's direction.
pub fn vec2ang(v: [f64; 3]) -> Result<(f64, f64)> {
    let norm = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    if !(norm.is_finite() && norm > 0.0) {
        return Err(Error::InvalidDirection(format!(
            "vector {v:?} has no direction (expected a finite non-zero vector)"
        )));
    }
    let theta = (v[0] * v[0] + v[1] * v[1]).sqrt().atan2(v[2]);
    let mut phi = v[1].atan2(v[0]);
    if phi < 0.0 {
        phi += TAU;
    }
    Ok((theta, phi))
}

/// Unit vector of colatitude `theta` and longitude `phi`.
pub fn ang2vec(theta: f64, phi: f64) -> [f64; 3] {
    let (st, ct) = theta.sin_cos();
    let (sp, cp) = phi.sin_cos();
    [st * cp, st * sp, ct]
}

#[cfg(test)]
pub(crate) fn lonlat_to_vec(lon: f64, lat: f64) -> [f64; 3] {
    let (sl, cl) = lat.sin_cos();
    let (so, co) = lon.sin_cos();
    [cl * co, cl * so, sl]
}

fn lon_to_phi(lon: f64) -> f64 {
    if lon >= TAU { lon - TAU } else { lon }
}

impl HealpixGrid {
    /// A grid of the given nside and ordering.
    ///
    /// Fails with [`Error::InvalidNside`] for nside 0, above 2^29, or not a power of two in NESTED.
    pub fn new(nside: u32, ordering: Ordering) -> Result<Self> {
        check_nside(nside as u64, ordering)?;
        Ok(Self { nside, ordering })
    }

    /// A RING grid.
    pub fn ring(nside: u32) -> Result<Self> {
        Self::new(nside, Ordering::Ring)
    }

    /// A NESTED grid.
    pub fn nested(nside: u32) -> Result<Self> {
        Self::new(nside, Ordering::Nested)
    }

    /// The grid's nside.
    pub fn nside(&self) -> u32 {
        self.nside
    }

    /// The grid's ordering.
    pub fn ordering(&self) -> Ordering {
        self.ordering
    }

    /// The same pixels in the other ordering (fails for RING grids whose nside is not a power of two).
    pub fn with_ordering(&self, ordering: Ordering) -> Result<Self> {
        Self::new(self.nside, ordering)
    }

    /// Number of pixels, `12·nside²`.
    pub fn npix(&self) -> u64 {
        nside2npix(self.nside)
    }

    /// `log2(nside)` when nside is a power of two.
    pub fn depth(&self) -> Option<u8> {
        self.nside
            .is_power_of_two()
            .then(|| self.nside.trailing_zeros() as u8)
    }

    /// Fails with [`Error::PixelOutOfRange`] unless `pix < npix`.
    pub fn check_pixel(&self, pix: u64) -> Result<()> {
        if pix < self.npix() {
            Ok(())
        } else {
            Err(Error::PixelOutOfRange {
                pixel: pix,
                nside: self.nside,
                npix: self.npix(),
            })
        }
    }

    fn layer(&self) -> &'static cdshealpix::nested::Layer {
        // Only called on power-of-two grids.
        cdshealpix::nested::get(self.nside.trailing_zeros() as u8)
    }

    /// `(lon, lat)` of a valid pixel's centre, in cdshealpix's convention.
    pub(crate) fn center_lonlat(&self, pix: u64) -> (f64, f64) {
        match self.ordering {
            Ordering::Nested => self.layer().center(pix),
            Ordering::Ring => cdshealpix::ring::center(self.nside, pix),
        }
    }

    /// Centre of pixel `pix` as `(theta, phi)`: colatitude in `[0, π]`, longitude in `[0, 2π)`, radians.
    pub fn pix2ang(&self, pix: u64) -> Result<(f64, f64)> {
        self.check_pixel(pix)?;
        let (lon, lat) = self.center_lonlat(pix);
        Ok((FRAC_PI_2 - lat, lon_to_phi(lon)))
    }

    /// Centre of pixel `pix` as a unit vector.
    pub fn pix2vec(&self, pix: u64) -> Result<[f64; 3]> {
        self.check_pixel(pix)?;
        let ring = self.to_ring(pix)?;
        Ok(RingCenters::without_table(self.nside).vec(ring))
    }

    /// The pixel containing the direction of colatitude `theta` (in `[0, π]`) and longitude `phi` (any finite value).
    pub fn ang2pix(&self, theta: f64, phi: f64) -> Result<u64> {
        if !(theta.is_finite() && (0.0..=PI).contains(&theta) && phi.is_finite()) {
            return Err(Error::InvalidDirection(format!(
                "theta {theta}, phi {phi} (expected colatitude in [0, π] and a finite longitude)"
            )));
        }
        let lat = (FRAC_PI_2 - theta).clamp(-FRAC_PI_2, FRAC_PI_2);
        let lon = phi.rem_euclid(TAU);
        Ok(match self.ordering {
            Ordering::Nested => self.layer().hash(lon, lat),
            Ordering::Ring => cdshealpix::ring::hash(self.nside, lon, lat),
        })
    }

    /// The pixel containing the direction of vector `v` (need not be normalised).
    pub fn vec2pix(&self, v: [f64; 3]) -> Result<u64> {
        let (theta, phi) = vec2ang(v)?;
        self.ang2pix(theta, phi)
    }

    /// The 8 neighbours of `pix` in healpy's order SW, W, NW, N, NE, E, SE, S
    /// ([`Direction::ALL`]); `None` where the pixel has no neighbour in that
    /// direction (one slot of each of the 24 pixels around the 8 corners where
    /// only three base faces meet, for nside ≥ 2).
    pub fn neighbours(&self, pix: u64) -> Result<[Option<u64>; 8]> {
        self.check_pixel(pix)?;
        let mut out = [None; 8];
        match self.ordering {
            Ordering::Nested => {
                let map = self.layer().neighbours(pix, false);
                for (slot, dir) in Direction::ALL.iter().enumerate() {
                    out[slot] = map.get(dir.main_wind()).copied();
                }
            }
            Ordering::Ring => {
                let raw = faces::ring_neighbours(self.nside as i64, pix as i64);
                for (slot, &n) in raw.iter().enumerate() {
                    out[slot] = (n >= 0).then_some(n as u64);
                }
            }
        }
        Ok(out)
    }

    /// The NESTED index of this grid's pixel `pix` (identity on NESTED grids).
    pub fn to_nested(&self, pix: u64) -> Result<u64> {
        self.check_pixel(pix)?;
        match self.ordering {
            Ordering::Nested => Ok(pix),
            Ordering::Ring => {
                check_nside(self.nside as u64, Ordering::Nested)?;
                Ok(self.layer().from_ring(pix))
            }
        }
    }

    /// The RING index of this grid's pixel `pix` (identity on RING grids).
    pub fn to_ring(&self, pix: u64) -> Result<u64> {
        self.check_pixel(pix)?;
        Ok(match self.ordering {
            Ordering::Ring => pix,
            Ordering::Nested => self.layer().to_ring(pix),
        })
    }

    /// Index in `other`'s ordering of this grid's pixel `pix`; both grids must share the nside.
    pub fn convert(&self, pix: u64, other: Ordering) -> Result<u64> {
        match other {
            Ordering::Ring => self.to_ring(pix),
            Ordering::Nested => self.to_nested(pix),
        }
    }

    /// Unit vectors of all pixel centres, in this grid's order (computed in
    /// parallel, by HEALPix's closed forms for the centres of each ring).
    pub fn centers(&self) -> Vec<[f64; 3]> {
        let rc = RingCenters::new(self.nside);
        let mut out = vec![[0.0; 3]; self.npix() as usize];
        out.par_chunks_mut(4096).enumerate().for_each(|(c, chunk)| {
            let base = (c * 4096) as u64;
            for (i, v) in chunk.iter_mut().enumerate() {
                let p = base + i as u64;
                let ring = match self.ordering {
                    Ordering::Ring => p,
                    Ordering::Nested => self.layer().to_ring(p),
                };
                *v = rc.vec(ring);
            }
        });
        out
    }

    /// `(theta, phi)` of all pixel centres, in this grid's order.
    pub fn centers_ang(&self) -> (Vec<f64>, Vec<f64>) {
        (0..self.npix())
            .into_par_iter()
            .map(|p| {
                let (lon, lat) = self.center_lonlat(p);
                (FRAC_PI_2 - lat, lon_to_phi(lon))
            })
            .unzip()
    }
}

/// NESTED index of RING pixel `pix` at a power-of-two `nside`.
pub fn ring2nest(nside: u32, pix: u64) -> Result<u64> {
    HealpixGrid::new(nside, Ordering::Nested)?;
    HealpixGrid::ring(nside)?.to_nested(pix)
}

/// RING index of NESTED pixel `pix` at a power-of-two `nside`.
pub fn nest2ring(nside: u32, pix: u64) -> Result<u64> {
    HealpixGrid::nested(nside)?.to_ring(pix)
}

/// Angular distance in radians between two unit vectors, accurate for small
/// and large angles alike (atan2 of the cross and dot products).
pub fn angular_distance(a: [f64; 3], b: [f64; 3]) -> f64 {
    let cross = [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ];
    let s = (cross[0] * cross[0] + cross[1] * cross[1] + cross[2] * cross[2]).sqrt();
    let c = a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
    s.atan2(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_nsides() {
        assert!(matches!(
            HealpixGrid::ring(0),
            Err(Error::InvalidNside { nside: 0, .. })
        ));
        assert!(HealpixGrid::nested(3).is_err());
        assert!(HealpixGrid::ring(3).is_ok());
        assert!(HealpixGrid::nested(1 << 29).is_ok());
        assert!(HealpixGrid::nested(1 << 30).is_err());
        let msg = HealpixGrid::nested(6).unwrap_err().to_string();
        assert!(msg.contains("power of two"), "{msg}");
    }

    #[test]
    fn rejects_bad_pixels_and_directions() {
        let g = HealpixGrid::ring(2).unwrap();
        assert!(matches!(
            g.pix2ang(48),
            Err(Error::PixelOutOfRange { pixel: 48, .. })
        ));
        assert!(g.ang2pix(f64::NAN, 0.0).is_err());
        assert!(g.ang2pix(-0.1, 0.0).is_err());
        assert!(g.vec2pix([0.0, 0.0, 0.0]).is_err());
        assert!(HealpixGrid::ring(6).unwrap().to_nested(0).is_err());
    }

    #[test]
    fn large_nested_pixels_use_64_bits() {
        let g = HealpixGrid::nested(1 << 29).unwrap();
        let last = g.npix() - 1;
        assert!(last > u32::MAX as u64);
        let ring = g.with_ordering(Ordering::Ring).unwrap();
        for pix in [
            last,
            last - 123_456_789,
            5 << 58 | 0x1234_5678_9ABC,
            1 << 40,
        ] {
            let r = g.to_ring(pix).unwrap();
            assert_eq!(ring.to_nested(r).unwrap(), pix);
            let (t, p) = g.pix2ang(pix).unwrap();
            assert_eq!(g.ang2pix(t, p).unwrap(), pix);
            assert_eq!(g.vec2pix(g.pix2vec(pix).unwrap()).unwrap(), pix);
        }
    }

    #[test]
    fn npix_nside_round_trip() {
        for n in [1u32, 2, 3, 7, 64, 1000] {
            assert_eq!(npix2nside(nside2npix(n)), Some(n));
        }
        assert_eq!(npix2nside(13), None);
        assert_eq!(npix2nside(12 * 5), None);
    }

    #[test]
    fn angular_distance_is_accurate() {
        let a = ang2vec(1.0, 2.0);
        assert_eq!(angular_distance(a, a), 0.0);
        let b = ang2vec(1.0 + 1e-9, 2.0);
        assert!((angular_distance(a, b) - 1e-9).abs() < 1e-15);
        let c = ang2vec(PI - 1.0, 2.0 + PI);
        assert!((angular_distance(a, c) - PI).abs() < 1e-12);
    }
}
