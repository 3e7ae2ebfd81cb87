//! Zarr arrays of HEALPix maps, `[time, channel, pixel]` (or `[time, pixel]`
//! for one channel), read one time step at a time with `zarrs`: climate data
//! such as ERA5 on HEALPix is kept this way.
//!
//! The array's directory is given (the one holding `zarr.json`, or `.zarray`
//! for Zarr V2). Its ordering comes from the attribute `healpix_order`
//! (`"nested"` / `"ring"`; also read: `order`, `ordering`), or from the
//! caller. Every numeric data type is converted to `float32`. Chunks of one
//! time step read fastest in shuffled order; a chunk of several time steps is
//! decoded for each step read from it.
//!
//! ```
//! use std::sync::Arc;
//! use idx_flow_train::data::reader::MapReader;
//! use idx_flow_train::data::zarr::ZarrMaps;
//! use idx_flow_healpix::geometry::Ordering;
//! let dir = tempfile::tempdir()?;
//! let store = Arc::new(zarrs::filesystem::FilesystemStore::new(dir.path())?);
//! let array = zarrs::array::ArrayBuilder::new(
//!     vec![4, 2, 12],                     // 4 times, 2 channels, nside 1
//!     vec![1, 2, 12],                     // one time step per chunk
//!     zarrs::array::data_type::float32(),
//!     0.0f32,
//! )
//! .build(store, "/")?;
//! array.store_metadata()?;
//! array.store_array_subset(&[0..4, 0..2, 0..12], &(0..96).map(|v| v as f32).collect::<Vec<_>>())?;
//! let maps = ZarrMaps::open(dir.path(), Ordering::Ring)?;
//! let mut sample = vec![0.0; 24];
//! maps.read(2, &mut sample)?;
//! assert_eq!((maps.samples(), sample[0]), (4, 48.0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use idx_flow_healpix::geometry::{HealpixGrid, Ordering};
use zarrs::array::{Array, data_type};
use zarrs::filesystem::FilesystemStore;

use super::maps::nside_of_length;
use super::reader::MapReader;
use crate::{Error, Result};

/// Whether `dir` is a zarr array (it holds `zarr.json` or `.zarray`).
pub fn is_zarr(dir: &Path) -> bool {
    dir.join("zarr.json").is_file() || dir.join(".zarray").is_file()
}

/// A zarr array `[time, channel, pixel]` of HEALPix maps.
pub struct ZarrMaps {
    path: PathBuf,
    array: Array<FilesystemStore>,
    grid: HealpixGrid,
    samples: usize,
    channels: usize,
    three_d: bool,
    dtype: &'static str,
}

impl std::fmt::Debug for ZarrMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZarrMaps")
            .field("path", &self.path)
            .field("grid", &self.grid)
            .field("samples", &self.samples)
            .field("channels", &self.channels)
            .finish()
    }
}

impl ZarrMaps {
    /// Opens the array in `dir`; `ordering` applies unless its attributes say otherwise.
    pub fn open(dir: &Path, ordering: Ordering) -> Result<Self> {
        let store = FilesystemStore::new(dir).map_err(|e| Error::format(dir, e.to_string()))?;
        let array = Array::open(Arc::new(store), "/")
            .map_err(|e| Error::format(dir, format!("not a readable zarr array: {e}")))?;
        let shape: Vec<usize> = array.shape().iter().map(|&s| s as usize).collect();
        let (samples, channels, npix, three_d) = match shape.as_slice() {
            [t, c, n] => (*t, *c, *n, true),
            [t, n] => (*t, 1, *n, false),
            _ => {
                return Err(Error::format(
                    dir,
                    format!(
                        "zarr array of shape {shape:?}; expected [time, channel, pixel] or [time, pixel]"
                    ),
                ));
            }
        };
        if samples == 0 || channels == 0 {
            return Err(Error::format(
                dir,
                format!("zarr array of shape {shape:?} is empty"),
            ));
        }
        let nside = nside_of_length(npix, "the pixel axis").map_err(|e| match e {
            Error::InvalidArgument { message, .. } => Error::format(dir, message),
            other => other,
        })?;
        let attrs = array.attributes();
        let named = ["healpix_order", "order", "ordering"]
            .iter()
            .find_map(|k| attrs.get(*k).and_then(|v| v.as_str()))
            .map(str::to_ascii_lowercase);
        let ordering = match named.as_deref() {
            None => ordering,
            Some("nested" | "nest") => Ordering::Nested,
            Some("ring") => Ordering::Ring,
            Some(other) => {
                return Err(Error::format(
                    dir,
                    format!(
                        "attribute healpix_order is {other:?}; expected \"nested\" or \"ring\""
                    ),
                ));
            }
        };
        // A data type we cannot convert is refused now, not at the first read.
        let dtype = data_type_name(&array, dir)?;
        Ok(Self {
            path: dir.to_path_buf(),
            array,
            grid: HealpixGrid::new(nside, ordering)?,
            samples,
            channels,
            three_d,
            dtype,
        })
    }

