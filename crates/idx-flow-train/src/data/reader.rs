//! HEALPix maps read one sample at a time: the [`MapReader`] trait, and its
//! readers of one `.npy` file ([`NpyReader`]: one positioned read per
//! sample), of many `.npy` / FITS files ([`MapFiles`]: their samples in name
//! order) and of maps in memory ([`HealpixMaps`]). Zarr arrays are read by
//! [`ZarrMaps`](super::zarr::ZarrMaps); [`open_maps`](super::open_maps) opens
//! what `--data` names.
//!
//! ```
//! use idx_flow_train::data::npy::NpyWriter;
//! use idx_flow_train::data::reader::{MapFiles, MapReader};
//! use idx_flow_healpix::geometry::Ordering;
//! let dir = tempfile::tempdir()?;
//! let mut files = vec![];
//! for (i, name) in ["a.npy", "b.npy"].iter().enumerate() {
//!     let path = dir.path().join(name);
//!     let mut w = NpyWriter::create(&path, &[3, 2, 48])?; // nside 2
//!     w.append(&vec![i as f32; 3 * 2 * 48])?;
//!     w.finish()?;
//!     files.push(path);
//! }
//! let maps = MapFiles::open(&files, Ordering::Ring)?;
//! assert_eq!((maps.samples(), maps.channels()), (6, 2));
//! let mut sample = vec![0.0; 2 * 48];
//! maps.read(4, &mut sample)?; // the second sample of b.npy
//! assert_eq!(sample[0], 1.0);
//! assert!(maps.locate(4).ends_with("b.npy, sample 1"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};

use idx_flow_healpix::geometry::{HealpixGrid, Ordering};

use super::maps::HealpixMaps;
use super::npy::NpyMaps;
use crate::{Error, Result};

/// `T` samples of `C`-channel HEALPix maps on one grid, read one sample at a time.
pub trait MapReader: Send + Sync + std::fmt::Debug {
    /// The grid of the maps (nside and ordering).
    fn grid(&self) -> HealpixGrid;
    /// Channels `C`.
    fn channels(&self) -> usize;
    /// Samples `T`.
    fn samples(&self) -> usize;
    /// Reads sample `t`, `[C, N]` in the grid's ordering, into `out`
    /// (`C·N` values). Masked pixels keep their marker (`UNSEEN`, NaN).
    fn read(&self, t: usize, out: &mut [f32]) -> Result<()>;
    /// Where sample `t` is, for messages: `maps/2020.npy, sample 3`.
    fn locate(&self, t: usize) -> String;
    /// What the dataset is, in a few words.
    fn describe(&self) -> String;
}

fn check_read(reader: &dyn MapReader, t: usize, len: usize) -> Result<()> {
    let per = reader.channels() * reader.grid().npix() as usize;
    if t >= reader.samples() || len != per {
        return Err(Error::arg(
            "sample",
            format!(
                "sample {t} into {len} values: expected a sample below {} and {per} values",
                reader.samples()
            ),
        ));
    }
    Ok(())
}

impl MapReader for HealpixMaps {
    fn grid(&self) -> HealpixGrid {
        HealpixMaps::grid(self)
    }
    fn channels(&self) -> usize {
        HealpixMaps::channels(self)
    }
    fn samples(&self) -> usize {
        HealpixMaps::samples(self)
    }
    fn read(&self, t: usize, out: &mut [f32]) -> Result<()> {
        check_read(self, t, out.len())?;
        let per = out.len();
        out.copy_from_slice(&self.data()[t * per..(t + 1) * per]);
        Ok(())
    }
    fn locate(&self, t: usize) -> String {
        format!("sample {t}")
    }
    fn describe(&self) -> String {
        format!(
            "HEALPix maps [{}, {}, {}] ({}) in memory",
            HealpixMaps::samples(self),
            HealpixMaps::channels(self),
            HealpixMaps::grid(self).npix(),
            HealpixMaps::grid(self)
        )
    }
}

/// One `.npy` file of maps, read a sample at a time.
#[derive(Debug)]
pub struct NpyReader {
    maps: NpyMaps,
    grid: HealpixGrid,
}

impl NpyReader {
    /// Opens `path`; its maps are in `ordering`.
    pub fn open(path: &Path, ordering: Ordering) -> Result<Self> {
        let maps = NpyMaps::open(path)?;
        let grid = HealpixGrid::new(maps.nside(), ordering)?;
        Ok(Self { maps, grid })
    }
}

impl MapReader for NpyReader {
    fn grid(&self) -> HealpixGrid {
        self.grid
    }
    fn channels(&self) -> usize {
        self.maps.channels()
    }
    fn samples(&self) -> usize {
        self.maps.samples()
    }
    fn read(&self, t: usize, out: &mut [f32]) -> Result<()> {
        self.maps.read(t, out)
    }
    fn locate(&self, t: usize) -> String {
        format!("{}, sample {t}", self.maps.path().display())
    }
    fn describe(&self) -> String {
        format!(
            "HEALPix maps [{}, {}, {}] ({}, {}) read from disk",
            self.maps.samples(),
            self.maps.channels(),
            self.grid.npix(),
            self.grid,
            self.maps.dtype().name()
        )
    }
}

