//! Training data on the sphere: a source (an equirectangular image or HEALPix
//! maps) seen through rotations, resampled onto the model's NESTED grid.
//!
//! Each training sample is the source under a uniformly random rotation `R`:
//! pixel `p` of the sample holds the source at direction `R⁻¹·p̂` (bilinear in
//! longitude/latitude for images, the nearest pixel for HEALPix maps), so the
//! training set is unbounded. Values are normalised per channel to zero mean
//! and unit variance with statistics of the unrotated source on the model grid
//! (HEALPix pixels have equal areas, so these are area-weighted); reconstruction
//! errors are reported on the source's own scale, whose *peak* is 1 for images
//! (8-bit values scaled to `[0, 1]`) and `max − min` of the unrotated maps
//! otherwise: `PSNR = 10·log10(peak² / MSE)`.
//!
//! ```
//! use idx_flow_train::data::{BundledImage, Rotation, SphereDataset, SphereSource};
//! let source = SphereSource::Image(BundledImage::BlueMarble.decode()?);
//! let data = SphereDataset::new(source, 8)?;              // 768 pixels, NESTED
//! let sample = data.render(0, &Rotation::IDENTITY);        // [768, 3], values in [0, 1]
//! assert_eq!(sample.len(), 768 * 3);
//! # Ok::<(), idx_flow_train::Error>(())
//! ```

use std::path::Path;

use rayon::prelude::*;

use super::equirect::EquirectImage;
use super::maps::HealpixMaps;
use super::rotation::Rotation;
use crate::{Error, Result};
use idx_flow_healpix::geometry::HealpixGrid;

/// The images that ship with idx-flow (see `crates/idx-flow-train/data/README.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundledImage {
    /// NASA Blue Marble Next Generation, true colour, 5400 x 2700.
    BlueMarble,
    /// NOAA ETOPO1 relief shading, 5400 x 2700.
    Etopo1,
}

impl BundledImage {
    /// The name accepted by `--data` (`bluemarble`, `etopo1`).
    pub fn name(self) -> &'static str {
        match self {
            BundledImage::BlueMarble => "bluemarble",
            BundledImage::Etopo1 => "etopo1",
        }
    }

    /// The image with this name, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "bluemarble" | "blue-marble" | "bmng" => Some(BundledImage::BlueMarble),
            "etopo1" | "etopo" => Some(BundledImage::Etopo1),
            _ => None,
        }
    }

    /// The JPEG file's bytes (embedded in the library).
    pub fn bytes(self) -> &'static [u8] {
        match self {
            BundledImage::BlueMarble => include_bytes!("../../data/bmng.jpg"),
            BundledImage::Etopo1 => include_bytes!("../../data/etopo1.jpg"),
        }
    }

    /// Decodes the image (RGB in `[0, 1]`).
    pub fn decode(self) -> Result<EquirectImage> {
        let file = match self {
            BundledImage::BlueMarble => "bmng.jpg",
            BundledImage::Etopo1 => "etopo1.jpg",
        };
        EquirectImage::decode(self.bytes(), Path::new(file))
    }
}

/// Where the training data come from.
#[derive(Clone, Debug)]
pub enum SphereSource {
    /// A global equirectangular image.
    Image(EquirectImage),
    /// HEALPix maps, `[T, C, N]`.
    Maps(HealpixMaps),
}

impl SphereSource {
    /// A bundled image name (`bluemarble`, `etopo1`) or a file: `.png`/`.jpg`/`.jpeg`
    /// (equirectangular), `.npy` or `.fits` (HEALPix; `.npy` in NESTED order when `nested`).
    pub fn open(spec: &str, nested: bool) -> Result<Self> {
        if let Some(b) = BundledImage::from_name(spec) {
            return Ok(SphereSource::Image(b.decode()?));
        }
        let path = Path::new(spec);
        if !path.exists() {
            return Err(Error::io(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file (expected a .npy, .fits, .png or .jpg file, or bluemarble / etopo1)",
                ),
            ));
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "png" | "jpg" | "jpeg" => Ok(SphereSource::Image(EquirectImage::open(path)?)),
            _ => Ok(SphereSource::Maps(HealpixMaps::open(path, nested)?)),
        }
    }

    /// Channels.
    pub fn channels(&self) -> usize {
        match self {
            SphereSource::Image(i) => i.channels(),
            SphereSource::Maps(m) => m.channels(),
        }
    }

    /// Independent samples before rotation (`T` of `[T, C, N]` maps; 1 for an image).
    pub fn samples(&self) -> usize {
        match self {
            SphereSource::Image(_) => 1,
            SphereSource::Maps(m) => m.samples(),
        }
    }

    /// A short description, e.g. `equirectangular image 5400 x 2700 x 3`.
    pub fn describe(&self) -> String {
        match self {
            SphereSource::Image(i) => format!(
                "equirectangular image {} x {} x {}",
                i.width(),
                i.height(),
                i.channels()
            ),
            SphereSource::Maps(m) => format!(
                "HEALPix maps [{}, {}, {}] ({})",
                m.samples(),
                m.channels(),
                m.grid().npix(),
                m.grid()
            ),
        }
    }
}

