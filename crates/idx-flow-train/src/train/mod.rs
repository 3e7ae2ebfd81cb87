//! Training the [`HealpixAutoencoder`](crate::models::HealpixAutoencoder) on
//! random rotations of a [`SphereDataset`](crate::data::SphereDataset).
//!
//! - [`config`]: [`TrainConfig`], the whole run as one JSON-serialisable burn config.
//! - [`run`]: [`train`], the loop (AdamW, cosine schedule), evaluation and output files.
//! - [`checkpoint`]: atomic checkpoints and `--resume`.
//! - [`device`]: backends by name.
//! - [`figures`]: the run's pictures (input, reconstruction, error, loss).
//! - [`metrics`]: the figures written to `metrics.json`.
//!
//! # Reproducibility
//!
//! The model is initialised from the device seeded with `seed`; the rotation of
//! sample `i` of step `s` is a pure function of `(seed, s, i)`
//! ([`training_rotation`]); checkpoints hold the weights, batch-norm
//! statistics, AdamW moments and the step, and the cosine schedule is advanced
//! to that step. A run resumed from a checkpoint therefore continues exactly as
//! the uninterrupted run (the same weights, bit for bit, on the same machine
//! and backend).
//!
//! ```no_run
//! use burn::tensor::Device;
//! use idx_flow_train::data::{SphereDataset, SphereSource};
//! use idx_flow_train::train::{TrainConfig, TrainOptions, TrainOutcome, train};
//!
//! let config = TrainConfig::new().with_steps(100);
//! let data = SphereDataset::new(SphereSource::open(&config.data, false)?, config.model.nside)?;
//! let options = TrainOptions {
//!     out: "runs/demo".into(),
//!     resume: false,
//!     device: Device::default(),
//!     backend: "flex (CPU)".into(),
//!     stop: None,
//! };
//! if let TrainOutcome::Finished(m) = train(&config, &data, &options, &mut |_| {})? {
//!     println!("held-out PSNR {:.2} dB", m.heldout_psnr_db);
//! }
//! # Ok::<(), idx_flow_train::Error>(())
//! ```

pub mod checkpoint;
pub mod config;
pub mod device;
pub mod figures;
pub mod metrics;
pub mod run;

pub use config::TrainConfig;
pub use metrics::{Metrics, psnr};
pub use run::{
    HELDOUT_SEED, Progress, TrainOptions, TrainOutcome, heldout_rotation, reconstruct, train,
    training_rotation,
};
