//! The training loop: AdamW under a cosine schedule on random rotations of the
//! data, checkpoints, resume, interruption, evaluation and the output files.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::time::{Duration, Instant};

use burn::module::Module;
use burn::optim::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::optim::{AdamWConfig, ModuleOptimizer};
use burn::tensor::Device;

use super::checkpoint::{CheckpointState, ResumePoint, latest_intact_checkpoint, write_checkpoint};
use super::config::TrainConfig;
use super::metrics::{Metrics, psnr};
use super::optimizer_state::{load_optimizer_bytes, save_optimizer};
use super::step::{agree_on_step, check_finite, gradients, precise_batch_norm, reconstruct};
use crate::data::loader::{Prefetch, TrainingPlan};
use crate::data::{Rotation, Sample, SphereDataset};
use crate::distributed::{self, Collective};
use crate::models::HealpixAutoencoder;
use crate::{Error, Result};
use idx_flow_core::StateDict;
use idx_flow_core::rng::SplitMix64;
use idx_flow_core::state_dict::{load_state_dict, state_dict};
use idx_flow_healpix::io::SafetensorsFile;
use idx_flow_healpix::io::write_bytes_atomically;

/// Seed of the held-out rotations: fixed, so that runs with different seeds are
/// evaluated on the same rotations.
pub const HELDOUT_SEED: u64 = 0x0004_e1d0_u64;

/// How a run is carried out (not part of its result).
pub struct TrainOptions<'a> {
    /// Output directory (`runs/<name>`).
    pub out: PathBuf,
    /// Continue from the newest checkpoint in `out/checkpoints`.
    pub resume: bool,
    /// The device (its backend runs the model; autodiff is added here).
    pub device: Device,
    /// The backend's name for `metrics.json`.
    pub backend: String,
    /// Checked before every step: when set, a checkpoint is written and the run stops.
    pub stop: Option<&'a AtomicBool>,
    /// Batches read ahead by the prefetch thread.
    pub prefetch: usize,
    /// How long a step waits for its batch before the run fails with
    /// [`Error::Timeout`] (a hung file system must not hang training silently).
    pub read_timeout: Duration,
    /// Where warnings go (a damaged checkpoint passed over on `--resume`);
    /// by default standard error.
    pub warn: &'a (dyn Fn(&str) + Sync),
    /// The ranks of a data-parallel run this process is one of
    /// ([`crate::distributed`]); `None` (the default) trains alone.
    pub collective: Option<&'a dyn Collective>,
}

fn warn_on_stderr(message: &str) {
    eprintln!("warning: {message}");
}

impl TrainOptions<'_> {
    /// Options writing into `out` on the default device (burn's flex CPU
    /// backend), not resuming, 4 batches read ahead, a 120 s read limit,
    /// warnings on standard error.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        Self {
            out: out.into(),
            resume: false,
            device: Device::default(),
            backend: "flex (CPU)".into(),
            stop: None,
            prefetch: 4,
            read_timeout: Duration::from_secs(120),
            warn: &warn_on_stderr,
            collective: None,
        }
    }
}

/// One step's report to the caller (progress bars).
#[derive(Clone, Debug)]
pub struct Progress {
    /// Steps done.
    pub step: usize,
    /// Steps in the run.
    pub steps: usize,
    /// This step's loss (MSE on the data's scale).
    pub loss: f64,
    /// This step's learning rate.
    pub lr: f64,
    /// Training samples per second in this session.
    pub samples_per_s: f64,
}

/// How a run ended.
#[derive(Clone, Debug)]
pub enum TrainOutcome {
    /// All steps done; outputs written.
    Finished(Box<Metrics>),
    /// Stopped by [`TrainOptions::stop`] after `step` steps; a checkpoint was written.
    Interrupted {
        /// Steps done.
        step: usize,
        /// The checkpoint directory.
        checkpoint: PathBuf,
    },
    /// A rank other than 0 of a data-parallel run did its part; rank 0
    /// wrote the checkpoints and outputs.
    Replica {
        /// This process's rank.
        rank: usize,
        /// Steps done.
        step: usize,
        /// Whether the run was interrupted rather than finished.
        interrupted: bool,
    },
}

