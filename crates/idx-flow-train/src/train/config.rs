//! The training configuration: everything a run depends on, as one burn
//! [`Config`] that reads and writes JSON (`idx-flow train --config FILE`).

use burn::config::Config;

use crate::models::AutoencoderConfig;
use crate::{Error, Result};

/// A training run. Defaults are the README's main job: the autoencoder on the
/// bundled Blue Marble at nside 64, 3600 steps of 2 samples, measured at
/// 2 min 41 s on 2 CPU cores (held-out PSNR 24.46 dB, 1.12 dB above the
/// spherical-harmonic truncation to the latent's size; docs/performance.md
/// gives the machines, some of them slower).
///
/// The configuration before 2026-12 (21.80 dB, 1.54 dB below the truncation)
/// is `--widths 16,32,64 --latent 8 --graph children --steps 1000 --batch 4`.
///
/// ```
/// use idx_flow_train::train::TrainConfig;
/// let config = TrainConfig::new();
/// let json = serde_json::to_string(&config).unwrap();
/// let back: TrainConfig = serde_json::from_str(&json).unwrap();
/// assert_eq!(back.steps, config.steps);
/// ```
#[derive(Config, Debug)]
pub struct TrainConfig {
    /// The model (its `nside` is the training grid's).
    #[config(default = "AutoencoderConfig::new()")]
    pub model: AutoencoderConfig,
    /// `bluemarble`, `etopo1`, or a path (`.npy`, `.fits`, `.png`, `.jpg`). Default: bluemarble.
    #[config(default = "String::from(\"bluemarble\")")]
    pub data: String,
    /// `.npy` maps are in NESTED order (RING otherwise). Default: false.
    #[config(default = false)]
    pub nested: bool,
    /// Optimiser steps. Default: 3600.
    #[config(default = 3600)]
    pub steps: usize,
    /// Samples (random rotations) per step. Default: 2 (more, smaller steps
    /// reach a higher PSNR in the same time on 2 CPU cores: 2700 steps of 2
    /// gave 24.33 dB against 24.01 dB for 1350 steps of 4).
    #[config(default = 2)]
    pub batch: usize,
    /// Seed of the model initialisation and of every training rotation. Default: 0.
    #[config(default = 0)]
    pub seed: u64,
    /// Peak learning rate of the cosine schedule (AdamW). Default: 3e-3.
    #[config(default = 3e-3)]
    pub learning_rate: f64,
    /// Final learning rate of the cosine schedule. Default: 1e-4.
    #[config(default = 1e-4)]
    pub min_learning_rate: f64,
    /// AdamW's decoupled weight decay. Default: 1e-4.
    #[config(default = 1e-4)]
    pub weight_decay: f64,
    /// Write a checkpoint every this many steps (0: only at the end). Default: 300.
    #[config(default = 300)]
    pub checkpoint_every: usize,
    /// Threads that share each step: the batch is split into this many shards
    /// whose gradients are summed (each shard normalises with its own batch
    /// statistics, as data-parallel training on several devices does). The
    /// CPU backend runs a step's operations mostly on one core, so 2 workers
    /// use both cores of a 2-core machine; 1 on a GPU. Default: none, chosen
    /// from the batch (2 when it has at least 4 samples, otherwise 1: batch
    /// norm needs 2 samples per worker).
    #[config(default = "None")]
    pub workers: Option<usize>,
    /// Turn every training sample by a uniformly random rotation. Default:
    /// none, which rotates a single image or map (the only way to get more
    /// than one sample from it) and not a dataset of several maps, whose
    /// orientation usually matters.
    #[config(default = "None")]
    pub rotate: Option<bool>,
    /// The last `⌈F·T⌉` time indices of a dataset of `T > 1` maps are held out
    /// for validation, never trained on. Default: 0.1.
    #[config(default = 0.1)]
    pub val_fraction: f64,
    /// Time-index ranges `[start, end)` held out for validation instead of
    /// the last `val_fraction`. Default: none.
    #[config(default = "Vec::new()")]
    pub val_ranges: Vec<[usize; 2]>,
    /// NaN marks a masked pixel, as healpy's `UNSEEN` always does (otherwise a
    /// NaN is an error naming its file and sample). Default: false.
    #[config(default = false)]
    pub mask_nan: bool,
    /// Batches of training rotations that set the batch-norm running
    /// statistics after training (their exact averages, "precise BN"). Default: 8.
    #[config(default = 8)]
    pub bn_batches: usize,
    /// Held-out samples evaluated: validation maps (evenly spaced over the
    /// split), or held-out rotations of a single image or map (the first is
    /// the identity); 0 evaluates every validation map. Default: 8.
    #[config(default = 8)]
    pub eval_samples: usize,
}

