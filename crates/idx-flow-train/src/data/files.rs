//! HEALPix maps read from files: `.npy` arrays (`[N]`, `[C, N]` or `[T, C, N]`)
//! and FITS binary tables as healpy's `write_map` writes them ([`fits`](super::fits)),
//! chosen by the file's extension.

use std::path::Path;

use idx_flow_healpix::geometry::Ordering;

use super::maps::{HealpixMaps, nside_of_length};
use crate::{Error, Result};

impl HealpixMaps {
    /// Reads `.npy` (`float32` or `float64`; shape `[N]`, `[C, N]` or `[T, C, N]`)
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
        use ndarray::ArrayD;
        let arr: ArrayD<f32> = match ndarray_npy::read_npy::<_, ArrayD<f32>>(path) {
            Ok(a) => a,
            Err(_) => match ndarray_npy::read_npy::<_, ArrayD<f64>>(path) {
                Ok(a) => a.mapv(|v| v as f32),
                Err(e) => {
                    return Err(Error::format(
                        path,
                        format!("cannot read as a float32 or float64 .npy array: {e}"),
                    ));
                }
            },
        };
        let shape = arr.shape().to_vec();
        let (t, c, n) = match shape.as_slice() {
            [n] => (1, 1, *n),
            [c, n] => (1, *c, *n),
            [t, c, n] => (*t, *c, *n),
            _ => {
                return Err(Error::format(
                    path,
                    format!(
                        "array of shape {shape:?}; expected [N], [C, N] or [T, C, N] with N = 12·nside²"
                    ),
                ));
            }
        };
        if t == 0 || c == 0 {
            return Err(Error::format(
                path,
                format!("array of shape {shape:?} is empty"),
            ));
        }
        let nside = nside_of_length(n, "the last axis")?;
        let data: Vec<f32> = arr.as_standard_layout().iter().copied().collect();
        Self::new(ordering, nside, c, data)
    }
}
