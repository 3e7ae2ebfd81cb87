//! Training data on the sphere: a source (an equirectangular image, or a
//! dataset of HEALPix maps read one sample at a time) resampled onto the
//! model's NESTED grid, optionally under a rotation, with its split into
//! training and validation maps and its normalisation.
//!
//! Pixel `p` of a sample seen under rotation `R` holds the source at
//! direction `R⁻¹·p̂` (bilinear in longitude/latitude for images, the nearest
//! pixel for HEALPix maps). Values are normalised per channel to zero mean and
//! unit variance with statistics of the training maps on the model grid, from
//! one streaming pass over them (HEALPix pixels have equal areas, so these
//! are area-weighted; masked pixels are left out). Reconstruction errors are
//! reported on the source's own scale, whose *peak* is 1 for images (8-bit
//! values scaled to `[0, 1]`) and `max − min` of the training maps otherwise:
//! `PSNR = 10·log10(peak² / MSE)`.
//!
//! ```
//! use idx_flow_train::data::{BundledImage, Rotation, SphereDataset, SphereSource};
//! let source = SphereSource::Image(BundledImage::BlueMarble.decode()?);
//! let data = SphereDataset::new(source, 8)?;              // 768 pixels, NESTED
//! let sample = data.render(0, &Rotation::IDENTITY)?;       // [768, 3], values in [0, 1]
//! assert_eq!(sample.values.len(), 768 * 3);
//! assert!(sample.valid.is_none());                         // no masked pixels
//! # Ok::<(), idx_flow_train::Error>(())
//! ```

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::mask::valid_pixels;
use super::rotation::Rotation;
pub use super::source::{BundledImage, SphereSource};
use crate::{Error, Result};
use idx_flow_healpix::geometry::HealpixGrid;

/// How a dataset is split and masked. The default: no validation maps, NaN is an error.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DataOptions {
    /// NaN marks a masked pixel (`UNSEEN` always does); otherwise NaN is an error.
    pub mask_nan: bool,
    /// The last `⌈F·T⌉` time indices are held out for validation (`0 ≤ F < 1`;
    /// datasets of one sample are never split).
    pub val_fraction: f64,
    /// Time-index ranges `[start, end)` held out instead of the last fraction.
    pub val_ranges: Vec<[usize; 2]>,
}

impl DataOptions {
    /// The training and validation time indices of `samples` maps.
    pub fn split(&self, samples: usize) -> Result<(Vec<usize>, Vec<usize>)> {
        let mut val = vec![false; samples];
        if !self.val_ranges.is_empty() {
            for &[a, b] in &self.val_ranges {
                if a >= b || b > samples {
                    return Err(Error::arg(
                        "val_ranges",
                        format!(
                            "range [{a}, {b}) of {samples} samples; expected start < end ≤ {samples}"
                        ),
                    ));
                }
                val[a..b].iter_mut().for_each(|v| *v = true);
            }
        } else {
            if !(0.0..1.0).contains(&self.val_fraction) {
                return Err(Error::arg(
                    "val_fraction",
                    format!("got {}, expected a number in [0, 1)", self.val_fraction),
                ));
            }
            if samples > 1 && self.val_fraction > 0.0 {
                let k = (self.val_fraction * samples as f64).ceil() as usize;
                val[samples - k.min(samples)..]
                    .iter_mut()
                    .for_each(|v| *v = true);
            }
        }
        let (val_idx, train_idx): (Vec<usize>, Vec<usize>) = (0..samples).partition(|&t| val[t]);
        if train_idx.is_empty() {
            return Err(Error::arg(
                "val_fraction",
                format!(
                    "the validation split holds all {samples} samples; expected at least one training sample"
                ),
            ));
        }
        Ok((train_idx, val_idx))
    }
}

/// Per-channel normalisation of a dataset and the peak of its PSNR, saved
/// with a run (`normalisation.json`) so that the model applies to new maps
/// exactly as it was trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalisation {
    /// Per-channel mean of the training maps.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation of the training maps (1 for a constant channel).
    pub std: Vec<f32>,
    /// The value range used by PSNR.
    pub peak: f64,
    /// NaN marked masked pixels in training.
    pub mask_nan: bool,
}

/// One sample on the model grid.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// `[N, C]` (pixel-major, NESTED), on the source's scale; 0 where masked.
    pub values: Vec<f32>,
    /// `[N, C]`, true where valid; `None` when every pixel is.
    pub valid: Option<Vec<bool>>,
}

