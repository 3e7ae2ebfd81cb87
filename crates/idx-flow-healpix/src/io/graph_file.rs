//! Connection graphs on disk, readable by numpy and by safetensors users.
//!
//! Both formats hold `indices` (int64 `[N_out, k]`), `distances_km` (float64
//! `[N_out, k]`) and, when the graph has them, `weights` (float64 `[N_out, k]`).
//! The grids travel as `nside_in`, `nside_out` (int64 scalars) and
//! `ordering_in`, `ordering_out` (int64 scalars, 0 = RING, 1 = NESTED) in
//! `.npz`, and as the same keys in the `__metadata__` header of
//! `.safetensors` (orderings as "ring"/"nested").

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use ndarray::{Array0, Array2, ArrayD};
use ndarray_npy::{NpzReader, NpzWriter};

use super::npz_sizes::check_npz_member_sizes;
use super::{SafetensorsFile, SafetensorsWriter, write_atomically};
use crate::error::{Error, Result};
use crate::geometry::{HealpixGrid, Ordering};
use crate::graphs::{ConnectionGraph, EARTH_RADIUS_KM};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Npz,
    Safetensors,
}

fn format_of(path: &Path) -> Result<Format> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .as_deref()
    {
        Some("npz") => Ok(Format::Npz),
        Some("safetensors") => Ok(Format::Safetensors),
        _ => Err(Error::format(
            path,
            "unknown graph file type, expected a .npz or .safetensors extension",
        )),
    }
}

fn ordering_code(o: Ordering) -> i64 {
    match o {
        Ordering::Ring => 0,
        Ordering::Nested => 1,
    }
}

fn ordering_from_code(path: &Path, key: &str, code: i64) -> Result<Ordering> {
    match code {
        0 => Ok(Ordering::Ring),
        1 => Ok(Ordering::Nested),
        _ => Err(Error::format(
            path,
            format!("{key} = {code}, expected 0 (RING) or 1 (NESTED)"),
        )),
    }
}

/// What a file holds, before it is checked against the grids.
struct RawGraph {
    indices: Vec<i64>,
    distances_km: Vec<f64>,
    weights: Option<Vec<f64>>,
    rows: usize,
    k: usize,
    grids: Option<(HealpixGrid, HealpixGrid)>,
}

fn expect_2d(
    path: &Path,
    name: &str,
    what: &str,
    shape: &[usize],
    rows_k: Option<(usize, usize)>,
) -> Result<(usize, usize)> {
    let ok = shape.len() == 2 && rows_k.is_none_or(|(r, k)| shape == [r, k]);
    if !ok {
        let expected = match rows_k {
            Some((r, k)) => format!("[{r}, {k}]"),
            None => "[N_out, k]".into(),
        };
        return Err(Error::format(
            path,
            format!("'{name}': expected {what} {expected}, got shape {shape:?}"),
        ));
    }
    Ok((shape[0], shape[1]))
}

/// Every member `read_npz` reads.
const NPZ_KEYS: [&str; 7] = [
    "indices",
    "distances_km",
    "weights",
    "nside_in",
    "nside_out",
    "ordering_in",
    "ordering_out",
];

