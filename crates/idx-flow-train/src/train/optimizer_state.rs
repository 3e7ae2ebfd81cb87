//! The optimiser's state in a checkpoint (`optimizer.bpk`, burn's burnpack
//! record), written atomically and read back only when it fits the model.
//!
//! burn-optim 0.22.1 takes a record on trust when it loads one and panics on
//! what a damaged or foreign file can hold: a tensor without a parameter id
//! ("Optimizer record tensors should carry a parameter id"), a recorded rank
//! above 8, or a tensor whose rank differs from its parameter's (burn-tensor's
//! "From Data" check); a state of the wrong shape would panic at the next step.
//! [`load_optimizer`] therefore reads the pack's header first and refuses any
//! record that is not the one this model's optimiser would write: every tensor
//! belongs to one of the model's parameters and has its shape and dtype, and
//! every recorded rank is that parameter's rank.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::ModuleOptimizer;
use burn::tensor::{DType, Tensor};

use crate::{Error, Result};
use idx_flow_healpix::io::write_bytes_atomically;

/// The suffix of the scalar in which burn-optim records a parameter's rank
/// (`"{param_id}.__rank"`).
const RANK_SUFFIX: &str = ".__rank";

/// Writes the optimiser's state (burn's burnpack record) to `path`, atomically.
pub fn save_optimizer(optim: &ModuleOptimizer, path: &Path) -> Result<()> {
    let bytes = optim
        .into_bytes()
        .map_err(|e| Error::format(path, format!("cannot serialise the optimiser state: {e}")))?;
    write_bytes_atomically(path, &bytes)
}

/// Reads an optimiser state written by [`save_optimizer`] for `model` into
/// `optim`, after checking that it fits the model's parameters.
pub fn load_optimizer<M: Module>(
    optim: ModuleOptimizer,
    path: &Path,
    model: &M,
) -> Result<ModuleOptimizer> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    load_optimizer_bytes(optim, bytes, path, model)
}

/// [`load_optimizer`] of the file's `bytes` (read already); `path` names it
/// in errors.
pub fn load_optimizer_bytes<M: Module>(
    optim: ModuleOptimizer,
    bytes: Vec<u8>,
    path: &Path,
    model: &M,
) -> Result<ModuleOptimizer> {
    check_record_fits(path, &bytes, &parameters_of(model))?;
    optim
        .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(|e| Error::format(path, format!("not an optimiser state: {e}")))
}

/// One parameter as the optimiser keys its state.
#[derive(Debug, PartialEq)]
struct ParameterSpec {
    shape: Vec<usize>,
    dtype: DType,
}

#[derive(Default)]
struct CollectParameters(BTreeMap<u64, ParameterSpec>);

impl ModuleVisitor for CollectParameters {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        self.0.insert(
            param.id.val(),
            ParameterSpec {
                shape: value.shape().as_slice().to_vec(),
                dtype: value.dtype(),
            },
        );
    }
}

fn parameters_of<M: Module>(model: &M) -> BTreeMap<u64, ParameterSpec> {
    let mut collect = CollectParameters::default();
    model.visit(&mut collect);
    collect.0
}

fn check_record_fits(
    path: &Path,
    bytes: &[u8],
    parameters: &BTreeMap<u64, ParameterSpec>,
) -> Result<()> {
    let bad = |what: String| {
        Error::format(
            path,
            format!("not an optimiser state for this model: {what}"),
        )
    };
    // A copy of the state (a few megabytes for our models): `Reader` takes the
    // bytes by value, and burn-optim needs them again afterwards.
    let reader = burn_pack::Reader::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| bad(e.to_string()))?;
    for (name, value) in reader.scalars() {
        let Some(id) = name.strip_suffix(RANK_SUFFIX) else {
            continue;
        };
        let (Ok(id), Ok(rank)) = (id.parse::<u64>(), usize::try_from(*value)) else {
            continue; // burn-optim passes these over too
        };
        let Some(param) = parameters.get(&id) else {
            return Err(bad(format!(
                "'{name}' records parameter {id}, which the model does not have"
            )));
        };
        if rank != param.shape.len() {
            return Err(bad(format!(
                "'{name}' records rank {rank}, expected {} (the parameter's shape is {:?})",
                param.shape.len(),
                param.shape
            )));
        }
    }
    let tensors = reader.into_tensors().map_err(|e| bad(e.to_string()))?;
    for tensor in &tensors {
        let name = &tensor.name;
        let Some(id) = tensor.param_id else {
            return Err(bad(format!(
                "tensor '{name}' carries no parameter id, expected the id of its parameter"
            )));
        };
        if !name.starts_with(&format!("{id}.")) {
            return Err(bad(format!(
                "tensor '{name}' is recorded for parameter {id}, expected a name starting with '{id}.'"
            )));
        }
        let Some(param) = parameters.get(&id) else {
            return Err(bad(format!(
                "tensor '{name}' belongs to parameter {id}, which the model does not have"
            )));
        };
        let shape = tensor.shape.as_slice();
        if shape != param.shape.as_slice() || tensor.dtype != param.dtype {
            return Err(bad(format!(
                "tensor '{name}' is {:?} of shape {shape:?}, expected {:?} of shape {:?} like its parameter",
                tensor.dtype, param.dtype, param.shape
            )));
        }
    }
    Ok(())
}
