//! Colour maps and tick placement.

use image::Rgb;

/// viridis (matplotlib's default), sampled at nine points and interpolated linearly.
const VIRIDIS: [[f32; 3]; 9] = [
    [68.0, 1.0, 84.0],
    [71.0, 44.0, 122.0],
    [59.0, 81.0, 139.0],
    [44.0, 113.0, 142.0],
    [33.0, 144.0, 141.0],
    [39.0, 173.0, 129.0],
    [92.0, 200.0, 99.0],
    [170.0, 220.0, 50.0],
    [253.0, 231.0, 37.0],
];

/// viridis at `t ∈ [0, 1]` (clamped; NaN is grey).
pub fn viridis(t: f64) -> Rgb<u8> {
    if t.is_nan() {
        return Rgb([128, 128, 128]);
    }
    let t = t.clamp(0.0, 1.0) * (VIRIDIS.len() - 1) as f64;
    let i = (t.floor() as usize).min(VIRIDIS.len() - 2);
    let f = (t - i as f64) as f32;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    Rgb([0, 1, 2].map(|k| (a[k] + (b[k] - a[k]) * f).round() as u8))
}

/// About `target` round tick values (1, 2 or 5 × 10^k steps) within `[lo, hi]`.
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if hi <= lo || !lo.is_finite() || !hi.is_finite() {
        return vec![lo];
    }
    let raw = (hi - lo) / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = vec![];
    while t <= hi + step * 1e-9 {
        out.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    out
}

/// A short label for a tick value (`0.05`, `1.2E-3`, `250`).
pub fn tick_label(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if (1e-2..1e5).contains(&a) {
        let s = format!("{v:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    } else {
        let s = format!("{v:.1e}");
        s.replace(".0e", "e").to_uppercase()
    }
}