fn read_npz(path: &Path) -> Result<RawGraph> {
    check_npz_member_sizes(path, &NPZ_KEYS)?;
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut npz = NpzReader::new(BufReader::new(file))
        .map_err(|e| Error::format(path, format!("not a readable .npz archive: {e}")))?;
    let names = npz
        .names()
        .map_err(|e| Error::format(path, format!("not a readable .npz archive: {e}")))?;
    let has = |n: &str| names.iter().any(|x| x == n);
    for required in ["indices", "distances_km"] {
        if !has(required) {
            return Err(Error::format(
                path,
                format!("missing array '{required}' (found {names:?})"),
            ));
        }
    }
    let indices: ArrayD<i64> = npz
        .by_name("indices")
        .map_err(|e| Error::format(path, format!("'indices': expected int64 [N_out, k]: {e}")))?;
    let (rows, k) = expect_2d(path, "indices", "int64", indices.shape(), None)?;
    let distances: ArrayD<f64> = npz.by_name("distances_km").map_err(|e| {
        Error::format(
            path,
            format!("'distances_km': expected float64 [N_out, k]: {e}"),
        )
    })?;
    expect_2d(
        path,
        "distances_km",
        "float64",
        distances.shape(),
        Some((rows, k)),
    )?;
    let weights = if has("weights") {
        let w: ArrayD<f64> = npz.by_name("weights").map_err(|e| {
            Error::format(path, format!("'weights': expected float64 [N_out, k]: {e}"))
        })?;
        expect_2d(path, "weights", "float64", w.shape(), Some((rows, k)))?;
        Some(w.iter().copied().collect())
    } else {
        None
    };
    let grids = if ["nside_in", "nside_out", "ordering_in", "ordering_out"]
        .iter()
        .all(|n| has(n))
    {
        let mut scalar = |name: &str| -> Result<i64> {
            let a: ArrayD<i64> = npz.by_name(name).map_err(|e| {
                Error::format(path, format!("'{name}': expected an int64 scalar: {e}"))
            })?;
            a.iter()
                .next()
                .copied()
                .filter(|_| a.len() == 1)
                .ok_or_else(|| Error::format(path, format!("'{name}': expected one int64 value")))
        };
        let (ni, no) = (scalar("nside_in")?, scalar("nside_out")?);
        let oi = ordering_from_code(path, "ordering_in", scalar("ordering_in")?)?;
        let oo = ordering_from_code(path, "ordering_out", scalar("ordering_out")?)?;
        Some((grid(path, ni, oi)?, grid(path, no, oo)?))
    } else {
        None
    };
    Ok(RawGraph {
        indices: indices.iter().copied().collect(),
        distances_km: distances.iter().copied().collect(),
        weights,
        rows,
        k,
        grids,
    })
}

fn grid(path: &Path, nside: i64, ordering: Ordering) -> Result<HealpixGrid> {
    let n = u32::try_from(nside)
        .map_err(|_| Error::format(path, format!("nside {nside} is not a valid HEALPix nside")))?;
    HealpixGrid::new(n, ordering).map_err(|e| Error::format(path, e.to_string()))
}

fn read_safetensors(path: &Path) -> Result<RawGraph> {
    let file = SafetensorsFile::open(path)?;
    let (indices, shape) = file.i64("indices")?;
    let (rows, k) = expect_2d(path, "indices", "int64", &shape, None)?;
    let (distances_km, dshape) = file.f64("distances_km")?;
    expect_2d(path, "distances_km", "float64", &dshape, Some((rows, k)))?;
    let weights = if file.contains("weights") {
        let (w, wshape) = file.f64("weights")?;
        expect_2d(path, "weights", "float64", &wshape, Some((rows, k)))?;
        Some(w)
    } else {
        None
    };
    let meta = file.header_metadata();
    let grids = match (
        meta.get("nside_in"),
        meta.get("nside_out"),
        meta.get("ordering_in"),
        meta.get("ordering_out"),
    ) {
        (Some(ni), Some(no), Some(oi), Some(oo)) => {
            let parse_n = |s: &str| {
                s.parse::<i64>()
                    .map_err(|_| Error::format(path, format!("nside '{s}' is not an integer")))
            };
            let parse_o = |s: &str| {
                s.parse::<Ordering>()
                    .map_err(|e| Error::format(path, e.to_string()))
            };
            Some((
                grid(path, parse_n(ni)?, parse_o(oi)?)?,
                grid(path, parse_n(no)?, parse_o(oo)?)?,
            ))
        }
        _ => None,
    };
    Ok(RawGraph {
        indices,
        distances_km,
        weights,
        rows,
        k,
        grids,
    })
}

