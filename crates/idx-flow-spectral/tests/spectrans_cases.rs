//! The spectral mixers and hybrid blocks (`idx_flow_spectral`): every case of
//! `spectrans.safetensors` (spectrans 0.1.0, PyTorch) with its output, input
//! gradient and every parameter gradient of `sum(output * output_cotangent)`;
//! the cases where spectrans is wrong, checked for the correct behaviour; the
//! transforms against closed forms; and a small GFNet/FNet regressor on
//! HEALPix pixel sequences that learns.
//!
//! Cases, classes and constructor arguments come from `spectrans_manifest.json`
//! and the tensors of the file, so any fixture set of `make_spectrans.py` runs.

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor};
use idx_flow_core::state_dict::{StateDict, StateVisitor, TorchState, state_dict, tensor_to_vec};
use idx_flow_healpix::io::SafetensorsFile;
use idx_flow_nn::Activation;
use idx_flow_spectral::*;
use serde_json::Value;

use idx_flow_testing::compare::{
    GradCollect, assert_close, case_state, compare_param_grads, loaded, tensor,
};
use idx_flow_testing::{fixtures, trials};

struct Case {
    name: String,
    class: String,
    args: Value,
    without_grad: Vec<String>,
}

fn file() -> SafetensorsFile {
    fixtures::open("spectrans.safetensors")
}

fn manifest() -> Value {
    fixtures::manifest("spectrans_manifest.json")
}

fn cases(file: &SafetensorsFile) -> Vec<Case> {
    fixtures::manifest_cases(&manifest(), file, "spectrans")
        .into_iter()
        .map(|(name, v)| Case {
            name,
            class: v["class"].as_str().expect("class").to_string(),
            args: v["args"].clone(),
            without_grad: v["params_without_grad"]
                .as_array()
                .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
                .unwrap_or_default(),
        })
        .collect()
}

fn usize_arg(args: &Value, name: &str) -> usize {
    args[name]
        .as_u64()
        .unwrap_or_else(|| panic!("argument {name} missing in {args}")) as usize
}

fn opt_usize(args: &Value, name: &str) -> Option<usize> {
    args[name].as_u64().map(|v| v as usize)
}

fn str_arg<'a>(args: &'a Value, name: &str, default: &'a str) -> &'a str {
    args[name].as_str().unwrap_or(default)
}

/// spectrans' mixer `{class, args}` as ours (spectrans-compatible settings).
fn mixer(spec: &Value, device: &Device) -> Mixer {
    let a = &spec["args"];
    let h = usize_arg(a, "hidden_dim");
    match spec["class"].as_str().expect("class") {
        "FourierMixing" => FourierMixing::new().into(),
        "FourierMixing1D" => FourierMixing1d::new().into(),
        "GlobalFilterMixing" => GlobalFilterMixingConfig::new(h, usize_arg(a, "sequence_length"))
            .with_activation(str_arg(a, "activation", "sigmoid").parse().unwrap())
            .init(device)
            .unwrap()
            .into(),
        "AFNOMixing" => SpectransAfnoMixingConfig::new(h, usize_arg(a, "max_sequence_length"))
            .with_modes_seq(opt_usize(a, "modes_seq"))
            .with_modes_hidden(opt_usize(a, "modes_hidden"))
            .with_mlp_ratio(a["mlp_ratio"].as_f64().unwrap_or(2.0))
            .init(device)
            .unwrap()
            .into(),
        "WaveletMixing" => {
            assert_eq!(str_arg(a, "mixing_mode", "pointwise"), "pointwise");
            WaveletMixingConfig::new(h)
                .with_wavelet(str_arg(a, "wavelet", "db4").into())
                .with_levels(opt_usize(a, "levels").unwrap_or(3))
                .init(device)
                .unwrap()
                .into()
        }
        "SpectralAttention" => {
            let kernel = match str_arg(a, "kernel_type", "softmax") {
                "softmax" => AttentionKernel::Softmax,
                "gaussian" => AttentionKernel::Trigonometric,
                k => panic!("kernel {k}"),
            };
            SpectralAttentionConfig::new(h)
                .with_num_heads(opt_usize(a, "num_heads").unwrap_or(8))
                .with_num_features(opt_usize(a, "num_features"))
                .with_kernel(kernel)
                .with_feature_scale(FeatureScale::One)
                .init(device)
                .unwrap()
                .into()
        }
        "LSTAttention" => {
            let t = match str_arg(a, "transform_type", "dct") {
                "dct" => LstTransform::Dct,
                "dst" => LstTransform::Dst,
                "hadamard" => LstTransform::Hadamard,
                "mixed" => LstTransform::Mixed,
                t => panic!("transform {t}"),
            };
            LstAttentionConfig::new(h)
                .with_num_heads(opt_usize(a, "num_heads").unwrap_or(8))
                .with_transform(t)
                .init(device)
                .unwrap()
                .into()
        }
        c => panic!("mixer class {c} has no Rust counterpart"),
    }
}