    fn read_as<T: zarrs::array::ElementOwned + Copy>(
        &self,
        t: usize,
        out: &mut [f32],
        to_f32: impl Fn(T) -> f32,
    ) -> Result<()> {
        let (t, c, n) = (t as u64, self.channels as u64, self.grid.npix());
        let values: Vec<T> = if self.three_d {
            self.array
                .retrieve_array_subset::<Vec<T>>(&[t..t + 1, 0..c, 0..n])
        } else {
            self.array
                .retrieve_array_subset::<Vec<T>>(&[t..t + 1, 0..n])
        }
        .map_err(|e| Error::format(&self.path, format!("time step {t}: {e}")))?;
        for (o, v) in out.iter_mut().zip(values) {
            *o = to_f32(v);
        }
        Ok(())
    }
}

/// The name of `array`'s data type, if it is one we convert to `float32`.
fn data_type_name(array: &Array<FilesystemStore>, dir: &Path) -> Result<&'static str> {
    let dt = array.data_type();
    let known: [(&'static str, zarrs::array::DataType); 11] = [
        ("float32", data_type::float32()),
        ("float64", data_type::float64()),
        ("float16", data_type::float16()),
        ("int8", data_type::int8()),
        ("int16", data_type::int16()),
        ("int32", data_type::int32()),
        ("int64", data_type::int64()),
        ("uint8", data_type::uint8()),
        ("uint16", data_type::uint16()),
        ("uint32", data_type::uint32()),
        ("uint64", data_type::uint64()),
    ];
    known
        .into_iter()
        .find(|(_, k)| k == dt)
        .map(|(name, _)| name)
        .ok_or_else(|| {
            Error::format(
                dir,
                format!(
                    "zarr data type {dt:?} is not supported: expected float16/32/64, int8..int64 or uint8..uint64"
                ),
            )
        })
}

impl MapReader for ZarrMaps {
    fn grid(&self) -> HealpixGrid {
        self.grid
    }
    fn channels(&self) -> usize {
        self.channels
    }
    fn samples(&self) -> usize {
        self.samples
    }
    fn read(&self, t: usize, out: &mut [f32]) -> Result<()> {
        let per = self.channels * self.grid.npix() as usize;
        if t >= self.samples || out.len() != per {
            return Err(Error::arg(
                "sample",
                format!(
                    "time step {t} into {} values: expected a step below {} and {per} values",
                    out.len(),
                    self.samples
                ),
            ));
        }
        match self.dtype {
            "float32" => self.read_as(t, out, |v: f32| v),
            "float64" => self.read_as(t, out, |v: f64| v as f32),
            "float16" => self.read_as(t, out, |v: half::f16| v.to_f32()),
            "int8" => self.read_as(t, out, |v: i8| v as f32),
            "int16" => self.read_as(t, out, |v: i16| v as f32),
            "int32" => self.read_as(t, out, |v: i32| v as f32),
            "int64" => self.read_as(t, out, |v: i64| v as f32),
            "uint8" => self.read_as(t, out, |v: u8| v as f32),
            "uint16" => self.read_as(t, out, |v: u16| v as f32),
            "uint32" => self.read_as(t, out, |v: u32| v as f32),
            _ => self.read_as(t, out, |v: u64| v as f32),
        }
    }
    fn locate(&self, t: usize) -> String {
        format!("{}, time step {t}", self.path.display())
    }
    fn describe(&self) -> String {
        format!(
            "zarr array [{}, {}, {}] ({}, {})",
            self.samples,
            self.channels,
            self.grid.npix(),
            self.grid,
            self.dtype
        )
    }
}