fn build(
    path: &Path,
    raw: RawGraph,
    input: HealpixGrid,
    output: HealpixGrid,
) -> Result<ConnectionGraph> {
    if raw.rows as u64 != output.npix() {
        return Err(Error::format(
            path,
            format!(
                "{} rows, expected one per pixel of the output grid ({output}: {})",
                raw.rows,
                output.npix()
            ),
        ));
    }
    let distances = raw
        .distances_km
        .iter()
        .map(|d| d / EARTH_RADIUS_KM)
        .collect();
    ConnectionGraph::from_parts(input, output, raw.k, raw.indices, distances, raw.weights)
        .map_err(|e| Error::format(path, e.to_string()))
}

impl ConnectionGraph {
    /// Writes the graph as `.npz` or `.safetensors` (chosen by the extension),
    /// to a temporary name first and then renamed into place.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let (rows, k) = (self.n_out(), self.k());
        match format_of(path)? {
            Format::Npz => write_atomically(path, |file| {
                let err = |e: ndarray_npy::WriteNpzError| {
                    Error::format(path, format!("cannot write .npz: {e}"))
                };
                let mut npz = NpzWriter::new(file);
                let shaped =
                    |v: Vec<f64>| Array2::from_shape_vec((rows, k), v).expect("[n_out, k] values");
                npz.add_array(
                    "indices",
                    &Array2::from_shape_vec((rows, k), self.indices().to_vec())
                        .expect("[n_out, k] values"),
                )
                .map_err(err)?;
                npz.add_array("distances_km", &shaped(self.distances_km()))
                    .map_err(err)?;
                if let Some(w) = self.weights() {
                    npz.add_array("weights", &shaped(w.to_vec())).map_err(err)?;
                }
                for (name, value) in [
                    ("nside_in", self.input().nside() as i64),
                    ("nside_out", self.output().nside() as i64),
                    ("ordering_in", ordering_code(self.input().ordering())),
                    ("ordering_out", ordering_code(self.output().ordering())),
                ] {
                    npz.add_array(name, &Array0::from_elem((), value))
                        .map_err(err)?;
                }
                npz.finish().map_err(err)?;
                Ok(())
            }),
            Format::Safetensors => {
                let mut w = SafetensorsWriter::new();
                w.add_i64("indices", &[rows, k], self.indices())?;
                w.add_f64("distances_km", &[rows, k], &self.distances_km())?;
                if let Some(weights) = self.weights() {
                    w.add_f64("weights", &[rows, k], weights)?;
                }
                w.set_metadata("nside_in", self.input().nside().to_string());
                w.set_metadata("nside_out", self.output().nside().to_string());
                w.set_metadata("ordering_in", self.input().ordering().as_str());
                w.set_metadata("ordering_out", self.output().ordering().as_str());
                w.write(path)
            }
        }
    }

    /// Reads a graph written by [`ConnectionGraph::save`].
    ///
    /// Fails with [`Error::Format`] naming the problem for a wrong dtype or
    /// shape, a truncated body, indices outside the input grid, or a file
    /// without grid information (use [`ConnectionGraph::load_with_grids`]
    /// for files made elsewhere, such as idx_flow's arrays saved by numpy).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let raw = match format_of(path)? {
            Format::Npz => read_npz(path)?,
            Format::Safetensors => read_safetensors(path)?,
        };
        let Some((input, output)) = raw.grids else {
            return Err(Error::format(
                path,
                "no grid information (nside_in, nside_out, ordering_in, ordering_out); \
                 load it with ConnectionGraph::load_with_grids",
            ));
        };
        build(path, raw, input, output)
    }

    /// Reads `indices`, `distances_km` and optional `weights` from a `.npz` or
    /// `.safetensors` file, for the given grids. Grid information in the file,
    /// when present, must agree with them.
    pub fn load_with_grids(
        path: impl AsRef<Path>,
        input: HealpixGrid,
        output: HealpixGrid,
    ) -> Result<Self> {
        let path = path.as_ref();
        let raw = match format_of(path)? {
            Format::Npz => read_npz(path)?,
            Format::Safetensors => read_safetensors(path)?,
        };
        if let Some((fi, fo)) = raw.grids
            && (fi, fo) != (input, output)
        {
            return Err(Error::format(
                path,
                format!("holds a graph {fi} -> {fo}, expected {input} -> {output}"),
            ));
        }
        build(path, raw, input, output)
    }
}
