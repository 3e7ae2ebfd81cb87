//! Bilinear interpolation between pixel centres, as healpy's
//! `get_interp_weights` / `get_interp_val` do it: linear in longitude along
//! the ring just north and the ring just south of a direction, then linear in
//! colatitude between the two rings; next to a pole the missing ring is
//! replaced by the four pixels around the pole, equally weighted.

use std::f64::consts::{PI, TAU};

use super::{HealpixGrid, Ordering, ring2nest};
use crate::{Error, Result};

/// One iso-latitude ring (1-based index `1..4·nside`) in RING order.
struct RingInfo {
    start: u64,
    len: u64,
    theta: f64,
    /// The ring's first pixel sits half a pixel east of φ = 0.
    shifted: bool,
}

fn ring_info(nside: u64, ring: u64) -> RingInfo {
    let npix = 12 * nside * nside;
    let north = if ring > 2 * nside {
        4 * nside - ring
    } else {
        ring
    };
    let (mut start, len, mut theta, shifted) = if north < nside {
        // Polar cap: 1 − cos θ = north² / (3·nside²), computed without cancellation.
        let one_minus_z = (north * north) as f64 / (3 * nside * nside) as f64;
        let sin = (one_minus_z * (2.0 - one_minus_z)).sqrt();
        let theta = sin.atan2(1.0 - one_minus_z);
        (2 * north * (north - 1), 4 * north, theta, true)
    } else {
        let z = (2 * nside - north) as f64 * 2.0 / (3 * nside) as f64;
        let start = 2 * nside * (nside - 1) + (north - nside) * 4 * nside;
        (
            start,
            4 * nside,
            z.acos(),
            (north - nside).is_multiple_of(2),
        )
    };
    if north != ring {
        theta = PI - theta;
        start = npix - start - len;
    }
    RingInfo {
        start,
        len,
        theta,
        shifted,
    }
}

/// The ring whose centre is the nearest north of (or at) `cos θ = z`; 0
/// north of the first ring.
fn ring_above(nside: u64, z: f64) -> u64 {
    let n = nside as f64;
    let az = z.abs();
    if az <= 2.0 / 3.0 {
        return (n * (2.0 - 1.5 * z)) as u64;
    }
    let ring = (n * (3.0 * (1.0 - az)).sqrt()) as u64;
    if z > 0.0 { ring } else { 4 * nside - ring - 1 }
}

/// The two pixels of `ring` around longitude `phi` (in `[0, 2π)`), and their weights.
fn along_ring(info: &RingInfo, phi: f64) -> ([u64; 2], [f64; 2]) {
    let dphi = TAU / info.len as f64;
    let half = if info.shifted { 0.5 } else { 0.0 };
    let i = (phi / dphi - half).floor();
    let w = (phi - (i + half) * dphi) / dphi;
    let len = info.len as i64;
    let first = (i as i64).rem_euclid(len) as u64;
    let second = (i as i64 + 1).rem_euclid(len) as u64;
    ([info.start + first, info.start + second], [1.0 - w, w])
}

