//! Edge weights from distances: idx_flow's `get_weights`, the interpolation
//! weights of its `SpatialUpsampling`, and `get_healpix_resolution_info`.

use std::fmt;
use std::str::FromStr;

use super::EARTH_RADIUS_KM;
use crate::error::{Error, Result};

/// Distance weighting of idx_flow's `get_weights`; rows are normalised to sum to one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum WeightMethod {
    /// `1 / (d² + ε)`.
    #[default]
    InverseSquare,
    /// `exp(-½ (d/σ)²)`, σ = `sigma_factor` × the row's mean distance.
    Gaussian,
    /// `exp(-d/s)`, s = `sigma_factor` × the row's mean distance.
    Exponential,
    /// `(1 - (d/d_max)³)³`, d_max the row's largest distance.
    Tricube,
}

impl WeightMethod {
    /// All methods, in idx_flow's order.
    pub const ALL: [WeightMethod; 4] = [
        WeightMethod::InverseSquare,
        WeightMethod::Gaussian,
        WeightMethod::Exponential,
        WeightMethod::Tricube,
    ];

    /// idx_flow's name of the method.
    pub fn as_str(self) -> &'static str {
        match self {
            WeightMethod::InverseSquare => "inverse_square",
            WeightMethod::Gaussian => "gaussian",
            WeightMethod::Exponential => "exponential",
            WeightMethod::Tricube => "tricube",
        }
    }
}

impl fmt::Display for WeightMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WeightMethod {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s.to_ascii_lowercase().replace('-', "_"))
            .ok_or_else(|| {
                Error::arg(
                    "weight method",
                    format!(
                        "unknown method '{s}', expected one of inverse_square, gaussian, exponential, tricube"
                    ),
                )
            })
    }
}

fn check_rows(distances: &[f64], k: usize) -> Result<()> {
    if k == 0 || !distances.len().is_multiple_of(k) {
        return Err(Error::Shape {
            context: "distance weights".into(),
            expected: format!("[N, k] with k = {k} >= 1"),
            got: format!("{} values", distances.len()),
        });
    }
    if let Some(bad) = distances.iter().find(|d| !(d.is_finite() && **d >= 0.0)) {
        return Err(Error::arg(
            "distances",
            format!("distance {bad} is not a finite non-negative number"),
        ));
    }
    Ok(())
}

/// idx_flow's `get_weights(distances, method, sigma_factor, epsilon)` on row-major `[N, k]` distances.
///
/// ```
/// use idx_flow_healpix::graphs::{WeightMethod, get_weights};
/// let w = get_weights(&[100.0, 200.0, 150.0, 250.0], 2, WeightMethod::InverseSquare, 0.5, 1e-10)?;
/// assert!((w[0] + w[1] - 1.0).abs() < 1e-12 && w[0] > w[1]);
/// # Ok::<(), idx_flow_healpix::Error>(())
/// ```
pub fn get_weights(
    distances: &[f64],
    k: usize,
    method: WeightMethod,
    sigma_factor: f64,
    epsilon: f64,
) -> Result<Vec<f64>> {
    check_rows(distances, k)?;
    if !(sigma_factor.is_finite() && sigma_factor > 0.0 && epsilon.is_finite() && epsilon > 0.0) {
        return Err(Error::arg(
            "sigma_factor/epsilon",
            format!("got {sigma_factor} and {epsilon}, expected finite positive numbers"),
        ));
    }
    let mut out = Vec::with_capacity(distances.len());
    for row in distances.chunks(k) {
        let mean = row.iter().sum::<f64>() / k as f64;
        let start = out.len();
        match method {
            WeightMethod::InverseSquare => out.extend(row.iter().map(|d| 1.0 / (d * d + epsilon))),
            WeightMethod::Gaussian => {
                let sigma = (mean * sigma_factor).max(epsilon);
                out.extend(row.iter().map(|d| (-0.5 * (d / sigma).powi(2)).exp()));
            }
            WeightMethod::Exponential => {
                let scale = (mean * sigma_factor).max(epsilon);
                out.extend(row.iter().map(|d| (-d / scale).exp()));
            }
            WeightMethod::Tricube => {
                let max = row
                    .iter()
                    .fold(f64::NEG_INFINITY, |m, &d| m.max(d))
                    .max(epsilon);
                out.extend(row.iter().map(|d| (1.0 - (d / max).powi(3)).powi(3)));
            }
        }
        let sum: f64 = out[start..].iter().sum();
        let norm = sum.max(epsilon);
        for w in &mut out[start..] {
            *w /= norm;
        }
    }
    Ok(out)
}

/// Interpolation kernel of idx_flow's `SpatialUpsampling`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Interpolation {
    /// `max(0, 1 - d/r)`.
    #[default]
    Linear,
    /// `1 / (d + 1e-10)²`.
    Idw,
    /// `exp(-½ (d/r)²)`.
    Gaussian,
}

impl Interpolation {
    /// idx_flow's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Interpolation::Linear => "linear",
            Interpolation::Idw => "idw",
            Interpolation::Gaussian => "gaussian",
        }
    }
}

