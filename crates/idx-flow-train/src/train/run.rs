//! The training loop: AdamW under a cosine schedule on random rotations of the
//! data, checkpoints, resume, interruption, evaluation and the output files.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::time::Instant;

use burn::module::{Module, ModuleMapper, Param};
use burn::optim::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer, MultiGradientsParams};
use burn::tensor::{Device, Tensor, TensorData};

use super::checkpoint::{CheckpointState, latest_checkpoint, write_checkpoint};
use super::config::TrainConfig;
use super::metrics::{Metrics, psnr};
use crate::data::{Rotation, SphereDataset};
use crate::models::HealpixAutoencoder;
use crate::{Error, Result};
use idx_flow_core::StateDict;
use idx_flow_core::rng::SplitMix64;
use idx_flow_core::state_dict::{load_state_dict, state_dict};
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
}

/// The rotation of sample `index` of step `step` (and which of `T` maps it shows).
pub fn training_rotation(seed: u64, step: usize, index: usize, maps: usize) -> (usize, Rotation) {
    let mut rng = SplitMix64::for_stream(seed, step as u64, index as u64);
    let t = rng.below(maps as u64) as usize;
    (t, Rotation::random(&mut rng))
}

/// Held-out rotation `j` (the identity for `j = 0`).
pub fn heldout_rotation(j: usize, maps: usize) -> (usize, Rotation) {
    if j == 0 {
        return (0, Rotation::IDENTITY);
    }
    let mut rng = SplitMix64::for_stream(HELDOUT_SEED, u64::MAX, j as u64);
    let t = rng.below(maps as u64) as usize;
    (t, Rotation::random(&mut rng))
}

/// Samples `[B, N, C]`: the normalised input and the target on the data's scale.
fn batch(
    data: &SphereDataset,
    items: &[(usize, Rotation)],
    device: &Device,
) -> (Tensor<3>, Tensor<3>) {
    let (n, c) = (data.npix(), data.channels());
    let mut raw = Vec::with_capacity(items.len() * n * c);
    for (t, r) in items {
        raw.extend(data.render(*t, r));
    }
    let mut norm = raw.clone();
    data.normalise(&mut norm);
    let shape = [items.len(), n, c];
    (
        Tensor::from_data(TensorData::new(norm, shape), device),
        Tensor::from_data(TensorData::new(raw, shape), device),
    )
}

/// Channel statistics as `[1, 1, C]` tensors (mean, std).
fn stats(data: &SphereDataset, device: &Device) -> (Tensor<3>, Tensor<3>) {
    let c = data.channels();
    (
        Tensor::from_data(TensorData::new(data.mean().to_vec(), [1, 1, c]), device),
        Tensor::from_data(TensorData::new(data.std().to_vec(), [1, 1, c]), device),
    )
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_data().iter::<f32>().next().unwrap_or(f32::NAN) as f64
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

/// Evaluation-mode reconstruction of `items`: mean squared error on the data's
/// scale and the reconstructions `[B·N·C]`.
pub fn reconstruct(
    model: &HealpixAutoencoder,
    data: &SphereDataset,
    items: &[(usize, Rotation)],
    chunk: usize,
    device: &Device,
) -> (f64, Vec<Vec<f32>>) {
    let (mean, std) = stats(data, device);
    let mut sq = 0.0;
    let mut count = 0usize;
    let mut outs = Vec::new();
    for part in items.chunks(chunk.max(1)) {
        let (x, target) = batch(data, part, device);
        let y = model.forward(x) * std.clone() + mean.clone();
        let err = (y.clone() - target).square();
        count += err.shape().num_elements();
        sq += scalar(err.sum());
        let v: Vec<f32> = y.into_data().iter::<f32>().collect();
        let per = v.len() / part.len();
        outs.extend(v.chunks(per).map(<[f32]>::to_vec));
    }
    (sq / count as f64, outs)
}

/// The gradients of the batch `items` (loss: MSE on the data's scale), the
/// batch split into `workers` contiguous shards computed on scoped threads,
/// and the loss. Shard `i`'s loss is weighted by its share of the batch, so the
/// summed gradients are those of the whole batch's mean.
fn gradients(
    model: &HealpixAutoencoder,
    data: &SphereDataset,
    items: &[(usize, Rotation)],
    workers: usize,
    device: &Device,
) -> (MultiGradientsParams, f64) {
    let per = items.len().div_ceil(workers);
    let shard = |part: &[(usize, Rotation)], model: HealpixAutoencoder| {
        let model = own_graph(model);
        let (mean, std) = stats(data, device);
        let (x, target) = batch(data, part, device);
        let y = model.forward(x) * std.clone() + mean.clone();
        let loss = (y - target).square().mean() * (part.len() as f64 / items.len() as f64);
        let value = scalar(loss.clone());
        (GradientsParams::from_grads(loss.backward(), &model), value)
    };
    let results: Vec<(GradientsParams, f64)> = if workers == 1 {
        vec![shard(items, model.clone())]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = items
                .chunks(per)
                .map(|part| {
                    let model = model.clone();
                    let shard = &shard;
                    s.spawn(move || shard(part, model))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        })
    };
    let loss = results.iter().map(|r| r.1).sum();
    let grads = MultiGradientsParams {
        grads: results
            .into_iter()
            .map(|(g, _)| (g, device.clone()))
            .collect(),
    };
    (grads, loss)
}

/// A copy of `model` whose parameters are new autodiff leaves (same ids and
/// values, no shared graph nodes), so that workers can run forward and
/// backward passes at the same time: burn's autodiff merges graphs that share
/// nodes, and one worker's backward would consume the other's tape.
fn own_graph(model: HealpixAutoencoder) -> HealpixAutoencoder {
    struct Detach;
    impl ModuleMapper for Detach {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let id = p.id;
            Param::initialized(id, p.val().detach().require_grad())
        }
    }
    model.map(&mut Detach)
}