/// A [`SphereSource`] on the model's NESTED grid, with its split and normalisation.
#[derive(Clone, Debug)]
pub struct SphereDataset {
    source: SphereSource,
    grid: HealpixGrid,
    centers: Vec<[f64; 3]>,
    /// For maps: the source pixel under each model pixel's centre.
    lookup: Vec<u32>,
    norm: Normalisation,
    options: DataOptions,
    train: Vec<usize>,
    val: Vec<usize>,
}

/// Per-channel sums of one part of the statistics pass.
#[derive(Clone)]
struct Moments {
    sum: Vec<f64>,
    sum2: Vec<f64>,
    count: Vec<f64>,
    lo: f64,
    hi: f64,
}

impl Moments {
    fn new(c: usize) -> Self {
        Self {
            sum: vec![0.0; c],
            sum2: vec![0.0; c],
            count: vec![0.0; c],
            lo: f64::INFINITY,
            hi: f64::NEG_INFINITY,
        }
    }

    fn add(&mut self, s: &Sample) {
        let c = self.sum.len();
        for (i, v) in s.values.iter().enumerate() {
            if s.valid.as_ref().is_some_and(|m| !m[i]) {
                continue;
            }
            let v = *v as f64;
            self.sum[i % c] += v;
            self.sum2[i % c] += v * v;
            self.count[i % c] += 1.0;
            self.lo = self.lo.min(v);
            self.hi = self.hi.max(v);
        }
    }

    fn merge(mut self, o: Moments) -> Self {
        for k in 0..self.sum.len() {
            self.sum[k] += o.sum[k];
            self.sum2[k] += o.sum2[k];
            self.count[k] += o.count[k];
        }
        self.lo = self.lo.min(o.lo);
        self.hi = self.hi.max(o.hi);
        self
    }
}

impl SphereDataset {
    /// The source on the NESTED grid of `nside` (a power of two), every sample
    /// for training, NaN an error. See [`with_options`](Self::with_options).
    pub fn new(source: SphereSource, nside: u32) -> Result<Self> {
        Self::with_options(source, nside, &DataOptions::default(), &|_, _| {})
    }

