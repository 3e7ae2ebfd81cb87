//! A trained model over a whole dataset (`idx-flow apply`): samples read in
//! batches by a background thread, reconstructions and latent codes streamed
//! to `.npy` files (or FITS for one sample) under temporary names, and the
//! error of every map.
//!
//! ```no_run
//! use burn::tensor::Device;
//! use idx_flow_train::data::SphereSource;
//! use idx_flow_train::train::apply::{ApplyOptions, apply};
//! use idx_flow_train::train::trained::TrainedModel;
//! let model = TrainedModel::load("runs/era5".as_ref(), &Device::default())?;
//! let data = model.dataset(SphereSource::open("era5-2024.zarr", false)?)?;
//! let options = ApplyOptions::new("recon.npy").with_latent("codes.npy");
//! let report = apply(&model, &data, &options, &mut |_, _| {})?;
//! println!("PSNR {:.2} dB over {} maps", report.psnr_db, report.maps.len());
//! # Ok::<(), idx_flow_train::Error>(())
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::metrics::psnr;
use super::trained::TrainedModel;
use crate::data::fits::write_healpix_fits;
use crate::data::loader::Prefetch;
use crate::data::npy::NpyWriter;
use crate::data::{SphereDataset, SphereSource};
use crate::{Error, Result};
use idx_flow_healpix::geometry::{HealpixGrid, Ordering};

/// Where `apply` writes and how it reads.
#[derive(Clone, Debug)]
pub struct ApplyOptions {
    /// Reconstructions `[T, C, N]` (`.npy`, or `.fits` for one sample).
    pub output: PathBuf,
    /// Latent codes `[T, C_latent, N_latent]` (`.npy`, or `.fits` for one sample).
    pub latent: Option<PathBuf>,
    /// Samples per forward pass. Default: 16.
    pub batch: usize,
    /// Batches read ahead. Default: 2.
    pub prefetch: usize,
    /// How long to wait for a batch from the reading thread. Default: 120 s.
    pub read_timeout: Duration,
}

impl ApplyOptions {
    /// Reconstructions into `output`, no codes, batches of 16.
    pub fn new(output: impl Into<PathBuf>) -> Self {
        Self {
            output: output.into(),
            latent: None,
            batch: 16,
            prefetch: 2,
            read_timeout: Duration::from_secs(120),
        }
    }

    /// Also write the latent codes into `latent`.
    pub fn with_latent(mut self, latent: impl Into<PathBuf>) -> Self {
        self.latent = Some(latent.into());
        self
    }
}

/// The error of one map (one time index, all channels, valid pixels).
#[derive(Clone, Debug, PartialEq)]
pub struct MapScore {
    /// Time index.
    pub t: usize,
    /// Mean squared error over the valid values.
    pub mse: f64,
    /// PSNR in dB with the training data's peak.
    pub psnr_db: f64,
    /// Valid values compared.
    pub valid: usize,
}

/// What `apply` did.
#[derive(Clone, Debug, PartialEq)]
pub struct ApplyReport {
    /// Every map's error, in time order.
    pub maps: Vec<MapScore>,
    /// Mean squared error over every valid value.
    pub mse: f64,
    /// `mse` as PSNR with the training data's peak.
    pub psnr_db: f64,
    /// Seconds from the first read to the renamed files.
    pub seconds: f64,
    /// Maps per second.
    pub maps_per_s: f64,
}

/// A `.npy` streamed out, or the values of one FITS sample kept for the end.
enum Output {
    Npy(NpyWriter),
    Fits(PathBuf, Ordering, Vec<f32>),
}

