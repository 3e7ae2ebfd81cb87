//! Equirectangular (plate carrée) images and their bilinear sampling on the sphere.
//!
//! Convention (that of the bundled images and of most global rasters): row 0 is
//! latitude +90°, column 0 is longitude −180°, pixel `(i, j)` has its centre at
//! latitude `90 − (i + ½)·180/H` and longitude `−180 + (j + ½)·360/W`.
//! Sampling is bilinear in longitude and latitude, periodic in longitude and
//! clamped to the first and last rows at the poles.
//!
//! ```
//! use idx_flow_train::data::EquirectImage;
//! // A 4 x 2 one-channel image: northern row 0, southern row 1.
//! let img = EquirectImage::new(4, 2, 1, vec![0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])?;
//! assert_eq!(img.sample([0.0, 0.0, 1.0])[0], 0.0);  // north pole
//! assert_eq!(img.sample([1.0, 0.0, 0.0])[0], 0.5);  // equator: halfway between the rows
//! # Ok::<(), idx_flow_train::Error>(())
//! ```

use std::path::Path;

use rayon::prelude::*;

use crate::{Error, Result};

/// The four bilinear taps of a direction: rows `[i0, i1]`, columns
/// `[j0, j1]`, and the weights of the second row and column.
#[derive(Clone, Copy, Debug)]
struct Taps {
    rows: [usize; 2],
    cols: [usize; 2],
    wx: f32,
    wy: f32,
}

/// A global image: `H` rows of `W` pixels of `C` channels, values as stored
/// (8-bit images are scaled to `[0, 1]`).
#[derive(Clone, Debug)]
pub struct EquirectImage {
    width: usize,
    height: usize,
    channels: usize,
    /// `[H, W, C]`, row-major.
    data: Vec<f32>,
}

impl EquirectImage {
    /// Pixels an image file may declare per byte of it: deflate (PNG)
    /// expands a byte to at most 1032, and JPEG codes at least a bit per 8×8
    /// block, so a file declaring more is damaged (or a decompression bomb).
    pub const MAX_PIXELS_PER_BYTE: usize = 1032;

