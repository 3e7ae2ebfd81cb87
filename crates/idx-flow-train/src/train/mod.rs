//! Training the [`HealpixAutoencoder`](crate::models::HealpixAutoencoder) on a
//! [`SphereDataset`](crate::data::SphereDataset) (a dataset of maps, or random
//! rotations of one image), and applying a trained model to new maps.
//!
//! - [`config`]: [`TrainConfig`], the whole run as one JSON-serialisable burn config.
//! - [`run`]: [`train`], the loop (AdamW, cosine schedule), evaluation and output files.
//! - [`baselines`]: the classical compressors every run is measured against.
//! - [`checkpoint`]: atomic checkpoints and `--resume`.
//! - [`device`]: backends by name.
//! - [`figures`]: the run's pictures (input, reconstruction, error, loss).
//! - [`metrics`]: the figures written to `metrics.json`.
//! - [`step`]: batches, the masked loss, gradients over worker threads.
//! - [`trained`]: a finished run loaded back: `encode`, `decode`, `reconstruct`.
//! - [`apply`]: a trained model over a dataset, streamed to `.npy` / FITS files.
//!
//! # Reproducibility
//!
//! The model is initialised from the device seeded with `seed`; the map and
//! rotation of sample `i` of step `s` are a pure function of `(seed, s, i)`
//! ([`TrainingPlan`](crate::data::loader::TrainingPlan)); checkpoints hold the weights, batch-norm
//! statistics, AdamW moments and the step, and the cosine schedule is advanced
//! to that step. A run resumed from a checkpoint therefore continues exactly as
//! the uninterrupted run (the same weights, bit for bit, on the same machine
//! and backend).
//!
//! ```no_run
//! use idx_flow_train::data::{SphereDataset, SphereSource};
//! use idx_flow_train::train::{TrainConfig, TrainOptions, TrainOutcome, train};
//!
//! let config = TrainConfig::new().with_steps(100);
//! let source = SphereSource::open(&config.data, config.nested)?;
//! let data = SphereDataset::with_options(source, config.model.nside, &config.data_options(), &|_, _| {})?;
//! let options = TrainOptions::new("runs/demo");
//! if let TrainOutcome::Finished(m) = train(&config, &data, &options, &mut |_| {})? {
//!     println!("held-out PSNR {:.2} dB", m.heldout_psnr_db);
//! }
//! # Ok::<(), idx_flow_train::Error>(())
//! ```

pub mod apply;
pub mod baselines;
pub mod checkpoint;
pub mod checksums;
pub mod config;
pub mod device;
pub mod figures;
pub mod metrics;
pub mod optimizer_state;
pub mod run;
pub mod step;
pub mod trained;

pub use baselines::{Baseline, BaselineMethod};
pub use config::TrainConfig;
pub use metrics::{Metrics, psnr};
pub use run::{HELDOUT_SEED, Progress, TrainOptions, TrainOutcome, heldout_rotation, train};
pub use step::reconstruct;
pub use trained::TrainedModel;