impl Output {
    fn create(path: &Path, shape: [usize; 3], ordering: Ordering) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        match ext.as_str() {
            "npy" => Ok(Output::Npy(NpyWriter::create(path, &shape)?)),
            "fits" | "fit" | "fts" if shape[0] == 1 => Ok(Output::Fits(
                path.to_path_buf(),
                ordering,
                Vec::with_capacity(shape[1] * shape[2]),
            )),
            "fits" | "fit" | "fts" => Err(Error::arg(
                "output",
                format!(
                    "{}: a FITS map holds one sample (healpy write_map), the data have {}; write .npy",
                    path.display(),
                    shape[0]
                ),
            )),
            _ => Err(Error::arg(
                "output",
                format!("{}: expected a .npy or .fits file name", path.display()),
            )),
        }
    }

    fn append(&mut self, values: &[f32]) -> Result<()> {
        match self {
            Output::Npy(w) => w.append(values),
            Output::Fits(_, _, v) => {
                v.extend_from_slice(values);
                Ok(())
            }
        }
    }

    fn finish(self, channels: usize) -> Result<()> {
        match self {
            Output::Npy(w) => w.finish(),
            Output::Fits(path, ordering, v) => {
                let n = v.len() / channels.max(1);
                let maps: Vec<Vec<f32>> = v.chunks(n).map(<[f32]>::to_vec).collect();
                write_healpix_fits(&path, ordering, &maps)
            }
        }
    }
}

/// Applies `model` to every sample of `data` (built by
/// [`TrainedModel::dataset`]), writing the files `options` name; nothing is
/// in place until all of it is written. `progress` is told the maps done and
/// the scores of the last batch.
pub fn apply(
    model: &TrainedModel,
    data: &SphereDataset,
    options: &ApplyOptions,
    progress: &mut dyn FnMut(usize, &[MapScore]),
) -> Result<ApplyReport> {
    let started = Instant::now();
    let SphereSource::Maps(reader) = data.source() else {
        return Err(Error::arg(
            "data",
            "a trained model applies to HEALPix maps, not to an image",
        ));
    };
    if options.batch == 0 {
        return Err(Error::arg("batch", "got 0, expected at least 1"));
    }
    if options.latent.as_ref() == Some(&options.output) {
        return Err(Error::arg(
            "latent",
            "the codes and the reconstructions need two different files",
        ));
    }
    let grid: HealpixGrid = reader.grid();
    let (t_all, c, n_in) = (reader.samples(), reader.channels(), grid.npix() as usize);
    let latent_grid = model.latent_grid()?;
    let c_lat = model.config().model.latent_channels;
    let mut recon_out = Output::create(&options.output, [t_all, c, n_in], grid.ordering())?;
    let mut codes_out = options
        .latent
        .as_ref()
        .map(|p| {
            Output::create(
                p,
                [t_all, c_lat, latent_grid.npix() as usize],
                Ordering::Nested,
            )
        })
        .transpose()?;
    let back = model.back_lookup(grid)?;
    let per = c * n_in;
    let steps = t_all.div_ceil(options.batch);
    let peak = model.normalisation().peak;
    let mut maps = Vec::with_capacity(t_all);
    let (mut sq_all, mut count_all) = (0f64, 0usize);
    std::thread::scope(|scope| -> Result<()> {
        let batches = Prefetch::start(
            scope,
            0..steps,
            options.prefetch,
            options.read_timeout,
            |step| {
                let first = step * options.batch;
                let b = options.batch.min(t_all - first);
                let mut raw = vec![0f32; b * per];
                for (i, sample) in raw.chunks_mut(per).enumerate() {
                    reader.read(first + i, sample)?;
                }
                Ok(raw)
            },
        );
        for step in 0..steps {
            let raw = batches.next(step)?;
            let first = step * options.batch;
            let applied = model.apply(data, &raw, first, &back)?;
            recon_out.append(&applied.reconstructions)?;
            if let Some(out) = codes_out.as_mut() {
                out.append(&applied.codes)?;
            }
            let start = maps.len();
            for (i, (sq, count)) in applied.errors.into_iter().enumerate() {
                let mse = sq / count.max(1) as f64;
                sq_all += sq;
                count_all += count;
                maps.push(MapScore {
                    t: first + i,
                    mse,
                    psnr_db: psnr(mse, peak),
                    valid: count,
                });
            }
            progress(maps.len(), &maps[start..]);
        }
        Ok(())
    })?;
    recon_out.finish(c)?;
    if let Some(out) = codes_out {
        out.finish(c_lat)?;
    }
    let mse = sq_all / count_all.max(1) as f64;
    let seconds = started.elapsed().as_secs_f64();
    Ok(ApplyReport {
        psnr_db: psnr(mse, peak),
        mse,
        maps_per_s: maps.len() as f64 / seconds.max(1e-9),
        maps,
        seconds,
    })
}
