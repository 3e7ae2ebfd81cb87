//! The rate–distortion picture: held-out PSNR against compression ratio for a
//! learned compressor and the classical ones, each a series of points joined
//! in order of compression.

use image::{Rgb, RgbImage};

use super::chart::{GRID, INK, line, put_clipped};
use super::colormap::{nice_ticks, tick_label};
use super::font::{HEIGHT, draw_text, draw_text_centered, text_width};

/// One curve of the picture.
#[derive(Clone, Debug)]
pub struct Series {
    /// The legend's text.
    pub label: String,
    /// Its colour.
    pub colour: Rgb<u8>,
    /// `(compression ratio, PSNR dB)`; drawn sorted by ratio.
    pub points: Vec<(f64, f64)>,
    /// Points drawn larger (the run this picture belongs to).
    pub highlight: Vec<(f64, f64)>,
}

fn marker(img: &mut RgbImage, (x, y): (f64, f64), half: i64, colour: Rgb<u8>) {
    for dx in -half..=half {
        for dy in -half..=half {
            put_clipped(img, x.round() as i64 + dx, y.round() as i64 + dy, colour);
        }
    }
}

/// A `width x height` picture of `series` with the compression ratio on a
/// base-2 logarithmic x axis and PSNR (dB) on a linear y axis.
///
/// ```
/// use idx_flow_train::plot::rate_distortion::{Series, rate_distortion};
/// let sh = Series {
///     label: "SH truncation".into(),
///     colour: image::Rgb([30, 90, 200]),
///     points: vec![(6.0, 27.0), (24.0, 22.7), (96.0, 19.5)],
///     highlight: vec![],
/// };
/// let img = rate_distortion(&[sh], 800, 500, "HELD-OUT PSNR");
/// assert_eq!(img.dimensions(), (800, 500));
/// ```
pub fn rate_distortion(series: &[Series], width: u32, height: u32, title: &str) -> RgbImage {
    let mut img = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let (left, right, top, bottom) = (70.0, 20.0, 40.0, 60.0);
    let (pw, ph) = (width as f64 - left - right, height as f64 - top - bottom);
    draw_text_centered(&mut img, width as i64 / 2, 10, title, 2, INK);
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().chain(&s.highlight))
        .copied()
        .filter(|(x, y)| *x > 0.0 && x.is_finite() && y.is_finite())
        .collect();
    if all.is_empty() || pw < 10.0 || ph < 10.0 {
        return img;
    }
    let fold = |f: fn(f64, f64) -> f64, init: f64, pick: fn(&(f64, f64)) -> f64| {
        all.iter().map(pick).fold(init, f)
    };
    let x_lo = fold(f64::min, f64::INFINITY, |p| p.0).log2().floor();
    let x_hi = fold(f64::max, 0.0, |p| p.0).log2().ceil().max(x_lo + 1.0);
    let y_lo = fold(f64::min, f64::INFINITY, |p| p.1).floor() - 0.5;
    let y_hi = fold(f64::max, f64::NEG_INFINITY, |p| p.1).ceil() + 0.5;
    let xs = |r: f64| left + (r.log2() - x_lo) / (x_hi - x_lo) * pw;
    let ys = |v: f64| top + (y_hi - v) / (y_hi - y_lo) * ph;
    for v in nice_ticks(y_lo, y_hi, 10) {
        let y = ys(v);
        line(&mut img, (left, y), (left + pw, y), GRID, 1);
        let label = tick_label(v);
        let lx = left as i64 - 8 - text_width(&label, 1) as i64;
        draw_text(&mut img, lx, y as i64 - HEIGHT as i64 / 2, &label, 1, INK);
    }
    let mut e = x_lo;
    while e <= x_hi + 1e-9 {
        let x = xs(e.exp2());
        line(&mut img, (x, top), (x, top + ph), GRID, 1);
        let label = format!("{}X", tick_label(e.exp2()));
        draw_text_centered(&mut img, x as i64, (top + ph + 8.0) as i64, &label, 1, INK);
        e += 1.0;
    }
    let bottom_label = "COMPRESSION (VALUES IN / VALUES KEPT)";
    draw_text_centered(
        &mut img,
        (left + pw / 2.0) as i64,
        (height - 24) as i64,
        bottom_label,
        2,
        INK,
    );
    draw_text(&mut img, 8, top as i64 - 16, "PSNR DB", 1, INK);
    for s in series {
        let mut pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|(x, y)| *x > 0.0 && x.is_finite() && y.is_finite())
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let px: Vec<(f64, f64)> = pts.iter().map(|&(x, y)| (xs(x), ys(y))).collect();
        for w in px.windows(2) {
            line(&mut img, w[0], w[1], s.colour, 2);
        }
        for &p in &px {
            marker(&mut img, p, 3, s.colour);
        }
        for &(x, y) in &s.highlight {
            marker(&mut img, (xs(x), ys(y)), 6, INK);
            marker(&mut img, (xs(x), ys(y)), 4, s.colour);
        }
    }
    // Legend, top right.
    let lw = series
        .iter()
        .map(|s| text_width(&s.label, 1))
        .max()
        .unwrap_or(0) as f64
        + 30.0;
    let (lx, mut ly) = (left + pw - lw - 6.0, top + 8.0);
    for s in series {
        marker(&mut img, (lx + 8.0, ly + 3.0), 4, s.colour);
        draw_text(&mut img, (lx + 20.0) as i64, ly as i64, &s.label, 1, INK);
        ly += 14.0;
    }
    line(&mut img, (left, top), (left, top + ph), INK, 1);
    line(&mut img, (left, top + ph), (left + pw, top + ph), INK, 1);
    img
}