impl TrainConfig {
    /// Checks the run's sizes and rates.
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        if self.steps == 0 {
            return Err(Error::arg("steps", "got 0, expected at least 1"));
        }
        if self.batch < 2 {
            return Err(Error::arg(
                "batch",
                format!(
                    "got {}, expected at least 2 (batch norm needs more than one sample)",
                    self.batch
                ),
            ));
        }
        let workers = self.workers();
        if workers == 0 || self.batch < 2 * workers {
            return Err(Error::arg(
                "workers",
                format!(
                    "got {workers} workers for batch {}, expected at least 1 worker and 2 samples per worker (batch norm needs more than one sample)",
                    self.batch
                ),
            ));
        }
        if !(0.0..1.0).contains(&self.val_fraction) {
            return Err(Error::arg(
                "val_fraction",
                format!("got {}, expected a number in [0, 1)", self.val_fraction),
            ));
        }
        if self.bn_batches == 0 {
            return Err(Error::arg("bn_batches", "got 0, expected at least 1"));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            return Err(Error::arg(
                "learning_rate",
                format!("got {}, expected a number in (0, 1]", self.learning_rate),
            ));
        }
        if !(self.min_learning_rate >= 0.0 && self.min_learning_rate <= self.learning_rate) {
            return Err(Error::arg(
                "min_learning_rate",
                format!(
                    "got {}, expected a number in [0, learning_rate]",
                    self.min_learning_rate
                ),
            ));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(Error::arg("weight_decay", "expected a finite number ≥ 0"));
        }
        Ok(())
    }

    /// Reads a JSON config; fields left out take their defaults, unknown fields are errors.
    pub fn from_json_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&text).map_err(|e| match e {
            Error::InvalidArgument { message, .. } => Error::format(path, message),
            other => other,
        })
    }

    /// [`from_json_file`](Self::from_json_file) on a string.
    ///
    /// ```
    /// use idx_flow_train::train::TrainConfig;
    /// let c = TrainConfig::from_json(r#"{"steps": 10, "model": {"nside": 32}}"#)?;
    /// assert_eq!((c.steps, c.model.nside, c.batch), (10, 32, TrainConfig::new().batch));
    /// assert!(TrainConfig::from_json(r#"{"stpes": 10}"#).is_err());
    /// # Ok::<(), idx_flow_train::Error>(())
    /// ```
    pub fn from_json(text: &str) -> Result<Self> {
        let user: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::arg("config", format!("not JSON: {e}")))?;
        let mut merged =
            serde_json::to_value(Self::new()).map_err(|e| Error::arg("config", e.to_string()))?;
        merge(&mut merged, user, "")?;
        serde_json::from_value(merged)
            .map_err(|e| Error::arg("config", format!("not a training config: {e}")))
    }

    /// The workers of a step: [`workers`](Self::workers) if set, otherwise 2
    /// for a batch of at least 4 samples and 1 below.
    pub fn workers(&self) -> usize {
        self.workers.unwrap_or((self.batch / 2).clamp(1, 2))
    }

    /// Whether training samples are rotated, for a source of `samples` maps.
    pub fn rotates(&self, samples: usize) -> bool {
        self.rotate.unwrap_or(samples == 1)
    }

    /// The split and masking of the data, as the dataset is built with.
    pub fn data_options(&self) -> crate::data::DataOptions {
        crate::data::DataOptions {
            mask_nan: self.mask_nan,
            val_fraction: self.val_fraction,
            val_ranges: self.val_ranges.clone(),
        }
    }

    /// The fields that must not change when a run is resumed (all but `checkpoint_every`).
    pub(crate) fn identity_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("checkpoint_every");
        }
        v
    }
}

/// Writes `user`'s fields over `base`'s (recursively for objects); a field
/// that `base` lacks is an error naming the fields it has.
fn merge(base: &mut serde_json::Value, user: serde_json::Value, at: &str) -> Result<()> {
    match (base, user) {
        (serde_json::Value::Object(b), serde_json::Value::Object(u)) => {
            for (k, v) in u {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v, &path)?,
                    None => {
                        let known: Vec<&str> = b.keys().map(String::as_str).collect();
                        return Err(Error::arg(
                            "config",
                            format!(
                                "unknown field {path:?}, expected one of {}",
                                known.join(", ")
                            ),
                        ));
                    }
                }
            }
            Ok(())
        }
        (slot, v) => {
            *slot = v;
            Ok(())
        }
    }
}
