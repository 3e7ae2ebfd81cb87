//! Opening what `--data` names as HEALPix maps.
//!
//! | `--data` | reader |
//! |---|---|
//! | `maps.npy` (`[N]`, `[C, N]`, `[T, C, N]`) | [`NpyReader`]: one positioned read per sample |
//! | a directory or a glob of `.npy` / FITS files | [`MapFiles`]: the files' samples in name order |
//! | a zarr array `[time, channel, pixel]` (its directory) | [`ZarrMaps`] |
//! | `map.fits` | [`HealpixMaps`](super::HealpixMaps) in memory (a FITS file holds one sample) |
//!
//! ```
//! use idx_flow_train::data::npy::NpyWriter;
//! use idx_flow_train::data::open_maps;
//! let dir = tempfile::tempdir()?;
//! for name in ["2020.npy", "2021.npy"] {
//!     let mut w = NpyWriter::create(&dir.path().join(name), &[3, 2, 48])?; // nside 2
//!     w.append(&vec![0.5; 3 * 2 * 48])?;
//!     w.finish()?;
//! }
//! assert_eq!(open_maps(dir.path().to_str().unwrap(), false)?.samples(), 6);
//! let pattern = format!("{}/2021.*", dir.path().display());
//! assert_eq!(open_maps(&pattern, false)?.samples(), 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use idx_flow_healpix::geometry::Ordering;

use super::reader::{MapFiles, MapReader, NpyReader, map_extension};
use super::zarr::{ZarrMaps, is_zarr};
use crate::{Error, Result};

/// Opens the maps `spec` names: a `.npy` file (read a sample at a time), a
/// FITS file, a directory of `.npy` / FITS files, a glob (`'maps/*.npy'`),
/// or a zarr array's directory. `nested` gives the ordering of `.npy` maps
/// and of zarr arrays whose attributes do not say it (RING otherwise).
pub fn open_maps(spec: &str, nested: bool) -> Result<Arc<dyn MapReader>> {
    let ordering = if nested {
        Ordering::Nested
    } else {
        Ordering::Ring
    };
    let path = Path::new(spec);
    if spec.contains(['*', '?', '[']) && !path.exists() {
        let paths = glob::glob(spec).map_err(|e| {
            Error::arg("data", format!("{spec:?} is not a valid glob pattern: {e}"))
        })?;
        let mut files: Vec<PathBuf> = paths
            .filter_map(|p| p.ok())
            .filter(|p| p.is_file() && map_extension(p).is_some())
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(Error::arg(
                "data",
                format!("no .npy or .fits files match {spec:?}"),
            ));
        }
        return Ok(Arc::new(MapFiles::open(&files, ordering)?));
    }
    if !path.exists() {
        return Err(Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such file or directory (expected .npy / .fits maps, a directory or glob of them, a zarr array, a .png or .jpg image, or bluemarble / etopo1)",
            ),
        ));
    }
    if path.is_dir() {
        if is_zarr(path) {
            return Ok(Arc::new(ZarrMaps::open(path, ordering)?));
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| Error::io(path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && map_extension(p).is_some())
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(Error::format(
                path,
                "a directory without .npy or .fits files (and not a zarr array: no zarr.json or .zarray)",
            ));
        }
        return Ok(Arc::new(MapFiles::open(&files, ordering)?));
    }
    match map_extension(path) {
        Some("npy") => Ok(Arc::new(NpyReader::open(path, ordering)?)),
        Some(_) => Ok(Arc::new(super::fits::read_healpix_fits(path)?)),
        None => Err(Error::format(
            path,
            "unknown map format: expected .npy (HEALPix array), .fits (healpy write_map), a directory or glob of them, a zarr array, or .png/.jpg (equirectangular image)",
        )),
    }
}
