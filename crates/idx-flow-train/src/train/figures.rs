//! The pictures of a training run, drawn with [`plot`](crate::plot) from the
//! run's data, and its rate–distortion picture beside the runs next to it.

use std::path::Path;

use crate::Result;
use crate::data::{Sample, SphereDataset};
use crate::train::Metrics;

/// Width of the run figures' maps.
pub const FIGURE_WIDTH: u32 = 800;

/// The pictures of a training run in `out`: `input.png`, `reconstruction.png`
/// (true colour for 3-channel data in `[0, 1]`, channel 0 with a colour bar
/// otherwise), `error.png` (absolute error, mean over channels, with a colour
/// bar) and `loss.png`. `input` and `recon` are `[N, C]` on the dataset's
/// grid; the input's masked pixels are grey in all three maps, as in healpy.
pub fn write_run_figures(
    out: &Path,
    data: &SphereDataset,
    input: &Sample,
    recon: &[f32],
    losses: &[f64],
) -> Result<()> {
    let grid = data.grid();
    let c = data.channels();
    let n = data.npix();
    // Masked values become NaN, which the maps draw grey.
    let masked = |x: &[f32]| -> Vec<f32> {
        let mut x = x.to_vec();
        if let Some(valid) = &input.valid {
            for (v, ok) in x.iter_mut().zip(valid) {
                if !ok {
                    *v = f32::NAN;
                }
            }
        }
        x
    };
    let (input, recon) = (&masked(&input.values)[..], &masked(recon)[..]);
    let rgb = c == 3 && data.peak() == 1.0;
    let channel0 = |x: &[f32]| x.iter().step_by(c).copied().collect::<Vec<f32>>();
    let (lo, hi) = crate::plot::mollweide::finite_range(&channel0(input));
    for (name, title, values) in [
        ("input.png", "INPUT (HELD-OUT VIEW)", input),
        ("reconstruction.png", "RECONSTRUCTION", recon),
    ] {
        let img = if rgb {
            crate::plot::mollweide::figure(
                &crate::plot::mollweide::rgb_map(grid, values, FIGURE_WIDTH)?,
                title,
                None,
            )
        } else {
            let m =
                crate::plot::mollweide::scalar_map(grid, &channel0(values), FIGURE_WIDTH, lo, hi)?;
            crate::plot::mollweide::figure(&m, title, Some((lo, hi, "CHANNEL 0")))
        };
        crate::plot::save_png(&img, &out.join(name))?;
    }
    // Mean over the valid channels of each pixel (NaN, grey, where none is).
    let err: Vec<f32> = (0..n)
        .map(|p| {
            let valid: Vec<f32> = (0..c)
                .map(|k| (recon[p * c + k] - input[p * c + k]).abs())
                .filter(|e| !e.is_nan())
                .collect();
            valid.iter().sum::<f32>() / valid.len() as f32
        })
        .collect();
    let (_, emax) = crate::plot::mollweide::finite_range(&err);
    let emap = crate::plot::mollweide::scalar_map(grid, &err, FIGURE_WIDTH, 0.0, emax)?;
    let label = if c > 1 {
        "|ERROR|, MEAN OVER CHANNELS"
    } else {
        "|ERROR|"
    };
    crate::plot::save_png(
        &crate::plot::mollweide::figure(&emap, "ERROR", Some((0.0, emax, label))),
        &out.join("error.png"),
    )?;
    crate::plot::save_png(
        &crate::plot::chart::loss_curve(losses, 800, 450, "TRAINING LOSS (MSE)"),
        &out.join("loss.png"),
    )
}

/// The finished runs beside `out` (its parent's other subdirectories) that
/// were evaluated as `metrics` was: the same data, grid and held-out
/// samples. Directories whose `metrics.json` is missing or unreadable are
/// not runs of this kind and are passed over.
fn sibling_runs(out: &Path, metrics: &Metrics) -> Vec<Metrics> {
    let Some(parent) = out.parent() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let own = out.file_name();
    let mut runs: Vec<(std::ffi::OsString, Metrics)> = entries
        .flatten()
        .filter(|e| Some(e.file_name().as_os_str()) != own)
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path().join("metrics.json")).ok()?;
            let m: Metrics = serde_json::from_str(&text).ok()?;
            let comparable = m.data == metrics.data
                && m.source == metrics.source
                && m.nside == metrics.nside
                && m.heldout == metrics.heldout
                && m.psnr_peak == metrics.psnr_peak;
            comparable.then(|| (e.file_name(), m))
        })
        .collect();
    // Directory order is the file system's; sort for a reproducible picture.
    runs.sort_by(|a, b| a.0.cmp(&b.0));
    runs.into_iter().map(|(_, m)| m).collect()
}

/// `rate_distortion.png` in `out`: held-out PSNR against compression for this
/// run (large marker), the comparable finished runs beside it (the model's
/// curve: runs at several latent sizes), and the classical compressors of
/// `metrics.baseline_curves`.
pub fn write_rate_distortion(out: &Path, metrics: &Metrics) -> Result<()> {
    use crate::plot::rate_distortion::{Series, rate_distortion};
    use crate::train::BaselineMethod;
    let here = (metrics.compression_ratio, metrics.heldout_psnr_db);
    let mut model: Vec<(f64, f64)> = sibling_runs(out, metrics)
        .iter()
        .map(|m| (m.compression_ratio, m.heldout_psnr_db))
        .collect();
    model.push(here);
    let curve = |method: BaselineMethod| -> Vec<(f64, f64)> {
        metrics
            .baseline_curves
            .iter()
            .filter(|b| b.method == method)
            .map(|b| (b.compression_ratio, b.heldout_psnr_db))
            .collect()
    };
    let series = [
        Series {
            label: "AUTOENCODER (THIS RUN, RUNS BESIDE IT)".into(),
            colour: image::Rgb([200, 40, 40]),
            points: model,
            highlight: vec![here],
        },
        Series {
            label: "SPHERICAL-HARMONIC TRUNCATION".into(),
            colour: image::Rgb([30, 90, 200]),
            points: curve(BaselineMethod::ShTruncation),
            highlight: vec![],
        },
        Series {
            label: "POOLED, BILINEAR BACK".into(),
            colour: image::Rgb([230, 140, 20]),
            points: curve(BaselineMethod::PooledInterpolated),
            highlight: vec![],
        },
    ];
    crate::plot::save_png(
        &rate_distortion(&series, 800, 500, "HELD-OUT PSNR AGAINST COMPRESSION"),
        &out.join("rate_distortion.png"),
    )
}
