//! The classical compressors a learned one is measured against, on the same
//! held-out samples: truncating each channel's spherical-harmonic series, and
//! averaging over NESTED children down to a coarser grid then interpolating
//! back bilinearly (healpy's `ud_grade` with `get_interp_val`).
//!
//! A compressor keeping `V` real values of a sample of `N·C` values has the
//! compression ratio `N·C / V`, as the autoencoder's latent has. A truncation
//! at degree `L` keeps `(L + 1)²` real values per channel (the `a_l0` are
//! real, the other `a_lm` complex with `m ≥ 0`); a grid of nside `n` keeps
//! `12·n²` per channel.
//!
//! Masked values (a sample's `valid` false) are left out of every error, as
//! the model's are; the compressors read them as the mean of the channel's
//! valid values (truncation) or leave them out of the averages (pooling).

use serde::{Deserialize, Serialize};

use idx_flow_healpix::geometry::{HealpixGrid, Ordering};
use idx_flow_healpix::sht::{Alm, SphericalTransform};

use super::metrics::psnr;
use crate::Result;
use crate::data::Sample;

/// `healpy.map2alm`'s default number of Jacobi iterations.
const SHT_ITER: usize = 3;

/// Which classical compressor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaselineMethod {
    /// Each channel's spherical-harmonic series cut at degree `lmax`.
    ShTruncation,
    /// Means over the NESTED children down to `nside`, interpolated back bilinearly.
    PooledInterpolated,
}

/// One classical compressor at one size, evaluated on the held-out samples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// The compressor.
    pub method: BaselineMethod,
    /// Its size parameter: `lmax` of the truncation, or the coarse grid's nside.
    pub size: usize,
    /// Real values it keeps per sample.
    pub values: usize,
    /// Values of a sample / values kept.
    pub compression_ratio: f64,
    /// MSE over the held-out samples' valid values, on the data's scale.
    pub heldout_mse: f64,
    /// `heldout_mse` as PSNR in dB (the run's `psnr_peak`).
    pub heldout_psnr_db: f64,
}

impl Baseline {
    /// A one-line description (`SH truncation lmax 44`, `pooled to nside 16, bilinear back`).
    pub fn describe(&self) -> String {
        match self.method {
            BaselineMethod::ShTruncation => format!("SH truncation lmax {}", self.size),
            BaselineMethod::PooledInterpolated => {
                format!("pooled to nside {}, bilinear back", self.size)
            }
        }
    }
}

/// The largest degree whose truncation keeps at most `values` real values of
/// `channels` channels on a grid of `nside` (at most `3·nside − 1`), or `None`
/// when even degree 0 keeps too many.
pub fn truncation_lmax(values: usize, channels: usize, nside: u32) -> Option<usize> {
    let per_channel = values / channels.max(1);
    let l = (per_channel as f64).sqrt().floor() as usize;
    // Guard the float square root at the boundary.
    let l = (l.saturating_sub(1)..=l + 1)
        .rev()
        .find(|&l| (l * l) <= per_channel)?;
    (l >= 1).then(|| (l - 1).min(3 * nside as usize - 1))
}

/// The nside coarser than `nside` (by halving) whose grid holds the number of
/// values nearest to `values` (by ratio), or `None` for nside 1.
pub fn pooled_nside(values: usize, channels: usize, nside: u32) -> Option<u32> {
    let kept = |n: u32| (12 * n as usize * n as usize * channels) as f64;
    let distance = |n: u32| (kept(n) / values.max(1) as f64).ln().abs();
    std::iter::successors(Some(nside / 2), |&n| (n > 1).then_some(n / 2))
        .filter(|&n| n >= 1)
        .min_by(|&a, &b| distance(a).total_cmp(&distance(b)))
}

/// An error unless every sample holds `npix·channels` values (and as many
/// validity flags, when it has them).
fn check_samples(grid: HealpixGrid, channels: usize, samples: &[Sample]) -> Result<()> {
    let want = grid.npix() as usize * channels;
    for (i, s) in samples.iter().enumerate() {
        let flags = s.valid.as_ref().map_or(want, Vec::len);
        if channels == 0 || s.values.len() != want || flags != want {
            return Err(crate::Error::Shape {
                context: format!("baseline sample {i}"),
                expected: format!("{want} values and flags ({grid}, {channels} channel(s))"),
                got: format!("{} values, {flags} flags", s.values.len()),
            });
        }
    }
    Ok(())
}

