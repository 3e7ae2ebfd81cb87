//! The loss curve: training loss per step on a logarithmic axis, with its
//! moving average.

use image::{Rgb, RgbImage};

use super::colormap::tick_label;
use super::font::{HEIGHT, draw_text, draw_text_centered, text_width};

pub(crate) const INK: Rgb<u8> = Rgb([20, 20, 20]);
pub(crate) const GRID: Rgb<u8> = Rgb([225, 225, 225]);
const RAW: Rgb<u8> = Rgb([160, 190, 230]);
const SMOOTH: Rgb<u8> = Rgb([20, 70, 160]);

/// Pixel `(x, y)` set to `c` where it lies inside `img`.
pub(crate) fn put_clipped(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, c);
    }
}

pub(crate) fn line(
    img: &mut RgbImage,
    (x0, y0): (f64, f64),
    (x1, y1): (f64, f64),
    c: Rgb<u8>,
    thick: i64,
) {
    let n = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
    for i in 0..=n {
        let t = i as f64 / n as f64;
        let (x, y) = (
            (x0 + (x1 - x0) * t).round() as i64,
            (y0 + (y1 - y0) * t).round() as i64,
        );
        for dx in 0..thick {
            for dy in 0..thick {
                put_clipped(img, x + dx - thick / 2, y + dy - thick / 2, c);
            }
        }
    }
}

/// A `width x height` picture of `losses` (one per step; non-positive values are skipped).
pub fn loss_curve(losses: &[f64], width: u32, height: u32, title: &str) -> RgbImage {
    let mut img = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let (left, right, top, bottom) = (90.0, 20.0, 40.0, 60.0);
    let (pw, ph) = (width as f64 - left - right, height as f64 - top - bottom);
    draw_text_centered(&mut img, width as i64 / 2, 10, title, 2, INK);
    let pos: Vec<f64> = losses
        .iter()
        .copied()
        .filter(|v| *v > 0.0 && v.is_finite())
        .collect();
    if pos.is_empty() || pw < 10.0 || ph < 10.0 {
        return img;
    }
    let lo = pos
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .log10()
        .floor();
    let hi = pos
        .iter()
        .copied()
        .fold(0.0, f64::max)
        .log10()
        .ceil()
        .max(lo + 1.0);
    let n = losses.len().max(2) as f64;
    let xs = |step: f64| left + (step - 1.0) / (n - 1.0) * pw;
    let ys = |v: f64| top + (hi - v.log10()) / (hi - lo) * ph;
    // Grid and y ticks at 1, 2, 5 × 10^k.
    let mut e = lo;
    while e <= hi {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powf(e);
            if v.log10() > hi + 1e-9 {
                continue;
            }
            let y = ys(v);
            line(&mut img, (left, y), (left + pw, y), GRID, 1);
            let label = tick_label(v);
            let lx = left as i64 - 8 - text_width(&label, 1) as i64;
            draw_text(&mut img, lx, y as i64 - HEIGHT as i64 / 2, &label, 1, INK);
        }
        e += 1.0;
    }
    // x ticks.
    for t in super::colormap::nice_ticks(1.0, losses.len() as f64, 6) {
        let x = xs(t);
        line(&mut img, (x, top), (x, top + ph), GRID, 1);
        draw_text_centered(
            &mut img,
            x as i64,
            (top + ph + 8.0) as i64,
            &tick_label(t),
            1,
            INK,
        );
    }
    draw_text_centered(
        &mut img,
        (left + pw / 2.0) as i64,
        (height - 24) as i64,
        "STEP",
        2,
        INK,
    );
    // Raw losses, then a moving average over 1/50 of the run.
    let pts: Vec<(f64, f64)> = losses
        .iter()
        .enumerate()
        .filter(|(_, v)| **v > 0.0 && v.is_finite())
        .map(|(i, v)| (xs(i as f64 + 1.0), ys(*v)))
        .collect();
    for w in pts.windows(2) {
        line(&mut img, w[0], w[1], RAW, 1);
    }
    let k = (losses.len() / 50).max(1);
    let smooth: Vec<(f64, f64)> = (0..losses.len())
        .filter_map(|i| {
            let a = i.saturating_sub(k / 2);
            let b = (i + k / 2 + 1).min(losses.len());
            let win: Vec<f64> = losses[a..b].iter().copied().filter(|v| *v > 0.0).collect();
            (!win.is_empty()).then(|| {
                (
                    xs(i as f64 + 1.0),
                    ys(win.iter().sum::<f64>() / win.len() as f64),
                )
            })
        })
        .collect();
    for w in smooth.windows(2) {
        line(&mut img, w[0], w[1], SMOOTH, 2);
    }
    // Axes box.
    line(&mut img, (left, top), (left, top + ph), INK, 1);
    line(&mut img, (left, top + ph), (left + pw, top + ph), INK, 1);
    img
}
