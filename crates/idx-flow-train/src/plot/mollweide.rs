//! HEALPix maps in the Mollweide projection (equal-area, the whole sphere in an
//! ellipse twice as wide as high), geographic orientation: longitude 0 at the
//! centre, east to the right, north up. Each picture pixel shows the HEALPix
//! pixel containing its centre's direction.

use image::{Rgb, RgbImage};
use rayon::prelude::*;

use super::colormap::{nice_ticks, tick_label, viridis};
use super::font::{HEIGHT, draw_text_centered};
use crate::{Error, Result};
use idx_flow_healpix::geometry::HealpixGrid;

const SQRT2: f64 = std::f64::consts::SQRT_2;
/// Background outside the ellipse.
pub const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([20, 20, 20]);

/// The unit vector shown at picture pixel `(px, py)` of a `w x h` Mollweide
/// ellipse (`h = w / 2`), or `None` outside it.
pub fn inverse(px: u32, py: u32, w: u32, h: u32) -> Option<[f64; 3]> {
    let x = (px as f64 + 0.5) / w as f64 * 4.0 * SQRT2 - 2.0 * SQRT2;
    let y = SQRT2 - (py as f64 + 0.5) / h as f64 * 2.0 * SQRT2;
    if (x / (2.0 * SQRT2)).powi(2) + (y / SQRT2).powi(2) > 1.0 {
        return None;
    }
    let theta = (y / SQRT2).clamp(-1.0, 1.0).asin();
    let lat = ((2.0 * theta + (2.0 * theta).sin()) / std::f64::consts::PI)
        .clamp(-1.0, 1.0)
        .asin();
    let lon = std::f64::consts::PI * x / (2.0 * SQRT2 * theta.cos().max(1e-12));
    if lon.abs() > std::f64::consts::PI {
        return None;
    }
    Some([lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()])
}

/// For each picture pixel of a `w x w/2` ellipse, the HEALPix pixel it shows (row-major).
fn pixel_lookup(grid: HealpixGrid, w: u32) -> Vec<Option<usize>> {
    let h = w / 2;
    (0..w * h)
        .into_par_iter()
        .map(|i| {
            let (px, py) = (i % w, i / w);
            inverse(px, py, w, h).and_then(|v| grid.vec2pix(v).ok().map(|p| p as usize))
        })
        .collect()
}

fn check(grid: HealpixGrid, len: usize, per_pixel: usize, what: &str) -> Result<()> {
    let n = grid.npix() as usize;
    if len != n * per_pixel {
        return Err(Error::Shape {
            context: format!("{what} for {grid}"),
            expected: format!("{} values ({n} pixels x {per_pixel})", n * per_pixel),
            got: format!("{len} values"),
        });
    }
    Ok(())
}

/// healpy's colour of masked pixels (`UNSEEN`, NaN): grey, outside the colour scale.
pub const MASKED: Rgb<u8> = Rgb([128, 128, 128]);

/// Whether a value is drawn as masked: `UNSEEN`, NaN or infinite.
fn masked(v: f32) -> bool {
    !v.is_finite() || crate::data::mask::is_unseen(v)
}

/// True-colour picture of an RGB map (`[N, 3]` pixel-major, values in
/// `[0, 1]`, clamped; a pixel with a masked channel is grey).
pub fn rgb_map(grid: HealpixGrid, rgb: &[f32], width: u32) -> Result<RgbImage> {
    check(grid, rgb.len(), 3, "RGB map")?;
    let lookup = pixel_lookup(grid, width);
    let mut img = RgbImage::from_pixel(width, width / 2, BACKGROUND);
    for (i, p) in lookup.iter().enumerate() {
        if let Some(p) = p {
            let colour = if (0..3).any(|k| masked(rgb[p * 3 + k])) {
                MASKED
            } else {
                Rgb([0, 1, 2].map(|k| (rgb[p * 3 + k].clamp(0.0, 1.0) * 255.0).round() as u8))
            };
            img.put_pixel(i as u32 % width, i as u32 / width, colour);
        }
    }
    Ok(img)
}