fn mixers(list: &Value, device: &Device) -> Vec<Mixer> {
    list.as_array()
        .expect("layers")
        .iter()
        .map(|s| mixer(s, device))
        .collect()
}

/// The layers of the manifest's classes.
#[allow(clippy::large_enum_variant)]
enum Layer {
    Mixer(Mixer),
    Block(TransformerBlock<Mixer>),
    Alternating(AlternatingBlock<Mixer, Mixer>),
    Adaptive(AdaptiveBlock<Mixer>),
    Multiscale(MultiscaleBlock<Mixer>),
    Cascade(CascadeBlock<Mixer>),
}

macro_rules! each_layer {
    ($self:expr, $m:ident => $body:expr) => {
        match $self {
            Layer::Mixer($m) => $body,
            Layer::Block($m) => $body,
            Layer::Alternating($m) => $body,
            Layer::Adaptive($m) => $body,
            Layer::Multiscale($m) => $body,
            Layer::Cascade($m) => $body,
        }
    };
}

impl Layer {
    fn build(case: &Case, device: &Device) -> Layer {
        let a = &case.args;
        let h = usize_arg(a, "hidden_dim");
        let ffn = opt_usize(a, "ffn_hidden_dim");
        match case.class.as_str() {
            "TransformerBlock" | "PreNormBlock" => {
                let pre = a["use_pre_norm"].as_bool().unwrap_or(true);
                let activation: Activation = str_arg(a, "activation", "gelu").parse().unwrap();
                let with_ffn = ffn.is_some() || case.class == "PreNormBlock";
                Layer::Block(
                    TransformerBlockConfig::new(h)
                        .with_ffn_hidden_dim(ffn)
                        .with_ffn(with_ffn)
                        .with_pre_norm(pre)
                        .with_activation(activation)
                        .init(mixer(&a["mixing_layer"], device), device)
                        .unwrap(),
                )
            }
            "AlternatingBlock" => Layer::Alternating(
                AlternatingBlockConfig::new(h)
                    .with_ffn_hidden_dim(ffn)
                    .with_use_layer1(a["use_layer1"].as_bool().unwrap())
                    .init(
                        mixer(&a["layer1"], device),
                        mixer(&a["layer2"], device),
                        device,
                    )
                    .unwrap(),
            ),
            "AdaptiveBlock" => {
                assert_eq!(str_arg(a, "gate_type", "soft"), "soft");
                Layer::Adaptive(
                    AdaptiveBlockConfig::new(h)
                        .with_ffn_hidden_dim(ffn)
                        .init(mixers(&a["layers"], device), device)
                        .unwrap(),
                )
            }
            "MultiscaleBlock" => {
                let fusion = match str_arg(a, "fusion_type", "add") {
                    "add" => Fusion::Add,
                    "weighted" => Fusion::Weighted,
                    "concat" => Fusion::Concat,
                    f => panic!("fusion {f}"),
                };
                Layer::Multiscale(
                    MultiscaleBlockConfig::new(h)
                        .with_ffn_hidden_dim(ffn)
                        .with_fusion(fusion)
                        .init(mixers(&a["layers"], device), device)
                        .unwrap(),
                )
            }
            "CascadeBlock" => Layer::Cascade(
                CascadeBlockConfig::new(h)
                    .with_ffn_hidden_dim(ffn)
                    .with_share_norm(a["share_norm"].as_bool().unwrap())
                    .init(mixers(&a["layers"], device), device)
                    .unwrap(),
            ),
            _ => Layer::Mixer(mixer(
                &serde_json::json!({"class": case.class, "args": case.args}),
                device,
            )),
        }
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        each_layer!(self, m => m.try_forward(x).unwrap())
    }

    fn visit<V: StateVisitor>(&self, v: &mut V) {
        each_layer!(self, m => m.visit_state("", v))
    }

    fn state(&self) -> StateDict {
        each_layer!(self, m => state_dict(m).unwrap())
    }

    /// Loads spectrans' parameters and buffers; entries spectrans has and we
    /// do not must be ones spectrans never uses (its `norm3`, CascadeBlock's
    /// unused `norm1`).
    fn load(self, fixture: &StateDict, case: &Case) -> Layer {
        let ours = self.state();
        let mut sd = StateDict::new();
        for (k, t) in fixture.iter() {
            if ours.get(k).is_some() {
                sd.insert(k, t.shape.clone(), t.values.clone()).unwrap();
            } else {
                assert!(
                    case.without_grad.iter().any(|p| p == k),
                    "{}: spectrans entry '{k}' is used by spectrans but missing here",
                    case.name
                );
            }
        }
        let n = &case.name;
        match self {
            Layer::Mixer(m) => Layer::Mixer(loaded(m, &sd, n)),
            Layer::Block(m) => Layer::Block(loaded(m, &sd, n)),
            Layer::Alternating(m) => Layer::Alternating(loaded(m, &sd, n)),
            Layer::Adaptive(m) => Layer::Adaptive(loaded(m, &sd, n)),
            Layer::Multiscale(m) => Layer::Multiscale(loaded(m, &sd, n)),
            Layer::Cascade(m) => Layer::Cascade(loaded(m, &sd, n)),
        }
    }
}