/// A [`SphereSource`] on the model's NESTED grid, with normalisation statistics.
#[derive(Clone, Debug)]
pub struct SphereDataset {
    source: SphereSource,
    grid: HealpixGrid,
    centers: Vec<[f64; 3]>,
    mean: Vec<f32>,
    std: Vec<f32>,
    peak: f64,
}

impl SphereDataset {
    /// The source on the NESTED grid of `nside` (a power of two). An image more
    /// than 4 pixels per HEALPix pixel width (`√(4π/N)`) is first box-filtered
    /// down to about 4 ([`EquirectImage::downsample`]): it antialiases the
    /// samples and keeps the image small enough for the caches.
    pub fn new(source: SphereSource, nside: u32) -> Result<Self> {
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
        let mut data = Self {
            source,
            grid,
            centers,
            mean: vec![],
            std: vec![],
            peak: 1.0,
        };
        let c = data.channels();
        let n = data.centers.len();
        let mut sum = vec![0f64; c];
        let mut sum2 = vec![0f64; c];
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for t in 0..data.source.samples() {
            let x = data.render(t, &Rotation::IDENTITY);
            for (i, v) in x.iter().enumerate() {
                let v = *v as f64;
                sum[i % c] += v;
                sum2[i % c] += v * v;
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
        let count = (n * data.source.samples()) as f64;
        data.mean = sum.iter().map(|s| (s / count) as f32).collect();
        data.std = sum
            .iter()
            .zip(&sum2)
            .map(|(s, s2)| {
                let var = (s2 / count - (s / count).powi(2)).max(0.0);
                // A constant channel keeps unit scale instead of dividing by zero.
                if var > 1e-12 { var.sqrt() as f32 } else { 1.0 }
            })
            .collect();
        data.peak = match &data.source {
            SphereSource::Image(_) => 1.0,
            SphereSource::Maps(_) => {
                if hi > lo {
                    hi - lo
                } else {
                    1.0
                }
            }
        };
        Ok(data)
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

    /// Per-channel mean of the unrotated source on the grid.
    pub fn mean(&self) -> &[f32] {
        &self.mean
    }

    /// Per-channel standard deviation of the unrotated source on the grid (1 for a constant channel).
    pub fn std(&self) -> &[f32] {
        &self.std
    }

    /// The value range used by PSNR: 1 for images, `max − min` of the unrotated maps otherwise.
    pub fn peak(&self) -> f64 {
        self.peak
    }

    /// Sample `t` of the source under `rotation`, on the grid: `[N, C]`
    /// (pixel-major, NESTED order), on the source's own scale.
    pub fn render(&self, t: usize, rotation: &Rotation) -> Vec<f32> {
        // Pixels per call of `EquirectImage::sample_many`, which fetches the
        // image ahead of its blends.
        const BLOCK: usize = 1024;
        let c = self.channels();
        let mut out = vec![0f32; self.centers.len() * c];
        match &self.source {
            SphereSource::Image(img) => out
                .par_chunks_mut(BLOCK * c)
                .zip(self.centers.par_chunks(BLOCK))
                .for_each(|(o, centers)| {
                    let dirs: Vec<[f64; 3]> =
                        centers.iter().map(|p| rotation.apply_inverse(*p)).collect();
                    // `o` holds C values per direction of the block.
                    img.sample_many(&dirs, o)
                        .expect("a block of output rows per block of pixels");
                }),
            SphereSource::Maps(m) => {
                let t = t % m.samples();
                out.par_chunks_mut(c)
                    .zip(self.centers.par_iter())
                    .for_each(|(o, p)| {
                        // Directions are unit vectors; the lookup cannot fail.
                        let pix =
                            m.grid().vec2pix(rotation.apply_inverse(*p)).unwrap_or(0) as usize;
                        for (k, o) in o.iter_mut().enumerate() {
                            *o = m.map(t, k)[pix];
                        }
                    });
            }
        }
        out
    }

    /// `[N, C]` values on the source's scale → normalised (zero mean, unit variance per channel).
    pub fn normalise(&self, x: &mut [f32]) {
        let c = self.channels();
        for (i, v) in x.iter_mut().enumerate() {
            *v = (*v - self.mean[i % c]) / self.std[i % c];
        }
    }

    /// The inverse of [`normalise`](Self::normalise).
    pub fn denormalise(&self, x: &mut [f32]) {
        let c = self.channels();
        for (i, v) in x.iter_mut().enumerate() {
            *v = *v * self.std[i % c] + self.mean[i % c];
        }
    }
}