/// viridis picture of a scalar map (`[N]`) on `[lo, hi]`; masked pixels
/// (`UNSEEN`, NaN) are grey.
pub fn scalar_map(
    grid: HealpixGrid,
    values: &[f32],
    width: u32,
    lo: f64,
    hi: f64,
) -> Result<RgbImage> {
    check(grid, values.len(), 1, "scalar map")?;
    let lookup = pixel_lookup(grid, width);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let mut img = RgbImage::from_pixel(width, width / 2, BACKGROUND);
    for (i, p) in lookup.iter().enumerate() {
        if let Some(p) = p {
            let v = values[*p];
            let colour = if masked(v) {
                MASKED
            } else {
                viridis((v as f64 - lo) / span)
            };
            img.put_pixel(i as u32 % width, i as u32 / width, colour);
        }
    }
    Ok(img)
}

/// Minimum and maximum of the values that are not masked (`UNSEEN`, NaN,
/// infinite); `(0, 1)` if there are none.
pub fn finite_range(values: &[f32]) -> (f64, f64) {
    let (lo, hi) = values
        .iter()
        .filter(|v| !masked(**v))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v as f64), hi.max(*v as f64))
        });
    if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) }
}

/// A figure: `title` above `map`, and when `bar` is given (`(lo, hi, label)`)
/// a viridis colour bar with ticks below.
pub fn figure(map: &RgbImage, title: &str, bar: Option<(f64, f64, &str)>) -> RgbImage {
    let scale = 2;
    let (w, mh) = (map.width(), map.height());
    let top = HEIGHT * scale + 16;
    let bottom = if bar.is_some() { 70 } else { 8 };
    let mut img = RgbImage::from_pixel(w, top + mh + bottom, BACKGROUND);
    draw_text_centered(&mut img, w as i64 / 2, 8, title, scale, INK);
    image::imageops::overlay(&mut img, map, 0, top as i64);
    if let Some((lo, hi, label)) = bar {
        let (bx, bw, by, bh) = (w / 6, w * 2 / 3, top + mh + 6, 14);
        for x in 0..bw {
            let c = viridis((x as f64 + 0.5) / bw as f64);
            for y in 0..bh {
                img.put_pixel(bx + x, by + y, c);
            }
        }
        for x in [bx - 1, bx + bw] {
            for y in by..by + bh {
                img.put_pixel(x, y, INK);
            }
        }
        let span = if hi > lo { hi - lo } else { 1.0 };
        for t in nice_ticks(lo, hi, 5) {
            let x = bx as f64 + (t - lo) / span * bw as f64;
            let xi = (x.round() as u32).min(bx + bw - 1);
            for y in by + bh..by + bh + 4 {
                img.put_pixel(xi, y, INK);
            }
            draw_text_centered(
                &mut img,
                xi as i64,
                (by + bh + 6) as i64,
                &tick_label(t),
                1,
                INK,
            );
        }
        draw_text_centered(&mut img, w as i64 / 2, (by + bh + 20) as i64, label, 2, INK);
    }
    img
}

/// Draws a HEALPix map (`[N]`, any ordering) as a titled Mollweide figure with a colour bar
/// (range: `range` or the map's finite minimum and maximum).
///
/// ```
/// use idx_flow_healpix::geometry::HealpixGrid;
/// use idx_flow_train::plot::mollweide::map_figure;
/// let grid = HealpixGrid::ring(4)?;
/// let z: Vec<f32> = grid.centers().iter().map(|v| v[2] as f32).collect();
/// let img = map_figure(grid, &z, 400, "SIN LATITUDE", None, "Z")?;
/// assert_eq!(img.width(), 400);
/// # Ok::<(), idx_flow_train::Error>(())
/// ```
pub fn map_figure(
    grid: HealpixGrid,
    values: &[f32],
    width: u32,
    title: &str,
    range: Option<(f64, f64)>,
    label: &str,
) -> Result<RgbImage> {
    if width < 64 {
        return Err(Error::arg(
            "width",
            format!("got {width}, expected at least 64 pixels"),
        ));
    }
    let (lo, hi) = range.unwrap_or_else(|| finite_range(values));
    let map = scalar_map(grid, values, width, lo, hi)?;
    Ok(figure(&map, title, Some((lo, hi, label))))
}