    /// The source on the NESTED grid of `nside`, split as `options` say, with
    /// statistics from one pass over the training maps; every map (validation
    /// ones too) is read once and checked, so that a bad map is an error now,
    /// naming its file and sample, not in the middle of training. `progress`
    /// is told `(maps read, maps)`.
    ///
    /// An image more than 4 pixels per HEALPix pixel width (`√(4π/N)`) is
    /// first box-filtered down to about 4 ([`EquirectImage::downsample`](super::EquirectImage::downsample)): it
    /// antialiases the samples and keeps the image small enough for the caches.
    pub fn with_options(
        source: SphereSource,
        nside: u32,
        options: &DataOptions,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Self> {
        let (train, val) = options.split(source.samples())?;
        let placeholder = Normalisation {
            mean: vec![],
            std: vec![],
            peak: 1.0,
            mask_nan: options.mask_nan,
        };
        let mut data = Self::assemble(source, nside, placeholder, options.clone(), train, val)?;
        let c = data.channels();
        // Fixed chunks summed in order: the statistics do not depend on the threads.
        const CHUNK: usize = 32;
        let all: Vec<usize> = (0..data.source.samples()).collect();
        let done = std::sync::atomic::AtomicUsize::new(0);
        let is_train = {
            let mut flags = vec![false; all.len()];
            data.train.iter().for_each(|&t| flags[t] = true);
            flags
        };
        let parts: Vec<Moments> = all
            .par_chunks(CHUNK)
            .map(|chunk| {
                let mut m = Moments::new(c);
                for &t in chunk {
                    let s = data.render(t, &Rotation::IDENTITY)?;
                    if is_train[t] {
                        m.add(&s);
                    }
                }
                let n = done.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
                progress(n + chunk.len(), all.len());
                Ok(m)
            })
            .collect::<Result<_>>()?;
        let m = parts.into_iter().fold(Moments::new(c), |a, b| a.merge(b));
        data.norm.mean = (0..c)
            .map(|k| (m.sum[k] / m.count[k].max(1.0)) as f32)
            .collect();
        data.norm.std = (0..c)
            .map(|k| {
                let n = m.count[k].max(1.0);
                let var = (m.sum2[k] / n - (m.sum[k] / n).powi(2)).max(0.0);
                // A constant channel keeps unit scale instead of dividing by zero.
                if var > 1e-12 { var.sqrt() as f32 } else { 1.0 }
            })
            .collect();
        data.norm.peak = match &data.source {
            SphereSource::Image(_) => 1.0,
            SphereSource::Maps(_) if m.hi > m.lo => m.hi - m.lo,
            SphereSource::Maps(_) => 1.0,
        };
        Ok(data)
    }

    /// The source on the NESTED grid of `nside` with a trained run's
    /// normalisation (no statistics pass; every sample counts as a training
    /// sample): the data a trained model is applied to.
    pub fn with_normalisation(
        source: SphereSource,
        nside: u32,
        norm: Normalisation,
    ) -> Result<Self> {
        if norm.mean.len() != source.channels() || norm.std.len() != source.channels() {
            return Err(Error::arg(
                "channels",
                format!(
                    "the data have {} channels, the normalisation {}",
                    source.channels(),
                    norm.mean.len()
                ),
            ));
        }
        let options = DataOptions {
            mask_nan: norm.mask_nan,
            ..DataOptions::default()
        };
        let train = (0..source.samples()).collect();
        Self::assemble(source, nside, norm, options, train, vec![])
    }

    fn assemble(
        source: SphereSource,
        nside: u32,
        norm: Normalisation,
        options: DataOptions,
        train: Vec<usize>,
        val: Vec<usize>,
    ) -> Result<Self> {
        let grid = HealpixGrid::nested(nside)?;
        let source = match source {
            SphereSource::Image(img) => {
                let pixel_rad = (4.0 * std::f64::consts::PI / grid.npix() as f64).sqrt();
                let image_px_per_rad = img.width() as f64 / std::f64::consts::TAU;
                let factor = (pixel_rad * image_px_per_rad / 4.0).floor().max(1.0) as usize;
                SphereSource::Image(img.downsample(factor)?)
            }
            maps => maps,
        };
        let centers = grid.centers();
        let lookup = match &source {
            SphereSource::Maps(m) => {
                let g = m.grid();
                centers
                    .par_iter()
                    // Centres are unit vectors; the lookup cannot fail.
                    .map(|p| g.vec2pix(*p).unwrap_or(0) as u32)
                    .collect()
            }
            SphereSource::Image(_) => vec![],
        };
        Ok(Self {
            source,
            grid,
            centers,
            lookup,
            norm,
            options,
            train,
            val,
        })
    }

    /// The model grid (NESTED).
    pub fn grid(&self) -> HealpixGrid {
        self.grid
    }

    /// Pixels `N` of the model grid.
    pub fn npix(&self) -> usize {
        self.centers.len()
    }

    /// Channels `C`.
    pub fn channels(&self) -> usize {
        self.source.channels()
    }

    /// The source.
    pub fn source(&self) -> &SphereSource {
        &self.source
    }

    /// The split and masking this dataset was built with.
    pub fn options(&self) -> &DataOptions {
        &self.options
    }

    /// Time indices of the training maps.
    pub fn train_indices(&self) -> &[usize] {
        &self.train
    }

    /// Time indices of the validation maps (empty without a split).
    pub fn val_indices(&self) -> &[usize] {
        &self.val
    }

    /// The normalisation (saved with a run).
    pub fn normalisation(&self) -> &Normalisation {
        &self.norm
    }

    /// Per-channel mean of the training maps on the grid.
    pub fn mean(&self) -> &[f32] {
        &self.norm.mean
    }

    /// Per-channel standard deviation of the training maps on the grid (1 for a constant channel).
    pub fn std(&self) -> &[f32] {
        &self.norm.std
    }

    /// The value range used by PSNR: 1 for images, `max − min` of the training maps otherwise.
    pub fn peak(&self) -> f64 {
        self.norm.peak
    }

    /// Where sample `t` comes from, for messages.
    pub fn locate(&self, t: usize) -> String {
        match &self.source {
            SphereSource::Image(_) => "the image".into(),
            SphereSource::Maps(m) => m.locate(t),
        }
    }

    /// Sample `t` of the source under `rotation`, on the grid: `[N, C]`
    /// (pixel-major, NESTED order), on the source's own scale, with its mask.
    /// Errors: a read that fails, a map with an infinity, a NaN (unless
    /// masked), or a channel with every pixel masked, naming file and sample.
    pub fn render(&self, t: usize, rotation: &Rotation) -> Result<Sample> {
        // Pixels per call of `EquirectImage::sample_many`, which fetches the
        // image ahead of its blends.
        const BLOCK: usize = 1024;
        let c = self.channels();
        let mut out = vec![0f32; self.centers.len() * c];
        match &self.source {
            SphereSource::Image(img) => {
                out.par_chunks_mut(BLOCK * c)
                    .zip(self.centers.par_chunks(BLOCK))
                    .try_for_each(|(o, centers)| {
                        let dirs: Vec<[f64; 3]> =
                            centers.iter().map(|p| rotation.apply_inverse(*p)).collect();
                        // `o` holds C values per direction of the block.
                        img.sample_many(&dirs, o)
                    })?;
                Ok(Sample {
                    values: out,
                    valid: None,
                })
            }
            SphereSource::Maps(m) => {
                if t >= m.samples() {
                    return Err(Error::arg(
                        "sample",
                        format!("sample {t} of {} samples", m.samples()),
                    ));
                }
                let mut raw = vec![0f32; c * m.grid().npix() as usize];
                m.read(t, &mut raw)?;
                let valid = valid_pixels(&raw, c, self.options.mask_nan, || m.locate(t))?;
                self.resample(&raw, valid.as_deref(), rotation)
            }
        }
    }

    /// A map sample `[C, N_source]` as read (with its valid pixels) on the
    /// model grid under `rotation`: `[N, C]`, nearest source pixel, 0 where
    /// masked. An error for an image source or a sample of the wrong size.
    pub fn resample(
        &self,
        raw: &[f32],
        valid_src: Option<&[bool]>,
        rotation: &Rotation,
    ) -> Result<Sample> {
        let SphereSource::Maps(m) = &self.source else {
            return Err(Error::arg(
                "source",
                "resampling a map sample needs a map source, not an image",
            ));
        };
        let per = self.channels() * m.grid().npix() as usize;
        if raw.len() != per || valid_src.is_some_and(|v| v.len() != per) {
            return Err(Error::Shape {
                context: "map sample".into(),
                expected: format!("{per} values [C, N] of the source grid"),
                got: format!("{} values", raw.len()),
            });
        }
        let c = self.channels();
        let ns = m.grid().npix() as usize;
        let mut out = vec![0f32; self.centers.len() * c];
        let identity = *rotation == Rotation::IDENTITY;
        let mut valid = valid_src.map(|_| vec![true; out.len()]);
        for p in 0..self.centers.len() {
            let s = if identity {
                self.lookup[p] as usize
            } else {
                let v = rotation.apply_inverse(self.centers[p]);
                // Directions are unit vectors; the lookup cannot fail.
                m.grid().vec2pix(v).unwrap_or(0) as usize
            };
            for k in 0..c {
                let from = k * ns + s;
                match (valid_src, &mut valid) {
                    (Some(vs), Some(v)) if !vs[from] => v[p * c + k] = false,
                    _ => out[p * c + k] = raw[from],
                }
            }
        }
        Ok(Sample { values: out, valid })
    }

    /// A sample normalised for the model's input: zero mean and unit variance
    /// per channel, masked pixels at 0 (the channel's mean).
    pub fn normalised(&self, sample: &Sample) -> Vec<f32> {
        let mut x = sample.values.clone();
        self.normalise(&mut x);
        if let Some(valid) = &sample.valid {
            for (v, ok) in x.iter_mut().zip(valid) {
                if !ok {
                    *v = 0.0;
                }
            }
        }
        x
    }

    /// `[N, C]` values on the source's scale → normalised (zero mean, unit variance per channel).
    pub fn normalise(&self, x: &mut [f32]) {
        let c = self.channels();
        for (i, v) in x.iter_mut().enumerate() {
            *v = (*v - self.norm.mean[i % c]) / self.norm.std[i % c];
        }
    }

    /// The inverse of [`normalise`](Self::normalise).
    pub fn denormalise(&self, x: &mut [f32]) {
        let c = self.channels();
        for (i, v) in x.iter_mut().enumerate() {
            *v = *v * self.norm.std[i % c] + self.norm.mean[i % c];
        }
    }
}
