//! HEALPix maps read from files: `.npy` arrays (`[N]`, `[C, N]` or `[T, C, N]`)
//! and FITS binary tables as healpy's `write_map` writes them ([`fits`](super::fits)),
//! chosen by the file's extension.

use std::path::Path;

use idx_flow_healpix::geometry::Ordering;

use super::maps::HealpixMaps;
use crate::{Error, Result};

impl HealpixMaps {
    /// Reads `.npy` (any float or integer dtype; shape `[N]`, `[C, N]` or `[T, C, N]`)
    /// or FITS (healpy's `write_map`: one column per channel, ordering from the
    /// header). `nested` gives the ordering of `.npy` maps (RING otherwise).
    pub fn open(path: &Path, nested: bool) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .unwrap_or_default();
        let with_path = |e: Error| match e {
            Error::Format { .. } | Error::Io { .. } => e,
            other => Error::format(path, other.to_string()),
        };
        match ext.as_str() {
            "npy" => Self::read_npy(
                path,
                if nested {
                    Ordering::Nested
                } else {
                    Ordering::Ring
                },
            )
            .map_err(with_path),
            "fits" | "fit" | "fts" => super::fits::read_healpix_fits(path).map_err(with_path),
            _ => Err(Error::format(
                path,
                "unknown map format: expected .npy (HEALPix array), .fits (healpy write_map), or .png/.jpg (equirectangular image)",
            )),
        }
    }

    fn read_npy(path: &Path, ordering: Ordering) -> Result<Self> {
        let reader = super::reader::NpyReader::open(path, ordering)?;
        super::reader::load_into_memory(&reader)
    }
}