/// The squared error summed over `sample`'s valid values and their count.
fn squared_error(sample: &Sample, approx: &[f64]) -> (f64, usize) {
    let mut sum = 0.0;
    let mut count = 0;
    for (i, (&x, &y)) in sample.values.iter().zip(approx).enumerate() {
        if sample.valid.as_ref().is_none_or(|v| v[i]) {
            sum += (x as f64 - y).powi(2);
            count += 1;
        }
    }
    (sum, count)
}

/// Channel `k` of `sample` as f64, masked values replaced by the mean of the valid ones.
fn channel_filled(sample: &Sample, channels: usize, k: usize) -> Vec<f64> {
    let valid = |p: usize| sample.valid.as_ref().is_none_or(|v| v[p * channels + k]);
    let npix = sample.values.len() / channels;
    let (sum, n) = (0..npix)
        .filter(|&p| valid(p))
        .fold((0.0, 0usize), |(s, n), p| {
            (s + sample.values[p * channels + k] as f64, n + 1)
        });
    let mean = if n > 0 { sum / n as f64 } else { 0.0 };
    (0..npix)
        .map(|p| {
            if valid(p) {
                sample.values[p * channels + k] as f64
            } else {
                mean
            }
        })
        .collect()
}

/// The truncation of every sample at degree `lmax` (`[N, C]`, NESTED, as the samples).
pub fn sh_truncation(
    grid: HealpixGrid,
    channels: usize,
    samples: &[Sample],
    lmax: usize,
) -> Result<Vec<Vec<f64>>> {
    check_samples(grid, channels, samples)?;
    let plan = SphericalTransform::new(grid.nside(), lmax, None)?;
    samples
        .iter()
        .map(|sample| {
            let mut out = vec![0.0; sample.values.len()];
            for k in 0..channels {
                let map = channel_filled(sample, channels, k);
                let alm = plan.map2alm(&map, Ordering::Nested, SHT_ITER)?;
                let back = plan.alm2map(&alm, Ordering::Nested)?;
                for (p, v) in back.into_iter().enumerate() {
                    out[p * channels + k] = v;
                }
            }
            Ok(out)
        })
        .collect()
}

