//! One training step's arithmetic: batches as tensors, the masked loss, the
//! gradients of a batch split over worker threads (and what the ranks of a
//! data-parallel run agree on first), evaluation-mode reconstruction, and
//! the batch-norm statistics set after training.

use burn::module::{Module, ModuleMapper, Param};
use burn::optim::{GradientsParams, MultiGradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use idx_flow_kernels::loss::squared_error;

use crate::data::{Sample, SphereDataset};
use crate::distributed::Collective;
use crate::models::HealpixAutoencoder;
use crate::{Error, Result};

/// A batch as tensors `[B, N, C]`: the normalised input, the target on the
/// data's scale, and the valid-pixel weights (1 valid, 0 masked) when any
/// pixel of the batch is masked.
pub(crate) struct Batch {
    pub x: Tensor<3>,
    pub target: Tensor<3>,
    pub valid: Option<Tensor<3>>,
}

pub(crate) fn batch(
    data: &SphereDataset,
    samples: &[&Sample],
    masked: bool,
    device: &Device,
) -> Batch {
    let (n, c) = (data.npix(), data.channels());
    let mut x = Vec::with_capacity(samples.len() * n * c);
    let mut target = Vec::with_capacity(samples.len() * n * c);
    let mut valid = Vec::with_capacity(if masked { samples.len() * n * c } else { 0 });
    for s in samples {
        x.extend(data.normalised(s));
        target.extend_from_slice(&s.values);
        if masked {
            match &s.valid {
                Some(v) => valid.extend(v.iter().map(|&ok| if ok { 1f32 } else { 0.0 })),
                None => valid.extend(std::iter::repeat_n(1f32, n * c)),
            }
        }
    }
    let shape = [samples.len(), n, c];
    Batch {
        x: Tensor::from_data(TensorData::new(x, shape), device),
        target: Tensor::from_data(TensorData::new(target, shape), device),
        valid: masked.then(|| Tensor::from_data(TensorData::new(valid, shape), device)),
    }
}

/// Valid values in `samples` (all `N·C` of a sample without a mask).
pub(crate) fn valid_count(samples: &[&Sample], per_sample: usize) -> usize {
    samples
        .iter()
        .map(|s| {
            s.valid
                .as_ref()
                .map_or(per_sample, |v| v.iter().filter(|&&ok| ok).count())
        })
        .sum()
}

/// Channel statistics as `[1, 1, C]` tensors (mean, std).
fn stats(data: &SphereDataset, device: &Device) -> (Tensor<3>, Tensor<3>) {
    let c = data.channels();
    (
        Tensor::from_data(TensorData::new(data.mean().to_vec(), [1, 1, c]), device),
        Tensor::from_data(TensorData::new(data.std().to_vec(), [1, 1, c]), device),
    )
}

pub(crate) fn scalar(t: Tensor<1>) -> f64 {
    t.into_data().iter::<f32>().next().unwrap_or(f32::NAN) as f64
}

/// The model's output for `x` on the data's scale.
pub(crate) fn output(
    model: &HealpixAutoencoder,
    data: &SphereDataset,
    x: Tensor<3>,
    device: &Device,
) -> Tensor<3> {
    let (mean, std) = stats(data, device);
    model.forward(x) * std + mean
}

/// Evaluation-mode reconstruction of `samples`: the mean squared error over
/// their valid values on the data's scale, and the reconstructions `[N·C]`.
pub fn reconstruct(
    model: &HealpixAutoencoder,
    data: &SphereDataset,
    samples: &[Sample],
    chunk: usize,
    device: &Device,
) -> (f64, Vec<Vec<f32>>) {
    let mut sq = 0.0;
    let mut count = 0usize;
    let mut outs = Vec::new();
    let per_sample = data.npix() * data.channels();
    for part in samples.chunks(chunk.max(1)) {
        let refs: Vec<&Sample> = part.iter().collect();
        let masked = part.iter().any(|s| s.valid.is_some());
        let b = batch(data, &refs, masked, device);
        let y = output(model, data, b.x, device);
        let mut err = (y.clone() - b.target).square();
        if let Some(v) = b.valid {
            err = err * v;
        }
        count += valid_count(&refs, per_sample);
        sq += scalar(err.sum());
        let v: Vec<f32> = y.into_data().iter::<f32>().collect();
        outs.extend(v.chunks(per_sample).map(<[f32]>::to_vec));
    }
    (sq / count.max(1) as f64, outs)
}

/// The whole batch a step's loss is the mean over, of which a process may
/// hold a part (one rank's share of a data-parallel step).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BatchShare {
    /// Samples in the whole batch.
    pub samples: usize,
    /// Valid values in the whole batch (see [`valid_count`]).
    pub valid: f64,
    /// Whether any sample of the whole batch carries a mask (the loss then
    /// weighs values by validity).
    pub masked: bool,
}

