//! Pictures: HEALPix maps in the Mollweide projection with colour bars
//! ([`mollweide`]), loss curves ([`chart`]), rate–distortion curves
//! ([`rate_distortion`]), PNG files written atomically.
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
pub mod rate_distortion;

use std::path::Path;

use image::RgbImage;

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