/// Every sample averaged over NESTED children down to `coarse` and
/// interpolated back bilinearly at the fine pixel centres (`[N, C]`, NESTED).
/// A coarse pixel without a valid child takes the channel's valid mean.
/// `grid` is NESTED and `coarse` a smaller power of two.
pub fn pooled_interpolated(
    grid: HealpixGrid,
    channels: usize,
    samples: &[Sample],
    coarse: u32,
) -> Result<Vec<Vec<f64>>> {
    check_samples(grid, channels, samples)?;
    if coarse >= grid.nside() {
        return Err(crate::Error::arg(
            "nside",
            format!(
                "pooling goes to a coarser grid: got nside {coarse}, expected below {}",
                grid.nside()
            ),
        ));
    }
    let coarse_grid = HealpixGrid::nested(coarse)?;
    let npix = grid.npix() as usize;
    let ncoarse = coarse_grid.npix() as usize;
    let children = npix / ncoarse;
    let weights = (0..grid.npix())
        .map(|p| {
            let (theta, phi) = grid.pix2ang(p)?;
            coarse_grid.interpolation_weights(theta, phi)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(samples
        .iter()
        .map(|sample| {
            let valid = |i: usize| sample.valid.as_ref().is_none_or(|v| v[i]);
            let mut out = vec![0.0; sample.values.len()];
            for k in 0..channels {
                let filled = channel_filled(sample, channels, k);
                let mean_all = filled.iter().sum::<f64>() / npix as f64;
                let pooled: Vec<f64> = (0..ncoarse)
                    .map(|q| {
                        let (s, n) = (q * children..(q + 1) * children)
                            .filter(|&p| valid(p * channels + k))
                            .fold((0.0, 0usize), |(s, n), p| (s + filled[p], n + 1));
                        if n > 0 { s / n as f64 } else { mean_all }
                    })
                    .collect();
                for (p, (pixels, w)) in weights.iter().enumerate() {
                    out[p * channels + k] = pixels
                        .iter()
                        .zip(w)
                        .map(|(&q, w)| pooled[q as usize] * w)
                        .sum();
                }
            }
            out
        })
        .collect())
}

/// MSE of `approx` (one `[N, C]` per sample) over the samples' valid values.
fn heldout_mse(samples: &[Sample], approx: &[Vec<f64>]) -> f64 {
    let (sum, count) = samples
        .iter()
        .zip(approx)
        .map(|(s, a)| squared_error(s, a))
        .fold((0.0, 0), |(s, n), (a, b)| (s + a, n + b));
    sum / count.max(1) as f64
}

/// Evaluates one compressor at one size on `samples`.
pub fn evaluate(
    method: BaselineMethod,
    size: usize,
    grid: HealpixGrid,
    channels: usize,
    samples: &[Sample],
    peak: f64,
) -> Result<Baseline> {
    let npix = grid.npix() as usize;
    let (approx, values) = match method {
        BaselineMethod::ShTruncation => (
            sh_truncation(grid, channels, samples, size)?,
            channels * Alm::real_values(size, size),
        ),
        BaselineMethod::PooledInterpolated => {
            let coarse = u32::try_from(size).map_err(|_| {
                crate::Error::arg("size", format!("nside {size} does not fit 32 bits"))
            })?;
            (
                pooled_interpolated(grid, channels, samples, coarse)?,
                channels * 12 * size * size,
            )
        }
    };
    let mse = heldout_mse(samples, &approx);
    Ok(Baseline {
        method,
        size,
        values,
        compression_ratio: (npix * channels) as f64 / values as f64,
        heldout_mse: mse,
        heldout_psnr_db: psnr(mse, peak),
    })
}

/// Both compressors over a range of sizes, for the rate–distortion picture,
/// and the two at the size of a latent of `latent_values` values: returns
/// `(at the latent's size, the curves)`. At the latent's size: the truncation
/// keeping at most as many values ([`truncation_lmax`]) and the pooled grid
/// nearest in size ([`pooled_nside`]). The curves: the truncation at
/// compression ratios 3·2^j (3 to 768, as far as the grid allows) and the
/// pooled grids of every coarser nside down to 1, with the latent's sizes.
pub fn evaluate_around(
    latent_values: usize,
    grid: HealpixGrid,
    channels: usize,
    samples: &[Sample],
    peak: f64,
) -> Result<(Vec<Baseline>, Vec<Baseline>)> {
    let total = grid.npix() as usize * channels;
    let latent_lmax = truncation_lmax(latent_values, channels, grid.nside());
    let mut lmaxes: Vec<usize> = (0..9)
        .filter_map(|j| truncation_lmax(total / (3 << j), channels, grid.nside()))
        .chain(latent_lmax)
        .collect();
    lmaxes.sort_unstable();
    lmaxes.dedup();
    let nsides = std::iter::successors(Some(grid.nside() / 2), |&n| (n > 1).then_some(n / 2))
        .filter(|&n| n >= 1);
    let sizes = lmaxes
        .into_iter()
        .map(|l| (BaselineMethod::ShTruncation, l))
        .chain(nsides.map(|n| (BaselineMethod::PooledInterpolated, n as usize)));
    let mut curves = Vec::new();
    for (method, size) in sizes {
        curves.push(evaluate(method, size, grid, channels, samples, peak)?);
    }
    let wanted = [
        latent_lmax.map(|l| (BaselineMethod::ShTruncation, l)),
        pooled_nside(latent_values, channels, grid.nside())
            .map(|n| (BaselineMethod::PooledInterpolated, n as usize)),
    ];
    let at_latent = wanted
        .into_iter()
        .flatten()
        .filter_map(|(method, size)| {
            curves
                .iter()
                .find(|b| b.method == method && b.size == size)
                .cloned()
        })
        .collect();
    Ok((at_latent, curves))
}
