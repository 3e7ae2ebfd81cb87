//! Pictures: HEALPix maps in the Mollweide projection with colour bars
//! ([`mollweide`]), loss curves ([`chart`]), PNG files written atomically.
//! Text is drawn with a built-in bitmap font ([`font`]), so pictures need no
//! system fonts.
//!
//! ```
//! use idx_flow_healpix::geometry::HealpixGrid;
//! use idx_flow_train::plot::{mollweide::map_figure, save_png};
//! let grid = HealpixGrid::nested(8)?;
//! let values: Vec<f32> = (0..grid.npix()).map(|p| p as f32).collect();
//! let img = map_figure(grid, &values, 400, "PIXEL INDEX", None, "INDEX")?;
//! let dir = std::env::temp_dir().join("idx-flow-plot-doc");
//! std::fs::create_dir_all(&dir).unwrap();
//! save_png(&img, &dir.join("index.png"))?;
//! # Ok::<(), idx_flow_train::Error>(())
//! ```

pub mod chart;
pub mod colormap;
pub mod font;
pub mod mollweide;

use std::path::Path;

use image::RgbImage;

use crate::data::SphereDataset;
use crate::{Error, Result};
use idx_flow_healpix::io::write_bytes_atomically;

/// Writes `img` as a PNG, atomically.
pub fn save_png(img: &RgbImage, path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| Error::format(path, format!("cannot encode PNG: {e}")))?;
    write_bytes_atomically(path, &bytes)
}

/// Width of the run figures' maps.
pub const FIGURE_WIDTH: u32 = 800;

/// The pictures of a training run in `out`: `input.png`, `reconstruction.png`
/// (true colour for 3-channel data in `[0, 1]`, channel 0 with a colour bar
/// otherwise), `error.png` (absolute error, mean over channels, with a colour
/// bar) and `loss.png`. `input` and `recon` are `[N, C]` on the dataset's grid.
pub fn write_run_figures(
    out: &Path,
    data: &SphereDataset,
    input: &[f32],
    recon: &[f32],
    losses: &[f64],
) -> Result<()> {
    let grid = data.grid();
    let c = data.channels();
    let n = data.npix();
    let rgb = c == 3 && data.peak() == 1.0;
    let channel0 = |x: &[f32]| x.iter().step_by(c).copied().collect::<Vec<f32>>();
    let (lo, hi) = mollweide::finite_range(&channel0(input));
    for (name, title, values) in [
        ("input.png", "INPUT (HELD-OUT VIEW)", input),
        ("reconstruction.png", "RECONSTRUCTION", recon),
    ] {
        let img = if rgb {
            mollweide::figure(
                &mollweide::rgb_map(grid, values, FIGURE_WIDTH)?,
                title,
                None,
            )
        } else {
            let m = mollweide::scalar_map(grid, &channel0(values), FIGURE_WIDTH, lo, hi)?;
            mollweide::figure(&m, title, Some((lo, hi, "CHANNEL 0")))
        };
        save_png(&img, &out.join(name))?;
    }
    let err: Vec<f32> = (0..n)
        .map(|p| {
            (0..c)
                .map(|k| (recon[p * c + k] - input[p * c + k]).abs())
                .sum::<f32>()
                / c as f32
        })
        .collect();
    let (_, emax) = mollweide::finite_range(&err);
    let emap = mollweide::scalar_map(grid, &err, FIGURE_WIDTH, 0.0, emax)?;
    let label = if c > 1 {
        "|ERROR|, MEAN OVER CHANNELS"
    } else {
        "|ERROR|"
    };
    save_png(
        &mollweide::figure(&emap, "ERROR", Some((0.0, emax, label))),
        &out.join("error.png"),
    )?;
    save_png(
        &chart::loss_curve(losses, 800, 450, "TRAINING LOSS (MSE)"),
        &out.join("loss.png"),
    )
}
