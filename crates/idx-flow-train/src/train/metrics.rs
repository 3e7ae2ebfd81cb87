//! `metrics.json`: what a run reached and what it cost.

use serde::{Deserialize, Serialize};

use super::baselines::Baseline;

/// The figures of a finished run. Errors are on the data's scale (images: `[0, 1]`);
/// `PSNR = 10·log10(psnr_peak² / MSE)`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Metrics {
    /// The data (`bluemarble`, a path, ...).
    pub data: String,
    /// What the data are (image size or map shape).
    pub source: String,
    /// The backend the run used (`flex (CPU)`, `wgpu`, `cuda`).
    pub backend: String,
    /// Optimiser steps.
    pub steps: usize,
    /// Samples per step.
    pub batch: usize,
    /// The seed.
    pub seed: u64,
    /// Model grid nside (NESTED).
    pub nside: u32,
    /// Trainable parameters.
    pub parameters: usize,
    /// Processes of the data-parallel run (1 for a single process; runs
    /// written before it existed read as 1).
    #[serde(default = "one")]
    pub world_size: usize,
    /// Seconds rank 0 spent in exchanges with the other ranks during
    /// training (waiting for them included; 0 for a single process).
    #[serde(default)]
    pub exchange_seconds: f64,
    /// Values in / values in the latent.
    pub compression_ratio: f64,
    /// Latent shape per sample, `[N_latent, channels]`.
    pub latent_shape: [usize; 2],
    /// Maps trained on (time indices outside the validation split).
    pub train_maps: usize,
    /// Maps held out for validation.
    pub val_maps: usize,
    /// Training samples were turned by random rotations.
    pub rotated: bool,
    /// Mean training loss (MSE, training-mode batch norm) over the last tenth of the steps.
    pub train_mse: f64,
    /// `train_mse` as PSNR in dB.
    pub train_psnr_db: f64,
    /// What the held-out samples are (validation maps, held-out rotations).
    pub heldout: String,
    /// MSE of the held-out samples over their valid pixels (evaluation mode).
    pub heldout_mse: f64,
    /// `heldout_mse` as PSNR in dB.
    pub heldout_psnr_db: f64,
    /// Held-out samples evaluated.
    pub heldout_samples: usize,
    /// Peak value of the PSNR (1 for images).
    pub psnr_peak: f64,
    /// Training loss of the first step.
    pub first_loss: f64,
    /// Training loss of the last step.
    pub last_loss: f64,
    /// Seconds spent in training steps (all sessions of a resumed run).
    pub train_seconds: f64,
    /// Seconds of this process from start to the written outputs.
    pub wall_seconds: f64,
    /// Training samples per second (`steps · batch / train_seconds`).
    pub samples_per_s: f64,
    /// The classical compressors at the latent's size on the same held-out
    /// samples: the spherical-harmonic truncation keeping at most as many
    /// values, and the pooled grid nearest in size.
    #[serde(default)]
    pub baselines: Vec<Baseline>,
    /// Both compressors over a range of sizes (the rate–distortion picture's curves).
    #[serde(default)]
    pub baseline_curves: Vec<Baseline>,
}

/// `10·log10(peak² / mse)`.
pub fn psnr(mse: f64, peak: f64) -> f64 {
    10.0 * (peak * peak / mse).log10()
}

fn one() -> usize {
    1
}