    /// An image from `[H, W, C]` values.
    pub fn new(width: usize, height: usize, channels: usize, data: Vec<f32>) -> Result<Self> {
        if width < 2 || height < 2 || channels == 0 {
            return Err(Error::arg(
                "image",
                format!(
                    "got {width} x {height} pixels with {channels} channels, expected at least 2 x 2 pixels and 1 channel"
                ),
            ));
        }
        if data.len() != width * height * channels {
            return Err(Error::Shape {
                context: "equirectangular image".into(),
                expected: format!(
                    "[{height}, {width}, {channels}] = {} values",
                    width * height * channels
                ),
                got: format!("{} values", data.len()),
            });
        }
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(Error::arg(
                "image",
                format!("value {i} is {}, expected finite values", data[i]),
            ));
        }
        Ok(Self {
            width,
            height,
            channels,
            data,
        })
    }

    /// Decodes a PNG or JPEG (8 or 16 bit, grey or colour; alpha is dropped) to `[0, 1]`.
    /// `name` is used in error messages.
    ///
    /// An image whose header declares more than [`Self::MAX_PIXELS_PER_BYTE`]
    /// pixels per byte of the file is refused before anything is decoded.
    pub fn decode(bytes: &[u8], name: &Path) -> Result<Self> {
        let cannot = |e: image::ImageError| {
            Error::format(name, format!("cannot decode as PNG or JPEG: {e}"))
        };
        let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| Error::format(name, format!("cannot read: {e}")))?;
        let (w, h) = reader.into_dimensions().map_err(cannot)?;
        let pixels = w as u64 * h as u64;
        if pixels > (Self::MAX_PIXELS_PER_BYTE * bytes.len()) as u64 {
            return Err(Error::format(
                name,
                format!(
                    "the image header declares {w} × {h} pixels, more than a {}-byte PNG or JPEG can hold \
                     (at most {} pixels per byte); the file is damaged",
                    bytes.len(),
                    Self::MAX_PIXELS_PER_BYTE
                ),
            ));
        }
        let img = image::load_from_memory(bytes).map_err(cannot)?;
        let (w, h) = (img.width() as usize, img.height() as usize);
        let grey = matches!(
            img.color(),
            image::ColorType::L8
                | image::ColorType::L16
                | image::ColorType::La8
                | image::ColorType::La16
        );
        let (channels, data) = if grey {
            let g = img.into_luma16();
            (
                1,
                g.into_raw()
                    .into_iter()
                    .map(|v| v as f32 / 65535.0)
                    .collect(),
            )
        } else if img.color().bytes_per_pixel() > 4 {
            let c = img.into_rgb16();
            (
                3,
                c.into_raw()
                    .into_iter()
                    .map(|v| v as f32 / 65535.0)
                    .collect(),
            )
        } else {
            let c = img.into_rgb8();
            (
                3,
                c.into_raw().into_iter().map(|v| v as f32 / 255.0).collect(),
            )
        };
        Self::new(w, h, channels, data).map_err(|e| Error::format(name, e.to_string()))
    }

    /// Reads and decodes a PNG or JPEG file.
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::decode(&bytes, path)
    }

    /// Width `W` (pixels per row, 360° of longitude).
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height `H` (rows, 180° of latitude).
    pub fn height(&self) -> usize {
        self.height
    }

    /// Channels `C`.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The values, `[H, W, C]`.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The image box-filtered by an integer `factor` in both directions (the
    /// last partial blocks averaged over what they hold; the factor is capped so
    /// that at least 2 x 2 pixels remain): an antialiasing filter before
    /// sampling a coarser grid, and a smaller image to sample.
    ///
    /// ```
    /// use idx_flow_train::data::EquirectImage;
    /// let img = EquirectImage::new(4, 4, 1, (0..16).map(|v| v as f32).collect())?;
    /// let half = img.downsample(2)?;
    /// assert_eq!((half.width(), half.height()), (2, 2));
    /// assert_eq!(half.data(), &[2.5, 4.5, 10.5, 12.5]);
    /// # Ok::<(), idx_flow_train::Error>(())
    /// ```
    pub fn downsample(&self, factor: usize) -> Result<Self> {
        let (w, h, c) = (self.width, self.height, self.channels);
        let factor = factor.min(w / 2).min(h / 2);
        if factor <= 1 {
            return Ok(self.clone());
        }
        let (w2, h2) = (w.div_ceil(factor), h.div_ceil(factor));
        let mut out = vec![0f32; w2 * h2 * c];
        out.par_chunks_mut(w2 * c)
            .enumerate()
            .for_each(|(i2, row)| {
                let rows = i2 * factor..((i2 + 1) * factor).min(h);
                for j2 in 0..w2 {
                    let cols = j2 * factor..((j2 + 1) * factor).min(w);
                    let n = (rows.len() * cols.len()) as f32;
                    for k in 0..c {
                        let mut sum = 0f32;
                        for i in rows.clone() {
                            for j in cols.clone() {
                                sum += self.data[(i * w + j) * c + k];
                            }
                        }
                        row[j2 * c + k] = sum / n;
                    }
                }
            });
        Self::new(w2, h2, c, out)
    }

    /// The image at the direction `v` (a unit vector; x towards longitude 0,
    /// z towards the north pole), bilinear in longitude and latitude: `[C]`.
    pub fn sample(&self, v: [f64; 3]) -> Vec<f32> {
        let mut out = vec![0.0; self.channels];
        self.sample_into(v, &mut out);
        out
    }

    /// [`sample`](Self::sample) into `out` (`C` values).
    pub fn sample_into(&self, v: [f64; 3], out: &mut [f32]) {
        self.blend(&self.taps(v), out);
    }

    /// Samples `n` directions into `out` (`[n, C]`), with the same values as
    /// [`sample_into`](Self::sample_into) one by one; an `out` of another
    /// length is an error.
    ///
    /// An image is larger than the caches, and each sample reads two to four
    /// cache lines that its neighbours do not (a HEALPix pixel spans several
    /// image pixels), so sampling one by one waits on memory for each. Here
    /// the directions are located first, then blended while the taps of
    /// later ones are already being fetched.
    ///
    /// ```
    /// use idx_flow_train::data::EquirectImage;
    /// let img = EquirectImage::new(4, 2, 1, vec![0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])?;
    /// let mut out = vec![0.0; 2];
    /// img.sample_many(&[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], &mut out)?;
    /// assert_eq!(out, [0.0, 0.5]);
    /// # Ok::<(), idx_flow_train::Error>(())
    /// ```
    pub fn sample_many(&self, directions: &[[f64; 3]], out: &mut [f32]) -> Result<()> {
        // Samples whose taps are requested ahead of their blend.
        const AHEAD: usize = 8;
        let c = self.channels;
        if out.len() != directions.len() * c {
            return Err(Error::Shape {
                context: "sampled values".into(),
                expected: format!(
                    "{} directions x {c} channels = {} values",
                    directions.len(),
                    directions.len() * c
                ),
                got: format!("{} values", out.len()),
            });
        }
        let taps: Vec<Taps> = directions.iter().map(|v| self.taps(*v)).collect();
        for (n, (t, o)) in taps.iter().zip(out.chunks_exact_mut(c)).enumerate() {
            if let Some(next) = taps.get(n + AHEAD) {
                self.prefetch(next);
            }
            self.blend(t, o);
        }
        Ok(())
    }

    /// Where the direction `v` falls: the rows and columns of its four
    /// bilinear taps, and their weights.
    fn taps(&self, v: [f64; 3]) -> Taps {
        let (w, h) = (self.width, self.height);
        let lon = v[1].atan2(v[0]);
        let lat = v[2].clamp(-1.0, 1.0).asin();
        let fx = (lon + std::f64::consts::PI) / std::f64::consts::TAU * w as f64 - 0.5;
        let fy = (std::f64::consts::FRAC_PI_2 - lat) / std::f64::consts::PI * h as f64 - 0.5;
        let x0 = fx.floor();
        let wx = (fx - x0) as f32;
        let j0 = (x0 as i64).rem_euclid(w as i64) as usize;
        let j1 = (j0 + 1) % w;
        let (i0, i1, wy) = if fy <= 0.0 {
            (0, 0, 0.0)
        } else if fy >= (h - 1) as f64 {
            (h - 1, h - 1, 0.0)
        } else {
            let y0 = fy.floor();
            (y0 as usize, y0 as usize + 1, (fy - y0) as f32)
        };
        Taps {
            rows: [i0, i1],
            cols: [j0, j1],
            wx,
            wy,
        }
    }

    /// Asks the cache for the pixels of `t` (a hint: a no-op off x86-64).
    fn prefetch(&self, t: &Taps) {
        #[cfg(target_arch = "x86_64")]
        for i in t.rows {
            for j in t.cols {
                let at = (i * self.width + j) * self.channels;
                // SAFETY: prefetching has no architectural effect, and the
                // address lies inside `data` (i < H, j < W).
                unsafe {
                    std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                        self.data.as_ptr().add(at).cast(),
                    )
                };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = t;
    }

    /// The bilinear blend of the taps `t` into `out` (`C` values).
    fn blend(&self, t: &Taps, out: &mut [f32]) {
        let (w, c) = (self.width, self.channels);
        let ([i0, i1], [j0, j1], wx, wy) = (t.rows, t.cols, t.wx, t.wy);
        let px = |i: usize, j: usize, k: usize| self.data[(i * w + j) * c + k];
        for (k, o) in out.iter_mut().enumerate().take(c) {
            let top = px(i0, j0, k) * (1.0 - wx) + px(i0, j1, k) * wx;
            let bottom = px(i1, j0, k) * (1.0 - wx) + px(i1, j1, k) * wx;
            *o = top * (1.0 - wy) + bottom * wy;
        }
    }
}
