//! The pictures of a training run, drawn with [`plot`](crate::plot) from the
//! run's data.

use std::path::Path;

use crate::Result;
use crate::data::{Sample, SphereDataset};

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
