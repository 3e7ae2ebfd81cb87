//! A finished training run loaded back from its directory, to apply to new
//! maps: [`TrainedModel::encode_maps`] gives the latent codes,
//! [`decode_maps`](TrainedModel::decode_maps) the maps of codes, and
//! [`reconstruct_maps`](TrainedModel::reconstruct_maps) both in one pass, on
//! the input's own grid and ordering with `UNSEEN` where the input was masked.
//!
//! A run directory holds `config.json`, `normalisation.json` and
//! `model.safetensors` (the evaluation-mode weights), as
//! [`train`](super::train) writes them, and `checksums.json` with their
//! SHA-256: [`TrainedModel::load`] refuses a run whose files no longer match
//! (a run written before checksums were recorded has none and loads unchecked).
//!
//! ```no_run
//! use burn::tensor::Device;
//! use idx_flow_train::data::HealpixMaps;
//! use idx_flow_train::train::trained::TrainedModel;
//! let model = TrainedModel::load("runs/era5".as_ref(), &Device::default())?;
//! let maps = HealpixMaps::open("new.npy".as_ref(), false)?;      // [T, C, N]
//! let codes = model.encode_maps(&maps)?;                         // [T, C_latent, N_latent], NESTED
//! let back = model.decode_maps(&codes)?;                         // [T, C, N] on the model grid, NESTED
//! let recon = model.reconstruct_maps(&maps)?;                    // [T, C, N] on the input's grid
//! # Ok::<(), idx_flow_train::Error>(())
//! ```

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};

use super::config::TrainConfig;
use crate::data::mask::{UNSEEN, valid_pixels};
use crate::data::{HealpixMaps, Normalisation, Rotation, SphereDataset, SphereSource};
use crate::models::HealpixAutoencoder;
use crate::{Error, Result};
use idx_flow_core::StateDict;
use idx_flow_core::state_dict::load_state_dict;
use idx_flow_healpix::geometry::HealpixGrid;

/// The files of a finished run that its `checksums.json` covers.
pub const RUN_FILES: [&str; 3] = ["model.safetensors", "config.json", "normalisation.json"];

/// A trained autoencoder with the normalisation of its training data.
pub struct TrainedModel {
    run: PathBuf,
    config: TrainConfig,
    norm: Normalisation,
    model: HealpixAutoencoder,
    device: Device,
}

/// The model applied to some samples of a dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    /// Reconstructions `[B, C, N_input]` on the input's grid and in its
    /// ordering, on the data's scale, `UNSEEN` where the input was masked.
    pub reconstructions: Vec<f32>,
    /// Latent codes `[B, C_latent, N_latent]` (NESTED on the latent grid).
    pub codes: Vec<f32>,
    /// Per sample: the squared error summed over its valid values, and their count.
    pub errors: Vec<(f64, usize)>,
}

fn read_file(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        Error::io(
            path,
            std::io::Error::new(
                e.kind(),
                format!(
                    "{e}; a finished run directory holds {what} (train the run to its end first)"
                ),
            ),
        )
    })
}