/// Sets every batch norm's running statistics to the exact average of the
/// batch statistics of `config.bn_batches` batches of training rotations
/// (Wu & Johnson's "precise BN"): fresh statistics, then batch `j` updated
/// with momentum `1/(j+1)`, one thread, so the result is deterministic.
fn precise_batch_norm(
    model: HealpixAutoencoder,
    config: &TrainConfig,
    data: &SphereDataset,
    device: &Device,
) -> HealpixAutoencoder {
    let mut model = model.with_fresh_running_stats();
    let maps = data.source().samples();
    let per = config.batch.div_ceil(config.workers);
    for j in 0..config.bn_batches {
        model = model.with_batch_norm_momentum(1.0 / (j as f64 + 1.0));
        // Rotations past the last step: training distribution, never trained on.
        let items: Vec<_> = (0..per)
            .map(|i| training_rotation(config.seed, config.steps + j, i, maps))
            .collect();
        let (x, _) = batch(data, &items, device);
        let _ = model.forward(x);
    }
    model.with_batch_norm_momentum(0.0)
}

fn save_optimizer(optim: &ModuleOptimizer, path: &Path) -> Result<()> {
    let bytes = optim
        .into_bytes()
        .map_err(|e| Error::format(path, format!("cannot serialise the optimiser state: {e}")))?;
    write_bytes_atomically(path, &bytes)
}

fn load_optimizer(optim: ModuleOptimizer, path: &Path) -> Result<ModuleOptimizer> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    optim
        .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(|e| Error::format(path, format!("not an optimiser state: {e}")))
}