/// Held-out rotation `j` of a single image or map, and which of `maps`
/// training maps it shows (the identity of the first for `j = 0`).
pub fn heldout_rotation(j: usize, maps: usize) -> (usize, Rotation) {
    if j == 0 {
        return (0, Rotation::IDENTITY);
    }
    let mut rng = SplitMix64::for_stream(HELDOUT_SEED, u64::MAX, j as u64);
    let t = rng.below(maps as u64) as usize;
    (t, Rotation::random(&mut rng))
}

fn optimizer(config: &TrainConfig) -> ModuleOptimizer {
    AdamWConfig::new()
        .with_weight_decay(config.weight_decay as f32)
        .init()
}

fn lr_schedule(
    config: &TrainConfig,
) -> Result<burn::optim::lr_scheduler::module_lr_scheduler::ModuleLrScheduler> {
    CosineAnnealingLrSchedulerConfig::new(config.learning_rate, config.steps)
        .with_min_lr(config.min_learning_rate)
        .init()
        .map_err(|e| Error::arg("learning_rate", e))
}

/// The held-out samples of a run, and what they are (for `metrics.json`).
fn heldout_samples(
    config: &TrainConfig,
    data: &SphereDataset,
    rotate: bool,
) -> Result<(Vec<Sample>, String)> {
    let evenly = |from: &[usize]| -> Vec<usize> {
        let k = if config.eval_samples == 0 {
            from.len()
        } else {
            config.eval_samples.min(from.len())
        };
        (0..k).map(|j| from[j * from.len() / k]).collect()
    };
    let read = |ts: &[usize]| -> Result<Vec<Sample>> {
        ts.iter()
            .map(|&t| data.render(t, &Rotation::IDENTITY))
            .collect()
    };
    let val = data.val_indices();
    let train = data.train_indices();
    if !val.is_empty() {
        let ts = evenly(val);
        let what = format!("{} of {} validation maps", ts.len(), val.len());
        return Ok((read(&ts)?, what));
    }
    if rotate {
        let k = config.eval_samples.max(1);
        let samples = (0..k)
            .map(|j| {
                let (i, r) = heldout_rotation(j, train.len());
                data.render(train[i], &r)
            })
            .collect::<Result<_>>()?;
        return Ok((samples, format!("{k} held-out rotations")));
    }
    let ts = evenly(train);
    let what = format!("{} training maps (no validation split)", ts.len());
    Ok((read(&ts)?, what))
}

