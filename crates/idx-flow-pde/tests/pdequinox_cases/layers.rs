//! The layer cases of `pdequinox.safetensors`: each case's layer built from
//! its class and arguments, loaded, and checked against pdequinox.

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor, TensorData};
use idx_flow_core::state_dict::{StateDict, StateVisitor, TorchState, tensor_to_vec};
use idx_flow_healpix::io::SafetensorsFile;
use idx_flow_pde::*;
use serde_json::Value;

use idx_flow_testing::compare::{GradCollect, assert_close, compare_param_grads, loaded};
use idx_flow_testing::fixtures;

/// One case of the manifest.
pub struct Case {
    pub name: String,
    class: String,
    args: Value,
}

pub fn file() -> SafetensorsFile {
    fixtures::open("pdequinox.safetensors")
}

fn manifest() -> Value {
    fixtures::manifest("pdequinox_manifest.json")
}

pub fn cases(file: &SafetensorsFile) -> Vec<Case> {
    fixtures::manifest_cases(&manifest(), file, "pdequinox")
        .into_iter()
        .map(|(name, v)| Case {
            name,
            class: v["class"].as_str().expect("class").to_string(),
            args: v["args"].clone(),
        })
        .collect()
}

/// An int-or-sequence argument as a list (pdequinox broadcasts an int).
pub(crate) fn ints(args: &Value, name: &str, default: usize) -> Vec<usize> {
    match &args[name] {
        Value::Null => vec![default],
        Value::Number(n) => vec![n.as_u64().unwrap() as usize],
        Value::Array(a) => a.iter().map(|v| v.as_u64().unwrap() as usize).collect(),
        v => panic!("argument {name}: unexpected {v}"),
    }
}

pub(crate) fn int(args: &Value, name: &str) -> usize {
    args[name]
        .as_u64()
        .unwrap_or_else(|| panic!("argument {name} missing in {args}")) as usize
}

pub(crate) fn flag(args: &Value, name: &str, default: bool) -> bool {
    args[name].as_bool().unwrap_or(default)
}

pub(crate) fn mode(args: &Value) -> BoundaryMode {
    args["boundary_mode"]
        .as_str()
        .expect("boundary_mode")
        .parse()
        .unwrap()
}

/// The layers of the manifest's classes.
enum Layer {
    Conv(PhysicsConv),
    Transpose(PhysicsConvTranspose),
    Spectral(SpectralConv),
    Pointwise(PointwiseLinearConv),
    ClassicRes(ClassicResBlock),
    ModernRes(ModernResBlock),
    SpectralBlock(ClassicSpectralBlock),
}

impl Layer {
    fn build(case: &Case, device: &Device) -> Layer {
        let a = &case.args;
        let (d, ci, co) = (
            int(a, "num_spatial_dims"),
            int(a, "in_channels"),
            int(a, "out_channels"),
        );
        match case.class.as_str() {
            "PhysicsConv" => Layer::Conv(
                PhysicsConvConfig::new(d, ci, co, ints(a, "kernel_size", 0), mode(a))
                    .with_stride(ints(a, "stride", 1))
                    .with_dilation(ints(a, "dilation", 1))
                    .with_groups(a["groups"].as_u64().unwrap_or(1) as usize)
                    .with_use_bias(flag(a, "use_bias", true))
                    .init(device)
                    .unwrap(),
            ),
            "PhysicsConvTranspose" => Layer::Transpose(
                PhysicsConvTransposeConfig::new(d, ci, co, ints(a, "kernel_size", 0), mode(a))
                    .with_stride(ints(a, "stride", 1))
                    .with_output_padding(ints(a, "output_padding", 0))
                    .with_dilation(ints(a, "dilation", 1))
                    .with_groups(a["groups"].as_u64().unwrap_or(1) as usize)
                    .with_use_bias(flag(a, "use_bias", true))
                    .init(device)
                    .unwrap(),
            ),
            "SpectralConv" => Layer::Spectral(
                SpectralConvConfig::new(d, ci, co, ints(a, "num_modes", 0))
                    .init(device)
                    .unwrap(),
            ),
            "PointwiseLinearConv" => Layer::Pointwise(
                PointwiseLinearConvConfig::new(d, ci, co)
                    .with_use_bias(flag(a, "use_bias", true))
                    .init(device)
                    .unwrap(),
            ),
            "ClassicResBlock" => Layer::ClassicRes(
                ClassicResBlockConfig::new(d, ci, co, mode(a))
                    .with_kernel_size(int(a, "kernel_size"))
                    .with_use_norm(flag(a, "use_norm", false))
                    .with_num_groups(a["num_groups"].as_u64().unwrap_or(1) as usize)
                    .init(device)
                    .unwrap(),
            ),
            "ModernResBlock" => Layer::ModernRes(
                ModernResBlockConfig::new(d, ci, co, mode(a))
                    .with_kernel_size(int(a, "kernel_size"))
                    .with_use_norm(flag(a, "use_norm", true))
                    .with_num_groups(a["num_groups"].as_u64().unwrap_or(1) as usize)
                    .init(device)
                    .unwrap(),
            ),
            "ClassicSpectralBlock" => Layer::SpectralBlock(
                ClassicSpectralBlockConfig::new(d, ci, co)
                    .with_num_modes(ints(a, "num_modes", 8))
                    .init(device)
                    .unwrap(),
            ),
            c => panic!("{}: class {c} has no Rust counterpart", case.name),
        }
    }