/// Trains `config` on `data`, writing checkpoints and, at the end, `metrics.json`,
/// the pictures and the final model into `options.out`. `progress` is called
/// after every step.
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
    let out = &options.out;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let ckpt_root = out.join("checkpoints");
    if !options.resume && ckpt_root.exists() {
        // A fresh run: checkpoints of an earlier run in this directory would mix with ours.
        std::fs::remove_dir_all(&ckpt_root).map_err(|e| Error::io(&ckpt_root, e))?;
    }
    let device = options.device.clone().autodiff();

    // The weights come from a generator of our own, seeded by the run's seed:
    // the backend's generator is process-wide, so anything else drawing from
    // it (another thread, a test) would change them. The backend is seeded too,
    // for any other draw.
    options.device.seed(config.seed);
    // Running statistics are frozen while training (workers on clones would
    // race to update them) and set exactly after it, see `precise_batch_norm`.
    let mut model = idx_flow_core::init::with_seed(config.seed, || config.model.init(&device))?
        .with_batch_norm_momentum(0.0);
    let mut optim = optimizer(config);
    let mut schedule = lr_schedule(config)?;
    let mut losses: Vec<f64> = Vec::with_capacity(config.steps);
    let mut train_seconds = 0.0;

    if options.resume {
        let (files, state) = latest_checkpoint(&ckpt_root)?;
        if state.config != config.identity_json() {
            return Err(Error::format(
                files.state(),
                "the checkpoint was written by a run with another config (model, data, steps, batch, seed or rates); \
                 resume with the same options (checkpoint_every may differ)",
            ));
        }
        model = load_state_dict(
            model.with_fresh_running_stats(),
            &StateDict::load(files.model())?,
        )?;
        optim = load_optimizer(optim, &files.optimizer())?;
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

    let maps = data.source().samples();
    let session = Instant::now();
    let first_step = losses.len();
    while losses.len() < config.steps {
        let step = losses.len();
        if options.stop.is_some_and(|s| s.load(AtomicOrdering::SeqCst)) {
            train_seconds += session.elapsed().as_secs_f64();
            let dir = checkpoint(&model, &optim, &losses, train_seconds)?;
            return Ok(TrainOutcome::Interrupted {
                step,
                checkpoint: dir,
            });
        }
        let items: Vec<_> = (0..config.batch)
            .map(|i| training_rotation(config.seed, step, i, maps))
            .collect();
        let (grads, loss_value) = gradients(&model, data, &items, config.workers, &device);
        if !loss_value.is_finite() {
            return Err(Error::arg(
                "learning_rate",
                format!(
                    "the loss became {loss_value} at step {}; lower the learning rate",
                    step + 1
                ),
            ));
        }
        let lr = schedule.step();
        let lr_value = lr.base();
        model = optim.step_multi(lr, model, grads);
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
        if config.checkpoint_every > 0
            && done.is_multiple_of(config.checkpoint_every)
            && done < config.steps
        {
            let secs = train_seconds + session.elapsed().as_secs_f64();
            checkpoint(&model, &optim, &losses, secs)?;
        }
    }
    train_seconds += session.elapsed().as_secs_f64();
    checkpoint(&model, &optim, &losses, train_seconds)?;

    // Evaluation and outputs.
    let model = precise_batch_norm(model, config, data, &device);
    let eval_model = model.valid();
    let base = options.device.clone();
    let heldout: Vec<_> = (0..config.eval_samples)
        .map(|j| heldout_rotation(j, maps))
        .collect();
    let (heldout_mse, recon) = reconstruct(&eval_model, data, &heldout, config.batch, &base);
    let tail = (losses.len() / 10).max(1);
    let train_mse = losses[losses.len() - tail..].iter().sum::<f64>() / tail as f64;
    let peak = data.peak();
    state_dict(&eval_model)?.save(out.join("model.safetensors"))?;

    let input = data.render(heldout[0].0, &heldout[0].1);
    super::figures::write_run_figures(out, data, &input, &recon[0], &losses)?;

    let metrics = Metrics {
        data: config.data.clone(),
        source: data.source().describe(),
        backend: options.backend.clone(),
        steps: config.steps,
        batch: config.batch,
        seed: config.seed,
        nside: config.model.nside,
        parameters: eval_model.num_params(),
        compression_ratio: config.model.compression_ratio(),
        latent_shape: config.model.latent_shape(),
        train_mse,
        train_psnr_db: psnr(train_mse, peak),
        heldout_mse,
        heldout_psnr_db: psnr(heldout_mse, peak),
        heldout_samples: config.eval_samples,
        psnr_peak: peak,
        first_loss: losses[0],
        last_loss: *losses.last().unwrap_or(&f64::NAN),
        train_seconds,
        wall_seconds: started.elapsed().as_secs_f64(),
        samples_per_s: (config.steps * config.batch) as f64 / train_seconds.max(1e-9),
    };
    let json = serde_json::to_vec_pretty(&metrics)
        .map_err(|e| Error::format(out.join("metrics.json"), e.to_string()))?;
    write_bytes_atomically(&out.join("metrics.json"), &json)?;
    write_bytes_atomically(
        &out.join("config.json"),
        serde_json::to_string_pretty(config)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    Ok(TrainOutcome::Finished(Box::new(metrics)))
}