/// The gradients of `samples`, part or all of the batch `share` (loss: MSE
/// over the batch's valid values on the data's scale), split into `workers`
/// contiguous shards computed on scoped threads, and their part of the loss.
/// Each shard's loss is its share of the whole batch's mean, so the summed
/// gradients (over shards, and over ranks) are those of the batch.
pub(crate) fn gradients(
    model: &HealpixAutoencoder,
    data: &SphereDataset,
    samples: &[Sample],
    workers: usize,
    share: BatchShare,
    device: &Device,
) -> Result<(MultiGradientsParams, f64)> {
    let per = samples.len().div_ceil(workers);
    let masked = share.masked;
    let refs: Vec<&Sample> = samples.iter().collect();
    let total_valid = share.valid;
    let shard = |part: &[&Sample], model: HealpixAutoencoder| {
        let model = own_graph(model);
        let b = batch(data, part, masked, device);
        let y = output(&model, data, b.x, device);
        // With masks, the sum over valid values divided by the batch's
        // count of them; without, the mean of the shard weighted by its share
        // of the batch (the formula of earlier versions, kept for their figures).
        let scale = match b.valid {
            Some(_) => 1.0 / total_valid,
            None => {
                let values: usize = y.dims().iter().product();
                part.len() as f64 / (share.samples as f64 * values as f64)
            }
        };
        let loss = squared_error(y, b.target, b.valid, scale)?;
        let value = scalar(loss.clone());
        Ok((GradientsParams::from_grads(loss.backward(), &model), value))
    };
    let results: Vec<Result<(GradientsParams, f64)>> = if workers == 1 {
        vec![shard(&refs, model.clone())]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = refs
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
    let results = results.into_iter().collect::<Result<Vec<_>>>()?;
    let loss = results.iter().map(|r| r.1).sum();
    let grads = MultiGradientsParams {
        grads: results
            .into_iter()
            .map(|(g, _)| (g, device.clone()))
            .collect(),
    };
    Ok((grads, loss))
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
/// batch statistics of `batches` (Wu & Johnson's "precise BN"): fresh
/// statistics, then batch `j` updated with momentum `1/(j+1)`, one thread, so
/// the result is deterministic.
pub(crate) fn precise_batch_norm(
    model: HealpixAutoencoder,
    data: &SphereDataset,
    batches: &[Vec<Sample>],
    device: &Device,
) -> HealpixAutoencoder {
    let mut model = model.with_fresh_running_stats();
    for (j, samples) in batches.iter().enumerate() {
        model = model.with_batch_norm_momentum(1.0 / (j as f64 + 1.0));
        let refs: Vec<&Sample> = samples.iter().collect();
        let b = batch(data, &refs, false, device);
        let _ = model.forward(b.x);
    }
    model.with_batch_norm_momentum(0.0)
}

/// A step whose loss is not finite stops the run (on every rank alike, as
/// the loss is the all-reduced one).
pub(crate) fn check_finite(loss: f64, step: usize) -> Result<()> {
    if loss.is_finite() {
        return Ok(());
    }
    Err(Error::arg(
        "learning_rate",
        format!(
            "the loss became {loss} at step {}; lower the learning rate",
            step + 1
        ),
    ))
}

/// Whether to stop before this step (an interrupt on any rank stops every
/// rank at the same step) and the whole batch the loss is a mean over (its
/// valid values summed over the ranks' shares).
pub(crate) fn agree_on_step(
    world: Option<&dyn Collective>,
    stop: bool,
    samples: &[Sample],
    per_sample: usize,
    step: usize,
) -> Result<(bool, BatchShare)> {
    let refs: Vec<&Sample> = samples.iter().collect();
    let mut head = [
        f64::from(u8::from(stop)),
        samples.len() as f64,
        valid_count(&refs, per_sample) as f64,
        f64::from(u8::from(samples.iter().any(|s| s.valid.is_some()))),
    ];
    if let Some(w) = world {
        w.all_reduce_sum_f64(&mut head, &format!("the start of step {}", step + 1))?;
    }
    let share = BatchShare {
        samples: head[1] as usize,
        valid: head[2],
        masked: head[3] > 0.0,
    };
    Ok((head[0] > 0.0, share))
}