impl TrainedModel {
    /// Loads the run in `run` onto `device`.
    pub fn load(run: &Path, device: &Device) -> Result<Self> {
        if !run.is_dir() {
            return Err(Error::io(
                run,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such run directory (expected the --out directory of idx-flow train)",
                ),
            ));
        }
        let model_path = run.join("model.safetensors");
        if !model_path.is_file() {
            return Err(Error::format(
                run,
                "a run directory without a model (no model.safetensors): train the run to its end first",
            ));
        }
        if run.join(super::checksums::CHECKSUMS_FILE).exists() {
            super::checksums::verify_checksums(run, &RUN_FILES)?;
        }
        let config = TrainConfig::from_json(&read_file(&run.join("config.json"), "config.json")?)
            .map_err(|e| Error::format(run.join("config.json"), e.to_string()))?;
        let norm_path = run.join("normalisation.json");
        let norm: Normalisation =
            serde_json::from_str(&read_file(&norm_path, "normalisation.json")?)
                .map_err(|e| Error::format(&norm_path, format!("not a normalisation: {e}")))?;
        if norm.mean.len() != config.model.channels || norm.std.len() != config.model.channels {
            return Err(Error::format(
                &norm_path,
                format!(
                    "{} channel statistics for a model of {} channels",
                    norm.mean.len(),
                    config.model.channels
                ),
            ));
        }
        let model = load_state_dict(config.model.init(device)?, &StateDict::load(&model_path)?)?;
        Ok(Self {
            run: run.to_path_buf(),
            config,
            norm,
            model,
            device: device.clone(),
        })
    }

    /// The run directory.
    pub fn run(&self) -> &Path {
        &self.run
    }

    /// The run's config.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The normalisation of the training data.
    pub fn normalisation(&self) -> &Normalisation {
        &self.norm
    }

    /// The model's grid (NESTED).
    pub fn grid(&self) -> Result<HealpixGrid> {
        HealpixGrid::nested(self.config.model.nside)
    }

    /// The latent grid (NESTED).
    pub fn latent_grid(&self) -> Result<HealpixGrid> {
        HealpixGrid::nested(self.config.model.latent_nside())
    }

    /// `source` (maps with the model's channels, on any grid) on the model
    /// grid with the run's normalisation.
    pub fn dataset(&self, source: SphereSource) -> Result<SphereDataset> {
        if !matches!(source, SphereSource::Maps(_)) {
            return Err(Error::arg(
                "data",
                "a trained model applies to HEALPix maps, not to an image",
            ));
        }
        if source.channels() != self.config.model.channels {
            return Err(Error::arg(
                "channels",
                format!(
                    "the model in {} was trained on {} channel(s) but the data have {}",
                    self.run.display(),
                    self.config.model.channels,
                    source.channels()
                ),
            ));
        }
        SphereDataset::with_normalisation(source, self.config.model.nside, self.norm.clone())
    }

    /// Applies the model to samples `[C, N_input]` read from `data`'s source
    /// (`raw`, `B` of them one after another): codes and reconstructions.
    /// `back[q]` is the model pixel under input pixel `q`'s centre
    /// ([`back_lookup`](Self::back_lookup)).
    pub fn apply(
        &self,
        data: &SphereDataset,
        raw: &[f32],
        first: usize,
        back: &[u32],
    ) -> Result<Applied> {
        let SphereSource::Maps(reader) = data.source() else {
            return Err(Error::arg(
                "data",
                "a trained model applies to HEALPix maps",
            ));
        };
        let (c, n_in) = (data.channels(), reader.grid().npix() as usize);
        let per = c * n_in;
        if raw.is_empty() || !raw.len().is_multiple_of(per) || back.len() != n_in {
            return Err(Error::Shape {
                context: "TrainedModel::apply".into(),
                expected: format!("B·{per} values and {n_in} lookups"),
                got: format!("{} values and {} lookups", raw.len(), back.len()),
            });
        }
        let b = raw.len() / per;
        let mut x = Vec::with_capacity(b * data.npix() * c);
        let mut masks = Vec::with_capacity(b);
        for (i, sample) in raw.chunks(per).enumerate() {
            let valid = valid_pixels(sample, c, self.norm.mask_nan, || reader.locate(first + i))?;
            let s = data.resample(sample, valid.as_deref(), &Rotation::IDENTITY)?;
            x.extend(data.normalised(&s));
            masks.push(valid);
        }
        let n = data.npix();
        let x = Tensor::<3>::from_data(TensorData::new(x, [b, n, c]), &self.device);
        let z = self.model.encode(x);
        let [_, n_lat, c_lat] = z.dims();
        let codes_nc: Vec<f32> = z.clone().into_data().iter::<f32>().collect();
        let y = self.decode_to_scale(z);

        let mut codes = vec![0f32; b * c_lat * n_lat];
        for s in 0..b {
            for p in 0..n_lat {
                for k in 0..c_lat {
                    codes[(s * c_lat + k) * n_lat + p] = codes_nc[(s * n_lat + p) * c_lat + k];
                }
            }
        }
        let mut recon = vec![0f32; b * per];
        let mut errors = Vec::with_capacity(b);
        for s in 0..b {
            let (mut sq, mut count) = (0f64, 0usize);
            for k in 0..c {
                for q in 0..n_in {
                    let i = k * n_in + q;
                    let value = y[(s * n + back[q] as usize) * c + k];
                    if masks[s].as_ref().is_some_and(|v| !v[i]) {
                        recon[s * per + i] = UNSEEN as f32;
                    } else {
                        recon[s * per + i] = value;
                        let e = value as f64 - raw[s * per + i] as f64;
                        sq += e * e;
                        count += 1;
                    }
                }
            }
            errors.push((sq, count));
        }
        Ok(Applied {
            reconstructions: recon,
            codes,
            errors,
        })
    }

    /// Latent codes `[B, N_latent, C_latent]` decoded to `[B, N, C]` on the
    /// data's scale (the normalisation undone), flattened.
    fn decode_to_scale(&self, z: Tensor<3>) -> Vec<f32> {
        let c = self.config.model.channels;
        let stat = |v: &[f32]| {
            Tensor::<3>::from_data(TensorData::new(v.to_vec(), [1, 1, c]), &self.device)
        };
        (self.model.decode(z) * stat(&self.norm.std) + stat(&self.norm.mean))
            .into_data()
            .iter::<f32>()
            .collect()
    }

    /// For each pixel of `input`, the model pixel under its centre.
    pub fn back_lookup(&self, input: HealpixGrid) -> Result<Vec<u32>> {
        let grid = self.grid()?;
        input
            .centers()
            .iter()
            .map(|v| grid.vec2pix(*v).map(|p| p as u32))
            .collect()
    }

    fn apply_maps(&self, maps: &HealpixMaps) -> Result<Applied> {
        let data = self.dataset(SphereSource::maps(maps.clone()))?;
        let back = self.back_lookup(maps.grid())?;
        let mut all = Applied {
            reconstructions: vec![],
            codes: vec![],
            errors: vec![],
        };
        let per = maps.channels() * maps.grid().npix() as usize;
        let chunk = self.config.batch.max(1);
        for (i, part) in maps.data().chunks(per * chunk).enumerate() {
            let a = self.apply(&data, part, i * chunk, &back)?;
            all.reconstructions.extend(a.reconstructions);
            all.codes.extend(a.codes);
            all.errors.extend(a.errors);
        }
        Ok(all)
    }

    /// The latent codes of `maps` (`[T, C, N]`, any grid, the model's
    /// channels): `[T, C_latent, N_latent]`, NESTED on the latent grid.
    pub fn encode_maps(&self, maps: &HealpixMaps) -> Result<HealpixMaps> {
        let codes = self.apply_maps(maps)?.codes;
        let g = self.latent_grid()?;
        HealpixMaps::new(
            g.ordering(),
            g.nside(),
            self.config.model.latent_channels,
            codes,
        )
    }

    /// Maps from latent codes `[T, C_latent, N_latent]` (NESTED):
    /// `[T, C, N]` on the model grid (NESTED), on the data's scale.
    pub fn decode_maps(&self, codes: &HealpixMaps) -> Result<HealpixMaps> {
        let lat = self.latent_grid()?;
        let c_lat = self.config.model.latent_channels;
        if codes.grid() != lat || codes.channels() != c_lat {
            return Err(Error::arg(
                "codes",
                format!(
                    "codes on {} with {} channel(s); the model's latent codes are on {lat} with {c_lat}",
                    codes.grid(),
                    codes.channels()
                ),
            ));
        }
        let (t, n_lat) = (codes.samples(), lat.npix() as usize);
        let mut z = vec![0f32; codes.data().len()];
        for s in 0..t {
            for k in 0..c_lat {
                for p in 0..n_lat {
                    z[(s * n_lat + p) * c_lat + k] = codes.data()[(s * c_lat + k) * n_lat + p];
                }
            }
        }
        let c = self.config.model.channels;
        let z = Tensor::<3>::from_data(TensorData::new(z, [t, n_lat, c_lat]), &self.device);
        let y = self.decode_to_scale(z);
        let grid = self.grid()?;
        let n = grid.npix() as usize;
        let mut out = vec![0f32; y.len()];
        for s in 0..t {
            for p in 0..n {
                for k in 0..c {
                    out[(s * c + k) * n + p] = y[(s * n + p) * c + k];
                }
            }
        }
        HealpixMaps::new(grid.ordering(), grid.nside(), c, out)
    }

    /// The reconstructions of `maps` on their own grid and ordering, with
    /// `UNSEEN` where they were masked.
    pub fn reconstruct_maps(&self, maps: &HealpixMaps) -> Result<HealpixMaps> {
        let recon = self.apply_maps(maps)?.reconstructions;
        HealpixMaps::new(maps.grid().ordering(), maps.nside(), maps.channels(), recon)
    }
}
