//! Masked pixels: healpy's `UNSEEN` marker, and NaN where the user asks for it.
//!
//! A masked pixel carries no value: training and evaluation average their
//! errors over the valid pixels only, pictures draw masked pixels grey, and
//! `idx-flow apply` writes `UNSEEN` where its input had a masked pixel.
//!
//! ```
//! use idx_flow_train::data::mask::{UNSEEN, is_unseen, valid_pixels};
//! assert!(is_unseen(UNSEEN as f32));
//! // One channel of 12 pixels, pixel 3 masked.
//! let mut map = vec![1.0f32; 12];
//! map[3] = UNSEEN as f32;
//! let valid = valid_pixels(&map, 1, false, || "my map".into())?.unwrap();
//! assert!(!valid[3] && valid[4]);
//! # Ok::<(), idx_flow_train::Error>(())
//! ```

use crate::{Error, Result};

/// healpy's `UNSEEN` marker of masked pixels.
pub const UNSEEN: f64 = -1.6375e30;

/// Whether `v` is healpy's `UNSEEN`, with healpy's tolerance (`mask_bad`:
/// `|v − UNSEEN| ≤ 1e-8 + 1e-5·|UNSEEN|`), so that the marker written as
/// `float32` (−1.6375e30 is not exact in either precision) is recognised.
pub fn is_unseen(v: f32) -> bool {
    (v as f64 - UNSEEN).abs() <= 1e-8 + 1e-5 * UNSEEN.abs()
}

/// Whether `v` is masked: `UNSEEN`, or NaN when `nan_masked`.
pub fn is_masked(v: f32, nan_masked: bool) -> bool {
    is_unseen(v) || (nan_masked && v.is_nan())
}

/// The valid pixels of one sample `[C, N]` (`values.len() = C·N`): `None`
/// when every pixel is valid, otherwise `[C·N]` flags (true: valid).
///
/// Errors, naming `what()` (the file and sample), the channel and the pixel:
/// an infinite value, a NaN when NaN is not `nan_masked`, and a channel with
/// every pixel masked (nothing to learn from or to compare against).
pub fn valid_pixels(
    values: &[f32],
    channels: usize,
    nan_masked: bool,
    what: impl Fn() -> String,
) -> Result<Option<Vec<bool>>> {
    let n = values.len() / channels.max(1);
    let mut valid: Option<Vec<bool>> = None;
    for (i, &v) in values.iter().enumerate() {
        let masked = if v.is_nan() {
            if !nan_masked {
                return Err(Error::arg(
                    "map",
                    format!(
                        "{}: channel {}, pixel {} is NaN; pass --mask-nan (mask_nan) to treat NaN as masked pixels",
                        what(),
                        i / n,
                        i % n
                    ),
                ));
            }
            true
        } else if is_unseen(v) {
            true
        } else if v.is_infinite() {
            return Err(Error::arg(
                "map",
                format!(
                    "{}: channel {}, pixel {} is {v}, expected a finite value or UNSEEN",
                    what(),
                    i / n,
                    i % n
                ),
            ));
        } else {
            false
        };
        if masked {
            valid.get_or_insert_with(|| vec![true; values.len()])[i] = false;
        }
    }
    if let Some(valid) = &valid {
        for (c, flags) in valid.chunks(n).enumerate() {
            if !flags.iter().any(|&f| f) {
                return Err(Error::arg(
                    "map",
                    format!(
                        "{}: channel {c} has every pixel masked; expected at least one valid pixel",
                        what()
                    ),
                ));
            }
        }
    }
    Ok(valid)
}
