//! The layer cases of `ginjax.safetensors`: each case's layer built from its
//! class, keys and filter side, loaded with ginjax's parameters, and checked.

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor, TensorData};
use idx_flow_core::state_dict::{StateDict, StateVisitor, TorchState, tensor_to_vec};
use idx_flow_equivariant::*;
use idx_flow_healpix::io::SafetensorsFile;
use serde_json::Value;

use idx_flow_testing::compare::{
    GradCollect, assert_close, compare_param_grads, loaded, names_under,
};
use idx_flow_testing::fixtures;

/// `ginjax.safetensors`.
pub fn file() -> SafetensorsFile {
    fixtures::open("ginjax.safetensors")
}

fn manifest() -> Value {
    fixtures::manifest("ginjax_manifest.json")
}

/// One case of the manifest.
pub struct Case {
    pub name: String,
    class: String,
    args: Value,
    d: usize,
    torus: bool,
    /// The filter side M of a ConvContract case: the second axis of the
    /// invariant filters ginjax was given (`{case}.buffer.invariant_filters.*`,
    /// `(n_filters, *(M,)*D, ...)`), so that any generated M is built.
    filter_size: Option<usize>,
}

pub fn cases(file: &SafetensorsFile) -> Vec<Case> {
    fixtures::manifest_cases(&manifest(), file, "ginjax")
        .into_iter()
        .map(|(name, v)| Case {
            class: v["class"].as_str().expect("class").to_string(),
            args: v["args"].clone(),
            d: v["D"].as_u64().expect("D") as usize,
            torus: v["is_torus"].as_bool().expect("is_torus"),
            filter_size: file
                .names()
                .iter()
                .find(|n| n.starts_with(&format!("{name}.buffer.invariant_filters.")))
                .map(|n| file.shape(n).expect("filter shape")[1]),
            name,
        })
        .collect()
}

/// A signature from the manifest: `{"k0p0": 2, ...}`.
fn signature(v: &Value) -> Signature {
    v.as_object()
        .expect("keys")
        .iter()
        .map(|(k, c)| (k.parse().unwrap(), c.as_u64().unwrap() as usize))
        .collect()
}

enum Layer {
    Conv(ConvContract),
    Norm(EquivariantGroupNorm),
    Vn(VectorNeuronNonlinear),
    Pool(MaxNormPool),
}

impl Layer {
    fn build(case: &Case, device: &Device) -> Layer {
        let a = &case.args;
        match case.class.as_str() {
            "ConvContract" => {
                let bias = match a["use_bias"].as_str().unwrap() {
                    "auto" => BiasMode::Auto,
                    "mean" => BiasMode::Mean,
                    "scalar" => BiasMode::Scalar,
                    b => panic!("{}: bias {b}", case.name),
                };
                Layer::Conv(
                    ConvContractConfig::new(
                        case.d,
                        signature(&a["input_keys"]),
                        signature(&a["target_keys"]),
                    )
                    .with_bias(bias)
                    .with_kernel_size(case.filter_size.unwrap_or_else(|| {
                        panic!("{}: no invariant filters in the fixture", case.name)
                    }))
                    .init(device)
                    .unwrap(),
                )
            }
            "LayerNorm" | "GroupNorm" => Layer::Norm(
                EquivariantGroupNormConfig::new(
                    case.d,
                    signature(&a["input_keys"]),
                    a["groups"].as_u64().unwrap_or(1) as usize,
                )
                .with_eps(a["eps"].as_f64().unwrap_or(1e-5))
                .init(device)
                .unwrap(),
            ),
            "VectorNeuronNonlinear" => {
                assert_eq!(a["scalar_activation"].as_str(), Some("relu"));
                Layer::Vn(
                    VectorNeuronNonlinearConfig::new(case.d, signature(&a["input_keys"]))
                        .with_eps(a["eps"].as_f64().unwrap_or(1e-5))
                        .init(device)
                        .unwrap(),
                )
            }
            "MaxNormPool" => {
                assert_ne!(a["use_norm"].as_bool(), Some(false));
                Layer::Pool(MaxNormPool::new(a["patch_len"].as_u64().unwrap() as usize))
            }
            c => panic!("{}: class {c} has no Rust counterpart", case.name),
        }
    }

    fn load(self, sd: &StateDict, name: &str) -> Layer {
        match self {
            Layer::Conv(m) => Layer::Conv(loaded(m, sd, name)),
            Layer::Norm(m) => Layer::Norm(loaded(m, sd, name)),
            Layer::Vn(m) => Layer::Vn(loaded(m, sd, name)),
            Layer::Pool(m) => Layer::Pool(m),
        }
    }

    fn forward<const R: usize>(&self, x: MultiImage<R>) -> MultiImage<R> {
        match self {
            Layer::Conv(m) => m.forward(x),
            Layer::Norm(m) => m.forward(x),
            Layer::Vn(m) => m.forward(x),
            Layer::Pool(m) => m.forward(x),
        }
    }