    fn load(self, sd: &StateDict, name: &str) -> Layer {
        match self {
            Layer::Conv(m) => Layer::Conv(loaded(m, sd, name)),
            Layer::Transpose(m) => Layer::Transpose(loaded(m, sd, name)),
            Layer::Spectral(m) => Layer::Spectral(loaded(m, sd, name)),
            Layer::Pointwise(m) => Layer::Pointwise(loaded(m, sd, name)),
            Layer::ClassicRes(m) => Layer::ClassicRes(loaded(m, sd, name)),
            Layer::ModernRes(m) => Layer::ModernRes(loaded(m, sd, name)),
            Layer::SpectralBlock(m) => Layer::SpectralBlock(loaded(m, sd, name)),
        }
    }
}

/// A module run on the cases of a pdequinox fixture file.
pub(crate) trait Net {
    fn forward<const R: usize>(&self, x: Tensor<R>) -> Tensor<R>;
    fn visit<V: StateVisitor>(&self, v: &mut V);
}

impl Net for Layer {
    fn forward<const R: usize>(&self, x: Tensor<R>) -> Tensor<R> {
        match self {
            Layer::Conv(m) => m.forward(x),
            Layer::Transpose(m) => m.forward(x),
            Layer::Spectral(m) => m.forward(x),
            Layer::Pointwise(m) => m.forward(x),
            Layer::ClassicRes(m) => m.forward(x),
            Layer::ModernRes(m) => m.forward(x),
            Layer::SpectralBlock(m) => m.forward(x),
        }
    }

    fn visit<V: StateVisitor>(&self, v: &mut V) {
        match self {
            Layer::Conv(m) => m.visit_state("", v),
            Layer::Transpose(m) => m.visit_state("", v),
            Layer::Spectral(m) => m.visit_state("", v),
            Layer::Pointwise(m) => m.visit_state("", v),
            Layer::ClassicRes(m) => m.visit_state("", v),
            Layer::ModernRes(m) => m.visit_state("", v),
            Layer::SpectralBlock(m) => m.visit_state("", v),
        }
    }
}

/// A fixture tensor `[C, *spatial]` as a batch of one `[1, C, *spatial]`.
pub(crate) fn batched<const R: usize>(
    file: &SafetensorsFile,
    name: &str,
    device: &Device,
) -> Tensor<R> {
    let (v, mut shape) = file.f32(name).unwrap_or_else(|e| panic!("{e}"));
    shape.insert(0, 1);
    assert_eq!(shape.len(), R, "{name}: rank");
    Tensor::from_data(TensorData::new(v, shape), device)
}

/// Output, input gradient and parameter gradients of one case.
pub(crate) fn check_case<const R: usize, N: Net>(
    file: &SafetensorsFile,
    name: &str,
    layer: &N,
    device: &Device,
) {
    let x: Tensor<R> = batched(file, &format!("{name}.input"), device).require_grad();
    let y = layer.forward(x.clone());
    let (yv, mut ys) = tensor_to_vec(y.clone());
    assert_eq!(ys.remove(0), 1);
    let (rv, rs) = file.f32(&format!("{name}.output")).unwrap();
    assert_close(&format!("{name} output"), &yv, &ys, &rv, &rs);

    let r: Tensor<R> = batched(file, &format!("{name}.output_cotangent"), device);
    let grads = (y * r).sum().backward();
    let (gv, mut gs) = tensor_to_vec(x.grad(&grads).expect("input gradient"));
    gs.remove(0);
    let (rv, rs) = file.f32(&format!("{name}.grad.input")).unwrap();
    assert_close(&format!("{name} grad.input"), &gv, &gs, &rv, &rs);

    let mut collect = GradCollect {
        grads: &grads,
        out: BTreeMap::new(),
    };
    layer.visit(&mut collect);
    let reference = compare_param_grads(file, name, &collect.out, "pdequinox", assert_close);
    assert!(
        !reference.is_empty(),
        "{name}: no parameter gradients stored"
    );
    for p in collect.out.keys() {
        assert!(
            reference.contains_key(p),
            "{name}: our parameter '{p}' has no pdequinox gradient"
        );
    }
}

/// One case of the layer fixture (a test of its own in `pdequinox_cases`):
/// built from its class and arguments, loaded with pdequinox's parameters,
/// output and gradients checked.
pub fn check_layer_case(file: &SafetensorsFile, case: &Case) {
    let device = Device::default().autodiff();
    let layer = Layer::build(case, &device);
    let sd = StateDict::from_safetensors(file, &format!("{}.param.", case.name)).unwrap();
    let layer = layer.load(&sd, &case.name);
    let rank = file.shape(&format!("{}.input", case.name)).unwrap().len() + 1;
    match rank {
        3 => check_case::<3, _>(file, &case.name, &layer, &device),
        4 => check_case::<4, _>(file, &case.name, &layer, &device),
        5 => check_case::<5, _>(file, &case.name, &layer, &device),
        r => panic!("{}: rank {r} input", case.name),
    }
}