#[derive(Debug)]
enum MapFile {
    Npy(NpyMaps),
    Fits(PathBuf),
}

/// Many `.npy` and FITS files of maps on one grid with one channel count,
/// their samples one after another in the order of the file names.
#[derive(Debug)]
pub struct MapFiles {
    files: Vec<MapFile>,
    /// Index of the first sample of each file, and the total at the end.
    starts: Vec<usize>,
    grid: HealpixGrid,
    channels: usize,
}

pub(crate) fn map_extension(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "npy" => Some("npy"),
        "fits" | "fit" | "fts" => Some("fits"),
        _ => None,
    }
}

impl MapFiles {
    /// The files `paths` (sorted by the caller), `.npy` maps in `ordering`.
    /// Every file must have the first one's nside, ordering and channel count.
    pub fn open(paths: &[PathBuf], ordering: Ordering) -> Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        let mut starts = vec![0];
        let mut first: Option<(HealpixGrid, usize, PathBuf)> = None;
        for path in paths {
            let (file, grid, channels, samples) = match map_extension(path) {
                Some("npy") => {
                    let m = NpyMaps::open(path)?;
                    let grid = HealpixGrid::new(m.nside(), ordering)?;
                    let (c, t) = (m.channels(), m.samples());
                    (MapFile::Npy(m), grid, c, t)
                }
                Some(_) => {
                    let m = super::fits::read_healpix_fits(path)?;
                    (
                        MapFile::Fits(path.clone()),
                        m.grid(),
                        m.channels(),
                        m.samples(),
                    )
                }
                None => {
                    return Err(Error::format(
                        path,
                        "unknown map format: expected .npy or .fits files",
                    ));
                }
            };
            match &first {
                None => first = Some((grid, channels, path.clone())),
                Some((g, c, p)) => {
                    if grid.nside() != g.nside() || channels != *c {
                        return Err(Error::format(
                            path,
                            format!(
                                "nside {} with {channels} channel(s), but {} has nside {} with {c} channel(s); \
                                 every file of a dataset needs the same nside and channels",
                                grid.nside(),
                                p.display(),
                                g.nside()
                            ),
                        ));
                    }
                    if grid.ordering() != g.ordering() {
                        return Err(Error::format(
                            path,
                            format!(
                                "{} ordering, but {} is {}; every file of a dataset needs one ordering",
                                grid.ordering(),
                                p.display(),
                                g.ordering()
                            ),
                        ));
                    }
                }
            }
            files.push(file);
            starts.push(starts.last().copied().unwrap_or(0) + samples);
        }
        let (grid, channels, _) = first.ok_or_else(|| Error::arg("data", "no files given"))?;
        Ok(Self {
            files,
            starts,
            grid,
            channels,
        })
    }

    fn find(&self, t: usize) -> (usize, usize) {
        let f = self.starts.partition_point(|&s| s <= t) - 1;
        (f, t - self.starts[f])
    }

    fn path(&self, f: usize) -> &Path {
        match &self.files[f] {
            MapFile::Npy(m) => m.path(),
            MapFile::Fits(p) => p,
        }
    }
}

impl MapReader for MapFiles {
    fn grid(&self) -> HealpixGrid {
        self.grid
    }
    fn channels(&self) -> usize {
        self.channels
    }
    fn samples(&self) -> usize {
        self.starts.last().copied().unwrap_or(0)
    }
    fn read(&self, t: usize, out: &mut [f32]) -> Result<()> {
        check_read(self, t, out.len())?;
        let (f, local) = self.find(t);
        match &self.files[f] {
            MapFile::Npy(m) => m.read(local, out),
            MapFile::Fits(path) => {
                let m = super::fits::read_healpix_fits(path)?;
                if m.channels() != self.channels || m.grid().nside() != self.grid.nside() {
                    return Err(Error::format(
                        path,
                        "the file changed while the dataset was open",
                    ));
                }
                MapReader::read(&m, local, out)
            }
        }
    }
    fn locate(&self, t: usize) -> String {
        let (f, local) = self.find(t.min(self.samples().saturating_sub(1)));
        format!("{}, sample {local}", self.path(f).display())
    }
    fn describe(&self) -> String {
        format!(
            "HEALPix maps [{}, {}, {}] ({}) in {} files",
            self.samples(),
            self.channels,
            self.grid.npix(),
            self.grid,
            self.files.len()
        )
    }
}

/// Reads every sample of `reader` into memory (for datasets that fit, when
/// reading from disk during training is slower than keeping them).
pub fn load_into_memory(reader: &dyn MapReader) -> Result<HealpixMaps> {
    let per = reader.channels() * reader.grid().npix() as usize;
    let mut data = vec![0f32; per * reader.samples()];
    for (t, chunk) in data.chunks_mut(per).enumerate() {
        reader.read(t, chunk)?;
    }
    HealpixMaps::new(
        reader.grid().ordering(),
        reader.grid().nside(),
        reader.channels(),
        data,
    )
}
