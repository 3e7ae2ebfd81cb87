//! Comparing our modules with a reference library's recorded tensors:
//! parameter gradients by state-dict name, tolerances, fixture tensors.

use std::collections::BTreeMap;

use burn::module::Param;
use burn::tensor::{Device, Gradients, Tensor, TensorData};
use idx_flow_core::state_dict::{
    StateDict, StateVisitor, TorchState, load_state_dict, tensor_to_vec,
};
use idx_flow_healpix::io::SafetensorsFile;

/// A tensor's values and shape.
pub type Values = (Vec<f32>, Vec<usize>);

/// Parameter gradients by state-dict name (PyTorch's, or pdequinox's paths).
pub struct GradCollect<'a> {
    pub grads: &'a Gradients,
    pub out: BTreeMap<String, Option<Values>>,
}

impl StateVisitor for GradCollect<'_> {
    fn param<const D: usize>(&mut self, name: &str, param: &Param<Tensor<D>>) {
        let g = param.val().grad(self.grads).map(tensor_to_vec);
        self.out.insert(name.to_string(), g);
    }
    fn buffer<const D: usize>(&mut self, _: &str, _: &Tensor<D>) {}
    fn int_buffer(&mut self, _: &str, _: &[usize], _: &[i64]) {}
}

/// `module` with the parameters of `sd` (a reference library's, for case
/// `case`), panicking with both names if they do not fit.
pub fn loaded<M: TorchState>(module: M, sd: &StateDict, case: &str) -> M {
    load_state_dict(module, sd)
        .unwrap_or_else(|e| panic!("{case}: loading the reference's parameters: {e}"))
}

/// Checks every parameter gradient a reference library stored under
/// `{case}.grad.param.` against ours (`ours`, by state-dict name, as
/// [`GradCollect`] gathers them): the parameter must exist here, must have
/// received a gradient, and must pass `close(what, ours, our_shape,
/// reference, reference_shape)`. Returns the reference's names (name → full
/// tensor name), for the caller's checks of parameters the reference lacks.
pub fn compare_param_grads(
    file: &SafetensorsFile,
    case: &str,
    ours: &BTreeMap<String, Option<Values>>,
    library: &str,
    close: impl Fn(&str, &[f32], &[usize], &[f32], &[usize]),
) -> BTreeMap<String, String> {
    let reference = names_under(file, &format!("{case}.grad.param."));
    for (p, full) in &reference {
        let (v, s) = ours
            .get(p)
            .unwrap_or_else(|| panic!("{case}: {library} has '{p}', our layer does not"))
            .as_ref()
            .unwrap_or_else(|| panic!("{case}: no gradient reached '{p}'"));
        let (rv, rs) = file.f32(full).unwrap();
        close(&format!("{case} grad.param.{p}"), v, s, &rv, &rs);
    }
    reference
}

/// A float tensor of the fixture.
pub fn tensor<const D: usize>(file: &SafetensorsFile, name: &str, device: &Device) -> Tensor<D> {
    let (v, shape) = file.f32(name).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(shape.len(), D, "{name}: rank");
    Tensor::from_data(TensorData::new(v, shape), device)
}

/// The PyTorch state dict of a case (its `param.*` and `buffer.*` entries).
pub fn case_state(file: &SafetensorsFile, case: &str) -> StateDict {
    let mut sd = StateDict::from_safetensors(file, &format!("{case}.param.")).unwrap();
    let buffers = StateDict::from_safetensors(file, &format!("{case}.buffer.")).unwrap();
    for (k, t) in buffers.iter() {
        sd.insert(k, t.shape.clone(), t.values.clone()).unwrap();
    }
    sd
}

pub fn shape_of(sd: &StateDict, key: &str) -> Vec<usize> {
    sd.get(key)
        .unwrap_or_else(|| panic!("state has no '{key}'"))
        .shape
        .clone()
}

/// `max |ours − ref| ≤ 1e-5·max(1, max |ref|)`; panics with the worst entry.
pub fn assert_close(
    what: &str,
    ours: &[f32],
    ours_shape: &[usize],
    reference: &[f32],
    ref_shape: &[usize],
) {
    assert_eq!(ours_shape, ref_shape, "{what}: shape");
    let scale = reference.iter().fold(1f32, |m, v| m.max(v.abs()));
    let (mut worst, mut at) = (0f32, 0usize);
    for (i, (a, b)) in ours.iter().zip(reference).enumerate() {
        let d = (a - b).abs();
        // NaN counts as the worst difference.
        if !worst.is_nan() && (d.is_nan() || d > worst) {
            worst = d;
            at = i;
        }
    }
    assert!(
        worst <= 1e-5 * scale,
        "{what}: max |ours - ref| = {worst} at flat index {at} (ours {}, ref {}), tolerance {}",
        ours[at],
        reference[at],
        1e-5 * scale
    );
}

/// The names of a fixture case's tensors under `{case}.{group}.`, sorted.
pub fn names_under(file: &SafetensorsFile, prefix: &str) -> BTreeMap<String, String> {
    file.names()
        .into_iter()
        .filter_map(|n| n.strip_prefix(prefix).map(|k| (k.to_string(), n.clone())))
        .collect()
}
