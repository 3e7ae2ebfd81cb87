//! What the ranks exchange: the run's identity, rank 0's weights and
//! checkpoint, and every step's gradients.
//!
//! Gradients are flattened in the model's parameter order (the order
//! [`Module::visit`] walks, fixed by the model's structure and the same on
//! every rank) into one `f32` buffer, summed over the ranks in buckets of
//! [`BUCKET_VALUES`], and put back as one gradient per parameter. A rank's
//! own workers are summed first, as the single-process trainer sums them.

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::{GradientsParams, MultiGradientsParams};
use burn::tensor::{Device, Tensor, TensorData};

use super::Collective;
use crate::{Error, Result};

/// Values summed per call of the collective (16 MiB of `f32`): large enough
/// that the per-call latency does not count, small enough that no rank
/// holds a second copy of a large model's gradients at once.
pub const BUCKET_VALUES: usize = 1 << 22;

/// Every rank receives rank 0's `bytes` (`Some` on rank 0, ignored elsewhere).
pub(crate) fn broadcast_bytes_from_root(
    world: &dyn Collective,
    bytes: Option<Vec<u8>>,
    what: &str,
) -> Result<Vec<u8>> {
    let mut bytes = bytes.unwrap_or_default();
    world.broadcast_bytes(&mut bytes, what)?;
    Ok(bytes)
}

/// Fails on every rank, naming the ranks, when any rank's `identity` (the
/// run's configuration and data, as text) differs from rank 0's.
pub(crate) fn check_same_run(world: &dyn Collective, identity: &str) -> Result<()> {
    let root = broadcast_bytes_from_root(
        world,
        Some(identity.as_bytes().to_vec()),
        "the run's configuration",
    )?;
    let mut differs = vec![0.0f64; world.size()];
    differs[world.rank()] = f64::from(u8::from(root != identity.as_bytes()));
    world.all_reduce_sum_f64(&mut differs, "the comparison of the ranks' configurations")?;
    let odd: Vec<String> = differs
        .iter()
        .enumerate()
        .filter(|(_, d)| **d > 0.0)
        .map(|(r, _)| r.to_string())
        .collect();
    if odd.is_empty() {
        Ok(())
    } else {
        Err(Error::Distributed(format!(
            "rank {} started with another configuration or data than rank 0; start every rank \
             with the same command",
            odd.join(", ")
        )))
    }
}

/// `model` with rank 0's weights and buffers on every rank.
pub(crate) fn broadcast_parameters<M: idx_flow_core::state_dict::TorchState>(
    model: M,
    world: &dyn Collective,
) -> Result<M> {
    use idx_flow_core::StateDict;
    use idx_flow_core::state_dict::{load_state_dict, state_dict};
    use idx_flow_healpix::io::{SafetensorsFile, SafetensorsWriter};

    let mine = if world.rank() == 0 {
        let mut writer = SafetensorsWriter::new();
        state_dict(&model)?.add_to(&mut writer, "")?;
        Some(writer.to_bytes()?)
    } else {
        None
    };
    let bytes = broadcast_bytes_from_root(world, mine, "rank 0's initial weights")?;
    if world.rank() == 0 {
        return Ok(model);
    }
    let file = SafetensorsFile::from_bytes("rank 0's initial weights", bytes)?;
    load_state_dict(model, &StateDict::from_safetensors(&file, "")?)
}

/// One parameter's place in the flat buffer.
struct Slot {
    id: ParamId,
    shape: Vec<usize>,
    /// `None` when the parameter has no gradient (on every rank alike).
    range: Option<std::ops::Range<usize>>,
    device: Option<Device>,
}

struct Flatten<'a> {
    grads: &'a mut MultiGradientsParams,
    values: Vec<f32>,
    slots: Vec<Slot>,
}

impl ModuleVisitor for Flatten<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let (range, device) = match self.grads.remove::<D>(param.id) {
            Some((grad, device)) => {
                let start = self.values.len();
                self.values.extend(grad.into_data().iter::<f32>());
                (Some(start..self.values.len()), Some(device))
            }
            None => (None, None),
        };
        self.slots.push(Slot {
            id: param.id,
            shape: param.lazy_shape().as_slice().to_vec(),
            range,
            device,
        });
    }
}

struct Unflatten<'a> {
    values: &'a [f32],
    slots: std::vec::IntoIter<Slot>,
    grads: GradientsParams,
    error: Option<Error>,
}

impl ModuleVisitor for Unflatten<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(slot) = self.slots.next() else {
            self.error = Some(Error::Distributed(
                "the model has more parameters than its gradients were flattened from".into(),
            ));
            return;
        };
        if slot.id != param.id {
            self.error = Some(Error::Distributed(format!(
                "parameter order changed between flattening and restoring ({} against {})",
                slot.id, param.id
            )));
            return;
        }
        if let (Some(range), Some(device)) = (slot.range, slot.device) {
            let data = TensorData::new(self.values[range].to_vec(), slot.shape);
            self.grads
                .register::<D>(param.id, Tensor::from_data(data, &device));
        }
    }
}

/// The gradients summed over this rank's workers and then over all ranks,
/// and `loss` summed over the ranks. `what` names the step in errors.
pub(crate) fn all_reduce_gradients<M: Module>(
    model: &M,
    mut grads: MultiGradientsParams,
    loss: f64,
    world: &dyn Collective,
    what: &str,
) -> Result<(GradientsParams, f64)> {
    let mut flat = Flatten {
        grads: &mut grads,
        values: Vec::new(),
        slots: Vec::new(),
    };
    model.visit(&mut flat);
    let (mut values, slots) = (flat.values, flat.slots);
    // The loss travels with the first bucket's call (as f64, alone).
    let mut loss = [loss];
    world.all_reduce_sum_f64(&mut loss, &format!("{what} loss"))?;
    let buckets = values.len().div_ceil(BUCKET_VALUES);
    for (j, bucket) in values.chunks_mut(BUCKET_VALUES).enumerate() {
        world.all_reduce_sum_f32(
            bucket,
            &format!("{what} gradients (bucket {} of {buckets})", j + 1),
        )?;
    }
    let mut restore = Unflatten {
        values: &values,
        slots: slots.into_iter(),
        grads: GradientsParams::new(),
        error: None,
    };
    model.visit(&mut restore);
    match restore.error {
        Some(e) => Err(e),
        None => Ok((restore.grads, loss[0])),
    }
}