impl HealpixGrid {
    /// The four pixels around the direction `(theta, phi)` and their bilinear
    /// weights (summing to 1), in this grid's ordering: healpy's
    /// `get_interp_weights`. `theta` is a colatitude in `[0, π]`; `phi` any
    /// finite longitude.
    ///
    /// ```
    /// use idx_flow_healpix::geometry::HealpixGrid;
    ///
    /// let grid = HealpixGrid::ring(8)?;
    /// let (theta, phi) = grid.pix2ang(100)?;
    /// let (pixels, weights) = grid.interpolation_weights(theta, phi)?;
    /// // At a pixel centre all the weight is on that pixel.
    /// let at = pixels.iter().position(|&p| p == 100).unwrap();
    /// assert!((weights[at] - 1.0).abs() < 1e-12);
    /// assert!((weights.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    /// # Ok::<(), idx_flow_healpix::Error>(())
    /// ```
    pub fn interpolation_weights(&self, theta: f64, phi: f64) -> Result<([u64; 4], [f64; 4])> {
        if !(theta.is_finite() && (0.0..=PI).contains(&theta) && phi.is_finite()) {
            return Err(Error::InvalidDirection(format!(
                "theta {theta}, phi {phi} (expected colatitude in [0, π] and a finite longitude)"
            )));
        }
        let nside = self.nside() as u64;
        let npix = self.npix();
        let phi = phi.rem_euclid(TAU);
        let above = ring_above(nside, theta.cos());
        let below = above + 1;
        let mut pixels = [0u64; 4];
        let mut weights = [0.0f64; 4];
        let mut theta_above = 0.0;
        let mut theta_below = PI;
        if above > 0 {
            let info = ring_info(nside, above);
            theta_above = info.theta;
            let (p, w) = along_ring(&info, phi);
            pixels[..2].copy_from_slice(&p);
            weights[..2].copy_from_slice(&w);
        }
        if below < 4 * nside {
            let info = ring_info(nside, below);
            theta_below = info.theta;
            let (p, w) = along_ring(&info, phi);
            pixels[2..].copy_from_slice(&p);
            weights[2..].copy_from_slice(&w);
        }
        if above == 0 {
            // North of the first ring: the four pixels of that ring stand in
            // for the missing one, their mean being the value at the pole.
            let w_theta = theta / theta_below;
            let pole = (1.0 - w_theta) * 0.25;
            weights = [
                pole,
                pole,
                weights[2] * w_theta + pole,
                weights[3] * w_theta + pole,
            ];
            pixels[0] = (pixels[2] + 2) & 3;
            pixels[1] = (pixels[3] + 2) & 3;
        } else if below == 4 * nside {
            let w_theta = (theta - theta_above) / (PI - theta_above);
            let pole = w_theta * 0.25;
            weights = [
                weights[0] * (1.0 - w_theta) + pole,
                weights[1] * (1.0 - w_theta) + pole,
                pole,
                pole,
            ];
            pixels[2] = ((pixels[0] + 2) & 3) + npix - 4;
            pixels[3] = ((pixels[1] + 2) & 3) + npix - 4;
        } else {
            let w_theta = (theta - theta_above) / (theta_below - theta_above);
            weights[0] *= 1.0 - w_theta;
            weights[1] *= 1.0 - w_theta;
            weights[2] *= w_theta;
            weights[3] *= w_theta;
        }
        if self.ordering() == Ordering::Nested {
            for p in &mut pixels {
                *p = ring2nest(self.nside(), *p)?;
            }
        }
        Ok((pixels, weights))
    }

    /// The value of `map` (one value per pixel of this grid, in its
    /// ordering) at `(theta, phi)`, bilinearly interpolated: healpy's
    /// `get_interp_val`.
    ///
    /// ```
    /// use idx_flow_healpix::geometry::HealpixGrid;
    ///
    /// let grid = HealpixGrid::nested(4)?;
    /// let map = vec![2.5; grid.npix() as usize];
    /// assert!((grid.interpolate(&map, 1.0, 2.0)? - 2.5).abs() < 1e-12);
    /// # Ok::<(), idx_flow_healpix::Error>(())
    /// ```
    pub fn interpolate(&self, map: &[f64], theta: f64, phi: f64) -> Result<f64> {
        if map.len() as u64 != self.npix() {
            return Err(Error::InvalidArgument {
                name: "map",
                message: format!(
                    "{} values, expected one per pixel of {self} ({})",
                    map.len(),
                    self.npix()
                ),
            });
        }
        let (pixels, weights) = self.interpolation_weights(theta, phi)?;
        Ok(pixels
            .iter()
            .zip(weights)
            .map(|(&p, w)| map[p as usize] * w)
            .sum())
    }
}
