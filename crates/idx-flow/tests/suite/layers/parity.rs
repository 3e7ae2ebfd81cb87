//! Every case of `layers.safetensors`: PyTorch parameters and buffers loaded by
//! name, forward in the recorded mode, then output, input gradient and every
//! parameter gradient of `sum(output * output_cotangent)` against idx_flow.
//!
//! Constructor arguments that the tensors cannot tell (activations, heads,
//! groups, pooling type) come from the case name, as `make_fixtures.py` sets them.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use burn::module::{Module, Param};
use burn::tensor::{Device, Gradients, Tensor};
use idx_flow::io::SafetensorsFile;
use idx_flow::layers::state_dict::{StateVisitor, TorchState, load_state_dict, tensor_to_vec};
use idx_flow::layers::*;

use super::{
    Case, assert_close, case_state, cases, fixture_graph, layers_file, names_under, shape_of,
    tensor,
};

/// Parameter gradients by PyTorch name.
struct GradCollect<'a> {
    grads: &'a Gradients,
    out: BTreeMap<String, Option<(Vec<f32>, Vec<usize>)>>,
}

impl StateVisitor for GradCollect<'_> {
    fn param<const D: usize>(&mut self, name: &str, param: &Param<Tensor<D>>) {
        let g = param.val().grad(self.grads).map(tensor_to_vec);
        self.out.insert(name.to_string(), g);
    }
    fn buffer<const D: usize>(&mut self, _: &str, _: &Tensor<D>) {}
    fn int_buffer(&mut self, _: &str, _: &[usize], _: &[i64]) {}
}

/// Loads the case's state into `module`, runs `forward` in the recorded mode and
/// compares output and gradients. `module` must live on an autodiff device.
pub fn run_case<M, const DI: usize, const DO: usize>(
    file: &SafetensorsFile,
    case: &Case,
    module: M,
    forward: impl Fn(&M, Tensor<DI>) -> Tensor<DO>,
) -> M
where
    M: TorchState + Module,
{
    let name = &case.name;
    let device = Device::default().autodiff();
    let module = load_state_dict(module, &case_state(file, name))
        .unwrap_or_else(|e| panic!("{name}: loading the PyTorch state: {e}"));
    let module = set_training(module, case.train);

    let x: Tensor<DI> = tensor(file, &format!("{name}.input"), &device).require_grad();
    let y = forward(&module, x.clone());
    let (yv, ys) = tensor_to_vec(y.clone());
    let (rv, rs) = file.f32(&format!("{name}.output")).unwrap();
    assert_close(&format!("{name} output"), &yv, &ys, &rv, &rs);

    let r: Tensor<DO> = tensor(file, &format!("{name}.output_cotangent"), &device);
    let grads = (y * r).sum().backward();
    let gx = x
        .grad(&grads)
        .unwrap_or_else(|| panic!("{name}: no input gradient"));
    let (gv, gs) = tensor_to_vec(gx);
    let (rv, rs) = file.f32(&format!("{name}.grad.input")).unwrap();
    assert_close(&format!("{name} grad.input"), &gv, &gs, &rv, &rs);

    let mut collect = GradCollect {
        grads: &grads,
        out: BTreeMap::new(),
    };
    module.visit_state("", &mut collect);
    let reference = names_under(file, &format!("{name}.grad.param."));
    for (p, full) in &reference {
        let ours = collect.out.get(p).unwrap_or_else(|| {
            panic!("{name}: PyTorch has a gradient for '{p}', our module has no such parameter")
        });
        let (v, s) = ours
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no gradient reached '{p}'"));
        let (rv, rs) = file.f32(full).unwrap();
        assert_close(&format!("{name} grad.param.{p}"), v, s, &rv, &rs);
    }
    for p in collect.out.keys() {
        assert!(
            reference.contains_key(p),
            "{name}: our parameter '{p}' has no PyTorch gradient to compare with"
        );
    }
    module
}

/// Input and output sizes of a case.
fn sizes(file: &SafetensorsFile, name: &str) -> (Vec<usize>, Vec<usize>) {
    (
        file.shape(&format!("{name}.input")).unwrap(),
        file.shape(&format!("{name}.output")).unwrap(),
    )
}

fn act(s: &str) -> Activation {
    s.parse().unwrap()
}

/// Runs one case; panics on any difference.
pub fn check_case(file: &SafetensorsFile, case: &Case) {
    let device = Device::default().autodiff();
    let name = case.name.as_str();
    let sd = case_state(file, name);
    let (xs, ys) = sizes(file, name);
    let no_mapping = || -> ! {
        panic!(
            "case {name} ({}): no constructor arguments known for this case name",
            case.class
        )
    };
    match case.class.as_str() {
        "SpatialConv" | "SpatialTransposeConv" => {
            let ks = shape_of(&sd, "kernel");
            let mut graph = fixture_graph(&sd, "", xs[1]);
            let weighted = sd.get("kernel_weights").is_some();
            if weighted {
                // The buffer is what idx_flow used; the layer reads it from the graph.
                let w = sd
                    .get("kernel_weights")
                    .unwrap()
                    .f32("kernel_weights")
                    .unwrap();
                graph = graph
                    .with_custom_weights(w.iter().map(|&v| v as f64).collect())
                    .unwrap();
            }
            let bias = sd.get("bias_param").is_some();
            if case.class == "SpatialConv" {
                let m = SpatialConvConfig::new(ks[1], ks[2])
                    .with_bias(bias)
                    .with_use_graph_weights(weighted)
                    .init(&graph, &device)
                    .unwrap();
                run_case(file, case, m, |m, x: Tensor<3>| m.forward(x));
            } else {
                let m = SpatialTransposeConvConfig::new(ks[1], ks[2])
                    .with_bias(bias)
                    .with_use_graph_weights(weighted)
                    .init(&graph, &device)
                    .unwrap();
                run_case(file, case, m, |m, x: Tensor<3>| m.forward(x));
            }
        }
        "SpatialUpsampling" => {
            let kernel = match name.rsplit('_').next() {
                Some("linear") => UpsamplingKernel::Linear,
                Some("idw") => UpsamplingKernel::Idw,
                Some("gaussian") => UpsamplingKernel::Gaussian,
                _ => no_mapping(),
            };
            let graph = fixture_graph(&sd, "", xs[1]);
            let m = SpatialUpsamplingConfig::new()
                .with_interpolation(kernel)
                .init(&graph, &device)
                .unwrap();
            // Our weights, computed from the distances, before the state replaces them.
            let (ours, os) = tensor_to_vec(m.interpolation_weights.clone());
            let t = sd.get("interpolation_weights").unwrap();
            assert_close(
                &format!("{name} interpolation_weights"),
                &ours,
                &os,
                t.f32("interpolation_weights").unwrap(),
                &t.shape,
            );
            run_case(file, case, m, |m, x: Tensor<3>| m.forward(x));
        }
        _ => {
            let _ = (ys, act);
            no_mapping()
        }
    }
}

#[test]
fn every_fixture_case_matches_idx_flow() {
    let file = layers_file();
    let cases = cases(&file);
    let mut failures = Vec::new();
    for case in &cases {
        let r = catch_unwind(AssertUnwindSafe(|| check_case(&file, case)));
        if let Err(e) = r {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{}: {msg}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from idx_flow:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