impl fmt::Display for Interpolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Interpolation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "linear" => Ok(Interpolation::Linear),
            "idw" => Ok(Interpolation::Idw),
            "gaussian" => Ok(Interpolation::Gaussian),
            _ => Err(Error::arg(
                "interpolation",
                format!("unknown interpolation '{s}', expected linear, idw or gaussian"),
            )),
        }
    }
}

/// The interpolation weights of idx_flow's `SpatialUpsampling` on row-major
/// `[N, k]` distances: the kernel, then each row divided by `(sum + 1e-10)`.
///
/// `kernel_radius` defaults (as in idx_flow, also for `Some(0.0)`) to the
/// largest distance of all rows; it is in the unit of the distances.
pub fn upsampling_weights(
    distances: &[f64],
    k: usize,
    method: Interpolation,
    kernel_radius: Option<f64>,
) -> Result<Vec<f64>> {
    check_rows(distances, k)?;
    let radius = match kernel_radius {
        Some(r) if r != 0.0 => {
            if !(r.is_finite() && r > 0.0) {
                return Err(Error::arg(
                    "kernel_radius",
                    format!("got {r}, expected a finite positive distance"),
                ));
            }
            r
        }
        _ => distances.iter().fold(0.0f64, |m, &d| m.max(d)),
    };
    let mut out: Vec<f64> = distances
        .iter()
        .map(|&d| match method {
            Interpolation::Linear => (1.0 - d / radius).max(0.0),
            Interpolation::Idw => 1.0 / (d + 1e-10).powi(2),
            Interpolation::Gaussian => (-0.5 * (d / radius).powi(2)).exp(),
        })
        .collect();
    for row in out.chunks_mut(k) {
        let sum: f64 = row.iter().sum();
        for w in row {
            *w /= sum + 1e-10;
        }
    }
    Ok(out)
}

/// Size of a HEALPix pixel, as idx_flow's `get_healpix_resolution_info`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResolutionInfo {
    /// The nside.
    pub nside: u32,
    /// Number of pixels, `12·nside²`.
    pub npix: u64,
    /// `sqrt(4π / npix)` in degrees.
    pub resolution_deg: f64,
    /// The same on the Earth (radius 6371 km), in kilometres.
    pub resolution_km: f64,
    /// Pixel area in steradians.
    pub area_sr: f64,
    /// Pixel area on the Earth in km².
    pub area_km2: f64,
}

/// Resolution of a HEALPix grid of the given nside (any nside ≥ 1).
///
/// ```
/// let info = idx_flow_healpix::graphs::resolution_info(256)?;
/// assert_eq!(info.npix, 786_432);
/// assert!((info.resolution_deg - 0.229).abs() < 1e-3);
/// # Ok::<(), idx_flow_healpix::Error>(())
/// ```
pub fn resolution_info(nside: u32) -> Result<ResolutionInfo> {
    crate::geometry::check_nside(nside as u64, crate::geometry::Ordering::Ring)?;
    let npix = crate::geometry::nside2npix(nside);
    let area_sr = 4.0 * std::f64::consts::PI / npix as f64;
    let resolution_rad = area_sr.sqrt();
    Ok(ResolutionInfo {
        nside,
        npix,
        resolution_deg: resolution_rad.to_degrees(),
        resolution_km: resolution_rad.to_degrees()
            * (std::f64::consts::PI / 180.0)
            * EARTH_RADIUS_KM,
        area_sr,
        area_km2: area_sr * EARTH_RADIUS_KM * EARTH_RADIUS_KM,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_sum_to_one_and_decrease_with_distance() {
        let d = [10.0, 20.0, 30.0, 0.0, 5.0, 5.0];
        for m in WeightMethod::ALL {
            let w = get_weights(&d, 3, m, 0.5, 1e-10).unwrap();
            for row in w.chunks(3) {
                assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{m}");
            }
            assert!(w[0] >= w[1] && w[1] >= w[2], "{m}: {w:?}");
            assert_eq!(m.as_str().parse::<WeightMethod>().unwrap(), m);
        }
        assert_eq!(
            get_weights(&d, 3, WeightMethod::Tricube, 0.5, 1e-10).unwrap()[2],
            0.0
        );
    }

    #[test]
    fn upsampling_linear_reaches_zero_at_the_radius() {
        let d = [1.0, 2.0, 4.0, 1.0];
        let w = upsampling_weights(&d, 2, Interpolation::Linear, None).unwrap();
        // radius = 4: row 0 = [0.75, 0.5] / 1.25, row 1 = [0, 0.75] / 0.75.
        assert!((w[0] - 0.6).abs() < 1e-9 && (w[1] - 0.4).abs() < 1e-9);
        assert!((w[3] - 1.0).abs() < 1e-9);
        assert_eq!(w[2], 0.0);
        assert!(upsampling_weights(&d, 2, Interpolation::Linear, Some(-1.0)).is_err());
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(get_weights(&[1.0, 2.0, 3.0], 2, WeightMethod::Gaussian, 0.5, 1e-10).is_err());
        assert!(get_weights(&[1.0, f64::NAN], 2, WeightMethod::Gaussian, 0.5, 1e-10).is_err());
        assert!("cubic".parse::<WeightMethod>().is_err());
        assert!("nearest".parse::<Interpolation>().is_err());
        assert!(resolution_info(0).is_err());
    }
}
