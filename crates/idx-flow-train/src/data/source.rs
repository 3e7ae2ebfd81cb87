//! Where training data come from: the bundled images ([`BundledImage`]) and
//! [`SphereSource`], an equirectangular image or a dataset of HEALPix maps.
//!
//! ```
//! use idx_flow_train::data::SphereSource;
//! let source = SphereSource::open("etopo1", false)?;
//! assert_eq!((source.samples(), source.channels()), (1, 3));
//! # Ok::<(), idx_flow_train::Error>(())
//! ```

use std::path::Path;
use std::sync::Arc;

use super::equirect::EquirectImage;
use super::maps::HealpixMaps;
use super::open::open_maps;
use super::reader::{MapReader, load_into_memory};
use crate::Result;

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
    /// HEALPix maps `[T, C, N]`, read a sample at a time.
    Maps(Arc<dyn MapReader>),
}

impl SphereSource {
    /// A bundled image name (`bluemarble`, `etopo1`), an image file
    /// (`.png`/`.jpg`/`.jpeg`, equirectangular), or HEALPix maps as
    /// [`open_maps`] reads them: a `.npy` or FITS file, a directory or glob of
    /// them, or a zarr array (`.npy` and zarr maps in NESTED order when `nested`).
    /// Maps are read from disk as training needs them; see [`in_memory`](Self::in_memory).
    pub fn open(spec: &str, nested: bool) -> Result<Self> {
        if let Some(b) = BundledImage::from_name(spec) {
            return Ok(SphereSource::Image(b.decode()?));
        }
        let path = Path::new(spec);
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "png" | "jpg" | "jpeg" if path.is_file() => {
                Ok(SphereSource::Image(EquirectImage::open(path)?))
            }
            _ => Ok(SphereSource::Maps(open_maps(spec, nested)?)),
        }
    }

    /// Maps held in memory.
    pub fn maps(maps: HealpixMaps) -> Self {
        SphereSource::Maps(Arc::new(maps))
    }

    /// The same source with every map read into memory (an image is in memory already).
    pub fn in_memory(self) -> Result<Self> {
        match self {
            SphereSource::Maps(m) => Ok(SphereSource::maps(load_into_memory(m.as_ref())?)),
            image => Ok(image),
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
            SphereSource::Maps(m) => m.describe(),
        }
    }
}