/// Cases where spectrans computes the wrong thing, with what is checked instead.
const SPECTRANS_DEFECTS: [&str; 1] = ["real_fourier_mixing"];

/// Cases whose result is ill-conditioned in float32, with the tolerance
/// factor over `assert_close`'s `1e-5`: spectrans' trigonometric ("gaussian")
/// features are signed, and in this case the normaliser of one query is 1.9e-3
/// (median 1.2; outputs reach 357 from inputs of order 1), which amplifies
/// float32 rounding: PyTorch's own float32 output is 0.042 from the float64
/// value (computed with numpy from the fixture's tensors), ours 0.056 from
/// PyTorch's. The positive features of `AttentionKernel::Softmax` and
/// `AttentionKernel::Gaussian` remove this defect.
///
/// `lst_dct`'s key-projection gradient sums terms that cancel: on a set with
/// B 3, N 24, H 12 (seed 11), PyTorch's float32 value of one entry was 1.35e-4
/// from the float64 one (same module and tensors in torch float64), ours
/// 3e-6, against a 1× tolerance of 5.4e-5.
const ILL_CONDITIONED: [(&str, f32); 2] =
    [("spectral_attention_gaussian", 100.0), ("lst_dct", 10.0)];

fn close(case: &str, what: &str, ours: &[f32], os: &[usize], reference: &[f32], rs: &[usize]) {
    let factor = ILL_CONDITIONED
        .iter()
        .find(|(c, _)| *c == case)
        .map_or(1.0, |(_, f)| *f);
    if factor == 1.0 {
        return assert_close(what, ours, os, reference, rs);
    }
    assert_eq!(os, rs, "{what}: shape");
    let scale = reference.iter().fold(1f32, |m, v| m.max(v.abs()));
    let worst = ours
        .iter()
        .zip(reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= factor * 1e-5 * scale,
        "{what}: max |ours - ref| = {worst}, tolerance {}",
        factor * 1e-5 * scale
    );
}

fn check_case(file: &SafetensorsFile, case: &Case, layer: &Layer, device: &Device) {
    let name = &case.name;
    let x: Tensor<3> = tensor::<3>(file, &format!("{name}.input"), device).require_grad();
    let y = layer.forward(x.clone());
    let (yv, ys) = tensor_to_vec(y.clone());
    let (rv, rs) = file.f32(&format!("{name}.output")).unwrap();
    close(name, &format!("{name} output"), &yv, &ys, &rv, &rs);

    let r: Tensor<3> = tensor(file, &format!("{name}.output_cotangent"), device);
    let grads = (y * r).sum().backward();
    let (gv, gs) = tensor_to_vec(x.grad(&grads).expect("input gradient"));
    let (rv, rs) = file.f32(&format!("{name}.grad.input")).unwrap();
    close(name, &format!("{name} grad.input"), &gv, &gs, &rv, &rs);

    let mut collect = GradCollect {
        grads: &grads,
        out: BTreeMap::new(),
    };
    layer.visit(&mut collect);
    let reference = compare_param_grads(file, name, &collect.out, "spectrans", |w, v, s, r, rs| {
        close(name, w, v, s, r, rs)
    });
    // Our parameters without a spectrans gradient are the unused ones: no
    // gradient here either (or exact zeros).
    for (p, g) in &collect.out {
        if reference.contains_key(p) {
            continue;
        }
        assert!(
            case.without_grad.contains(p),
            "{name}: our parameter '{p}' has no spectrans gradient"
        );
        if let Some((v, _)) = g {
            assert!(
                v.iter().all(|&g| g == 0.0),
                "{name}: '{p}' should get no gradient"
            );
        }
    }
}

/// Every case of the spectrans manifest as its own test (`cargo test -p
/// idx-flow-spectral spectrans::CASE`), but the cases where spectrans is wrong
/// ([`SPECTRANS_DEFECTS`], checked for the right behaviour in the suite).
fn main() {
    let file = std::sync::Arc::new(file());
    let trials = cases(&file)
        .into_iter()
        .filter(|case| !SPECTRANS_DEFECTS.contains(&case.name.as_str()))
        .map(|case| {
            let file = file.clone();
            trials::case(format!("spectrans::{}", case.name), move || {
                let device = Device::default().autodiff();
                let sd = case_state(&file, &case.name);
                let layer = Layer::build(&case, &device).load(&sd, &case);
                check_case(&file, &case, &layer, &device);
            })
        })
        .collect();
    trials::run(trials)
}