    fn visit<V: StateVisitor>(&self, v: &mut V) {
        match self {
            Layer::Conv(m) => m.visit_state("", v),
            Layer::Norm(m) => m.visit_state("", v),
            Layer::Vn(m) => m.visit_state("", v),
            Layer::Pool(_) => {}
        }
    }
}

/// A fixture block `(C, *N, *(D,)*k)` as our `[1, C·D^k, *N]`.
fn block<const R: usize>(
    file: &SafetensorsFile,
    name: &str,
    key: TensorKey,
    device: &Device,
) -> Tensor<R> {
    let (v, mut shape) = file.f32(name).unwrap_or_else(|e| panic!("{e}"));
    shape.insert(0, 1);
    let d = R - 2;
    let ours = from_pixel_layout(&v, &shape, d, key.k).unwrap();
    let mut dims = [0usize; R];
    dims[0] = 1;
    dims[1] = shape[1] * key.components(d);
    dims[2..].copy_from_slice(&shape[2..2 + d]);
    Tensor::from_data(TensorData::new(ours, dims), device)
}

/// Our block `[1, C·D^k, *N]` in the fixture's layout `(C, *N, *(D,)*k)`.
fn pixels<const R: usize>(t: Tensor<R>, key: TensorKey) -> (Vec<f32>, Vec<usize>) {
    let d = R - 2;
    let dims = t.dims();
    let (v, _) = tensor_to_vec(t);
    let mut shape = vec![dims[0], dims[1] / key.components(d)];
    shape.extend_from_slice(&dims[2..]);
    shape.extend(std::iter::repeat_n(d, key.k));
    let v = to_pixel_layout(&v, &shape, d, key.k).unwrap();
    (v, shape[1..].to_vec())
}

fn check_case<const R: usize>(file: &SafetensorsFile, case: &Case, layer: &Layer, device: &Device) {
    let name = &case.name;
    let mut x = MultiImage::<R>::new(vec![case.torus; R - 2]).unwrap();
    let mut inputs = BTreeMap::new();
    for k in names_under(file, &format!("{name}.input.")).keys() {
        let key: TensorKey = k.parse().unwrap();
        let t: Tensor<R> = block(file, &format!("{name}.input.{k}"), key, device).require_grad();
        inputs.insert(key, t.clone());
        x.insert(key, t).unwrap();
    }
    let y = layer.forward(x);
    let outputs = names_under(file, &format!("{name}.output."));
    assert_eq!(
        y.keys().iter().map(|k| k.to_string()).collect::<Vec<_>>(),
        outputs.keys().cloned().collect::<Vec<_>>(),
        "{name}: output keys"
    );
    let mut loss: Option<Tensor<1>> = None;
    for (key, t) in y.iter() {
        let (v, s) = pixels(t.clone(), key);
        let (rv, rs) = file.f32(&format!("{name}.output.{key}")).unwrap();
        assert_close(&format!("{name} output.{key}"), &v, &s, &rv, &rs);
        let r: Tensor<R> = block(file, &format!("{name}.output_cotangent.{key}"), key, device);
        let term = (t.clone() * r).sum();
        loss = Some(match loss {
            Some(l) => l + term,
            None => term,
        });
    }
    let grads = loss.expect("some output").backward();
    for (key, t) in &inputs {
        let g = t
            .grad(&grads)
            .unwrap_or_else(|| panic!("{name}: no input gradient for {key}"));
        let (v, s) = pixels(g, *key);
        let (rv, rs) = file.f32(&format!("{name}.grad.input.{key}")).unwrap();
        assert_close(&format!("{name} grad.input.{key}"), &v, &s, &rv, &rs);
    }
    let mut collect = GradCollect {
        grads: &grads,
        out: BTreeMap::new(),
    };
    layer.visit(&mut collect);
    let reference = compare_param_grads(file, name, &collect.out, "ginjax", assert_close);
    for p in collect.out.keys() {
        assert!(
            reference.contains_key(p),
            "{name}: our parameter '{p}' has no ginjax gradient"
        );
    }
    // The filters ginjax handed to the layer are ours.
    for (k, full) in names_under(file, &format!("{name}.buffer.invariant_filters.")) {
        let (rv, rs) = file.f32(&full).unwrap();
        let ours = invariant_filters(rs[1], k.parse().unwrap(), R - 2).unwrap();
        assert_close(&full, ours.values(), &ours.shape(), &rv, &rs);
    }
}

/// One layer case of the ginjax fixture (a test of its own in
/// `ginjax_cases`): built from its class and arguments, loaded with ginjax's
/// parameters, output and gradients of every block checked.
pub fn check_layer_case(file: &SafetensorsFile, case: &Case) {
    let device = Device::default().autodiff();
    let layer = Layer::build(case, &device);
    let sd = StateDict::from_safetensors(file, &format!("{}.param.", case.name)).unwrap();
    let layer = layer.load(&sd, &case.name);
    match case.d {
        2 => check_case::<4>(file, case, &layer, &device),
        3 => check_case::<5>(file, case, &layer, &device),
        d => panic!("{}: D = {d}", case.name),
    }
}