/// Trains `config` on `data`, writing `normalisation.json`, checkpoints and,
/// at the end, `metrics.json` (with the classical baselines), the pictures
/// (with `rate_distortion.png`) and the final model into
/// `options.out`. `progress` is called after every step. The samples of the
/// coming steps are read by a background thread ([`Prefetch`]).
pub fn train(
    config: &TrainConfig,
    data: &SphereDataset,
    options: &TrainOptions<'_>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<TrainOutcome> {
    let started = Instant::now();
    config.validate()?;
    if data.channels() != config.model.channels {
        return Err(Error::arg(
            "channels",
            format!(
                "the data have {} channels but the model config expects {}; set model.channels to {}",
                data.channels(),
                config.model.channels,
                data.channels()
            ),
        ));
    }
    if data.grid().nside() != config.model.nside {
        return Err(Error::arg(
            "nside",
            format!(
                "the data are resampled on nside {} but the model expects nside {}",
                data.grid().nside(),
                config.model.nside
            ),
        ));
    }
    // The dataset's split and masking must be the config's (its statistics
    // come from the training maps, and `apply` masks as training did).
    let wanted = config.data_options();
    let (train_maps, val_maps) = wanted.split(data.source().samples())?;
    if data.options().mask_nan != wanted.mask_nan
        || data.train_indices() != train_maps
        || data.val_indices() != val_maps
    {
        return Err(Error::arg(
            "data",
            format!(
                "the dataset was built with {:?} but the config asks for {wanted:?}; build it with TrainConfig::data_options",
                data.options()
            ),
        ));
    }
    // A data-parallel run: `ranks` processes of `workers` workers each, every
    // rank on its contiguous share of each batch; only rank 0 writes.
    let world = options.collective.filter(|w| w.size() > 1);
    let (rank, ranks) = world.map_or((0, 1), |w| (w.rank(), w.size()));
    let writes = rank == 0;
    let workers = match world {
        Some(_) => config.workers.unwrap_or(1),
        None => config.workers(),
    };
    if world.is_some() && !config.batch.is_multiple_of(ranks * workers) {
        return Err(Error::arg(
            "batch",
            format!(
                "a batch of {} cannot be split evenly over {ranks} ranks of {workers} workers; use a multiple of {}",
                config.batch,
                ranks * workers
            ),
        ));
    }
    let per_rank = config.batch / ranks;
    if world.is_some() && per_rank < 2 * workers {
        return Err(Error::arg(
            "batch",
            format!(
                "a batch of {} over {ranks} ranks of {workers} workers gives each worker {} sample(s), \
                 and batch norm needs at least 2; use a batch of at least {}",
                config.batch,
                per_rank / workers,
                2 * ranks * workers
            ),
        ));
    }
    let out = &options.out;
    let ckpt_root = out.join("checkpoints");
    let norm_json = serde_json::to_vec_pretty(data.normalisation())
        .map_err(|e| Error::format(out.join("normalisation.json"), e.to_string()))?;
    if let Some(w) = world {
        let identity = format!(
            "{}\n{}\n{}",
            config.identity_json(),
            data.source().describe(),
            String::from_utf8_lossy(&norm_json)
        );
        distributed::check_same_run(w, &identity)?;
    }
    if writes {
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    }
    if writes && !options.resume && ckpt_root.exists() {
        // A fresh run: checkpoints of an earlier run in this directory would mix with ours.
        std::fs::remove_dir_all(&ckpt_root).map_err(|e| Error::io(&ckpt_root, e))?;
    }
    // The checksums of an earlier finished run here would not match the files
    // this run rewrites; they are written again when it finishes.
    let stale = out.join(super::checksums::CHECKSUMS_FILE);
    if writes && stale.exists() {
        std::fs::remove_file(&stale).map_err(|e| Error::io(&stale, e))?;
    }
    if writes {
        write_bytes_atomically(&out.join("normalisation.json"), &norm_json)?;
    }
    let device = options.device.clone().autodiff();
    let rotate = config.rotates(data.source().samples());

    // The weights come from a generator of our own, seeded by the run's seed:
    // the backend's generator is process-wide, so anything else drawing from
    // it (another thread, a test) would change them. The backend is seeded too,
    // for any other draw.
    options.device.seed(config.seed);
    // Running statistics are frozen while training (workers on clones would
    // race to update them) and set exactly after it, see `precise_batch_norm`.
    let mut model = idx_flow_core::init::with_seed(config.seed, || config.model.init(&device))?
        .with_batch_norm_momentum(0.0);
    if let Some(w) = world {
        model = distributed::broadcast_parameters(model, w)?;
    }
    let mut optim = optimizer(config);
    let mut schedule = lr_schedule(config)?;
    let mut losses: Vec<f64> = Vec::with_capacity(config.steps);
    let mut train_seconds = 0.0;

    if options.resume {
        let point = if writes {
            let intact = latest_intact_checkpoint(&ckpt_root)?;
            for (dir, why) in &intact.damaged {
                (options.warn)(&format!(
                    "checkpoint {} is damaged and passed over ({why}); resuming from step {} instead",
                    dir.display(),
                    intact.state.step
                ));
            }
            Some(ResumePoint::read(intact)?)
        } else {
            None
        };
        let point = match world {
            // A single process is rank 0 and has read it.
            None => point.ok_or_else(|| {
                Error::Distributed("the checkpoint to resume from was not read".into())
            })?,
            Some(w) => {
                let bytes = point.map(|p| p.to_bytes()).transpose()?;
                let bytes =
                    distributed::broadcast_bytes_from_root(w, bytes, "rank 0's checkpoint")?;
                ResumePoint::from_bytes(&bytes)?
            }
        };
        let (files, state) = (point.files, point.state);
        if state.config != config.identity_json() {
            return Err(Error::format(
                files.state(),
                "the checkpoint was written by a run with another config (model, data, steps, batch, seed or rates); \
                 resume with the same options (checkpoint_every may differ)",
            ));
        }
        let weights = SafetensorsFile::from_bytes(files.model(), point.model)?;
        model = load_state_dict(
            model.with_fresh_running_stats(),
            &StateDict::from_safetensors(&weights, "")?,
        )?;
        optim = load_optimizer_bytes(optim, point.optimizer, &files.optimizer(), &model)?;
        for _ in 0..state.step {
            schedule.step();
        }
        losses = state.losses;
        train_seconds = state.train_seconds;
    }

    let checkpoint =
        |model: &HealpixAutoencoder, optim: &ModuleOptimizer, losses: &[f64], secs: f64| {
            let state = CheckpointState {
                step: losses.len(),
                losses: losses.to_vec(),
                train_seconds: secs,
                config: config.identity_json(),
            };
            write_checkpoint(&ckpt_root, &state, |f| {
                state_dict(model)?.save(f.model())?;
                save_optimizer(optim, &f.optimizer())
            })
        };

    let session = Instant::now();
    let first_step = losses.len();
    let render = |items: &[(usize, Rotation)]| -> Result<Vec<Sample>> {
        items.iter().map(|(t, r)| data.render(*t, r)).collect()
    };
    let per_sample = data.npix() * data.channels();
    let mut exchange_seconds = 0.0;
    // The loop owns the model (each step consumes it) and hands it back.
    let (model, interrupted) = std::thread::scope(|scope| -> Result<_> {
        let mut model = model;
        let mut plan = TrainingPlan::new(config.seed, config.batch, rotate, data.train_indices());
        let share_of_rank = rank * per_rank..(rank + 1) * per_rank;
        let batches = Prefetch::start(
            scope,
            first_step..config.steps,
            options.prefetch,
            options.read_timeout,
            move |step| render(&plan.items(step)[share_of_rank.clone()]),
        );
        while losses.len() < config.steps {
            let step = losses.len();
            let samples = batches.next(step)?;
            let stop = options.stop.is_some_and(|s| s.load(AtomicOrdering::SeqCst));
            let exchange = Instant::now();
            let (stop, share) = agree_on_step(world, stop, &samples, per_sample, step)?;
            if world.is_some() {
                exchange_seconds += exchange.elapsed().as_secs_f64();
            }
            if stop {
                train_seconds += session.elapsed().as_secs_f64();
                let outcome = if writes {
                    TrainOutcome::Interrupted {
                        step,
                        checkpoint: checkpoint(&model, &optim, &losses, train_seconds)?,
                    }
                } else {
                    TrainOutcome::Replica {
                        rank,
                        step,
                        interrupted: true,
                    }
                };
                return Ok((model, Some(outcome)));
            }
            let (grads, loss_value) = gradients(&model, data, &samples, workers, share, &device)?;
            let lr = schedule.step();
            let lr_value = lr.base();
            let loss_value = match world {
                None => {
                    check_finite(loss_value, step)?;
                    model = optim.step_multi(lr, model, grads);
                    loss_value
                }
                Some(w) => {
                    let what = format!("step {}'s", step + 1);
                    let exchange = Instant::now();
                    let (grads, loss) =
                        distributed::all_reduce_gradients(&model, grads, loss_value, w, &what)?;
                    exchange_seconds += exchange.elapsed().as_secs_f64();
                    check_finite(loss, step)?;
                    model = optim.step(lr, model, grads);
                    loss
                }
            };
            losses.push(loss_value);

            let done = losses.len();
            let elapsed = session.elapsed().as_secs_f64();
            progress(&Progress {
                step: done,
                steps: config.steps,
                loss: loss_value,
                lr: lr_value,
                samples_per_s: ((done - first_step) * config.batch) as f64 / elapsed.max(1e-9),
            });
            if writes
                && config.checkpoint_every > 0
                && done.is_multiple_of(config.checkpoint_every)
                && done < config.steps
            {
                let secs = train_seconds + session.elapsed().as_secs_f64();
                checkpoint(&model, &optim, &losses, secs)?;
            }
        }
        Ok((model, None))
    })?;
    if let Some(outcome) = interrupted {
        return Ok(outcome);
    }
    if !writes {
        return Ok(TrainOutcome::Replica {
            rank,
            step: losses.len(),
            interrupted: false,
        });
    }
    train_seconds += session.elapsed().as_secs_f64();
    checkpoint(&model, &optim, &losses, train_seconds)?;

    // Evaluation and outputs. The batch-norm statistics come from batches of
    // the training distribution past the last step, never trained on, each
    // one worker's shard (of all ranks' workers) as in training.
    let mut plan = TrainingPlan::new(config.seed, config.batch, rotate, data.train_indices());
    let per = config.batch.div_ceil(ranks * workers);
    let bn_batches = (0..config.bn_batches)
        .map(|j| render(&plan.items(config.steps + j)[..per]))
        .collect::<Result<Vec<_>>>()?;
    let model = precise_batch_norm(model, data, &bn_batches, &device);
    drop(bn_batches);
    let eval_model = model.valid();
    let base = options.device.clone();
    let (heldout, heldout_what) = heldout_samples(config, data, rotate)?;
    let (heldout_mse, recon) = reconstruct(&eval_model, data, &heldout, config.batch, &base);
    let tail = (losses.len() / 10).max(1);
    let train_mse = losses[losses.len() - tail..].iter().sum::<f64>() / tail as f64;
    let peak = data.peak();
    let latent_values = config.model.latent_shape().iter().product();
    let (baselines, baseline_curves) = super::baselines::evaluate_around(
        latent_values,
        data.grid(),
        data.channels(),
        &heldout,
        peak,
    )?;
    state_dict(&eval_model)?.save(out.join("model.safetensors"))?;
    super::figures::write_run_figures(out, data, &heldout[0], &recon[0], &losses)?;

    let metrics = Metrics {
        data: config.data.clone(),
        source: data.source().describe(),
        backend: options.backend.clone(),
        steps: config.steps,
        batch: config.batch,
        seed: config.seed,
        nside: config.model.nside,
        parameters: eval_model.num_params(),
        world_size: ranks,
        exchange_seconds,
        compression_ratio: config.model.compression_ratio(),
        latent_shape: config.model.latent_shape(),
        train_maps: data.train_indices().len(),
        val_maps: data.val_indices().len(),
        rotated: rotate,
        train_mse,
        train_psnr_db: psnr(train_mse, peak),
        heldout: heldout_what,
        heldout_mse,
        heldout_psnr_db: psnr(heldout_mse, peak),
        heldout_samples: heldout.len(),
        psnr_peak: peak,
        first_loss: losses[0],
        last_loss: *losses.last().unwrap_or(&f64::NAN),
        train_seconds,
        wall_seconds: started.elapsed().as_secs_f64(),
        samples_per_s: (config.steps * config.batch) as f64 / train_seconds.max(1e-9),
        baselines,
        baseline_curves,
    };
    super::figures::write_rate_distortion(out, &metrics)?;
    let json = serde_json::to_vec_pretty(&metrics)
        .map_err(|e| Error::format(out.join("metrics.json"), e.to_string()))?;
    write_bytes_atomically(&out.join("metrics.json"), &json)?;
    write_bytes_atomically(
        &out.join("config.json"),
        serde_json::to_string_pretty(config)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    // Last, so that a run directory with checksums is complete.
    super::checksums::write_checksums(out, &super::trained::RUN_FILES)?;
    Ok(TrainOutcome::Finished(Box::new(metrics)))
}
