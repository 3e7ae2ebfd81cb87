//! Every case of `layers.safetensors`: PyTorch parameters and buffers loaded by
//! name, forward in the recorded mode, then output, input gradient and every
//! parameter gradient of `sum(output * output_cotangent)` against idx_flow.
//!
//! Constructor arguments that the tensors cannot tell (activations, heads,
//! groups, pooling type) come from the case name, as `make_fixtures.py` sets them.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use idx_flow_core::state_dict::{
    StateDict, StateValues, TorchState, load_state_dict, state_dict, tensor_to_vec,
};
use idx_flow_healpix::io::SafetensorsFile;
use idx_flow_nn::*;

use crate::common::{Case, assert_close, case_state, grid, tensor};
use idx_flow_healpix::geometry::angular_distance;
use idx_flow_healpix::graphs::ConnectionGraph;
use idx_flow_testing::compare::{GradCollect, names_under, shape_of};

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
    run_case_exact(file, case, module, forward, &BTreeMap::new())
}

/// [`run_case`] where some gradients also have an exact (float64) value, keyed
/// `grad.input` or `grad.param.{p}`; see [`compare`].
pub fn run_case_exact<M, const DI: usize, const DO: usize>(
    file: &SafetensorsFile,
    case: &Case,
    module: M,
    forward: impl Fn(&M, Tensor<DI>) -> Tensor<DO>,
    exact: &BTreeMap<String, Vec<f64>>,
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
    compare(
        &format!("{name} grad.input"),
        &gv,
        &gs,
        &rv,
        &rs,
        exact.get("grad.input"),
    );

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
        let what = format!("{name} grad.param.{p}");
        compare(&what, v, s, &rv, &rs, exact.get(&format!("grad.param.{p}")));
    }
    for p in collect.out.keys() {
        assert!(
            reference.contains_key(p),
            "{name}: our parameter '{p}' has no PyTorch gradient to compare with"
        );
    }
    if case.train {
        check_running_statistics(file, case, &module, &forward)
    } else {
        module
    }
}

/// Batch norm statistics in training: the stored buffers are those after the
/// recorded forwards (`num_batches_tracked` of them, all on the case's input,
/// from PyTorch's initial zeros/ones). Starting from those initial values, the
/// same number of our forwards must reproduce them.
fn check_running_statistics<M, const DI: usize, const DO: usize>(
    file: &SafetensorsFile,
    case: &Case,
    module: &M,
    forward: &impl Fn(&M, Tensor<DI>) -> Tensor<DO>,
) -> M
where
    M: TorchState + Module,
{
    let name = &case.name;
    let stored = case_state(file, name);
    let stats: Vec<String> = stored
        .keys()
        .into_iter()
        .filter(|k| k.ends_with("running_mean"))
        .map(|k| k.trim_end_matches("running_mean").to_string())
        .collect();
    if stats.is_empty() {
        return module.clone();
    }
    let mut fresh = StateDict::new();
    let mut runs = None;
    for (k, t) in stored.iter() {
        let values = match &t.values {
            StateValues::F32(v) if k.ends_with("running_mean") => {
                StateValues::F32(vec![0.0; v.len()])
            }
            StateValues::F32(v) if k.ends_with("running_var") => {
                StateValues::F32(vec![1.0; v.len()])
            }
            StateValues::I64(v) if k.ends_with("num_batches_tracked") => {
                assert!(
                    runs.is_none_or(|n| n == v[0]),
                    "{name}: batch norms saw different numbers of batches"
                );
                runs = Some(v[0]);
                StateValues::I64(vec![0])
            }
            other => other.clone(),
        };
        fresh.insert(k, t.shape.clone(), values).unwrap();
    }
    let runs = runs.unwrap_or_else(|| panic!("{name}: no num_batches_tracked"));
    let device = Device::default().autodiff();
    let m = load_state_dict(module.clone(), &fresh).unwrap();
    let x: Tensor<DI> = tensor(file, &format!("{name}.input"), &device);
    for _ in 0..runs {
        let _ = forward(&m, x.clone());
    }
    let ours = state_dict(&m).unwrap();
    for prefix in &stats {
        for stat in ["running_mean", "running_var"] {
            let k = format!("{prefix}{stat}");
            let (a, b) = (ours.get(&k).unwrap(), stored.get(&k).unwrap());
            assert_close(
                &format!("{name} {k} after {runs} forwards"),
                a.f32(&k).unwrap(),
                &a.shape,
                b.f32(&k).unwrap(),
                &b.shape,
            );
        }
        let k = format!("{prefix}num_batches_tracked");
        assert_eq!(ours.get(&k).unwrap().i64(&k).unwrap(), [runs], "{name} {k}");
    }
    m
}

/// The fixture criterion `max |ours − ref| ≤ 1e-5·max(1, max |ref|)`. Where a
/// tensor also has an exact value (ill-conditioned layer norm rows, gradients
/// that are zero by construction and only rounding noise in both), PyTorch's
/// own float32 rounding can exceed that tolerance; then ours must instead be
/// within `max(tolerance, 2·max |ref − exact|)` of the exact value: as close to
/// the truth as the tolerance, or no further than twice PyTorch's own error.
fn compare(
    what: &str,
    ours: &[f32],
    os: &[usize],
    reference: &[f32],
    rs: &[usize],
    exact: Option<&Vec<f64>>,
) {
    let Some(exact) = exact else {
        return assert_close(what, ours, os, reference, rs);
    };
    assert_eq!(os, rs, "{what}: shape");
    assert_eq!(exact.len(), reference.len(), "{what}: exact reference size");
    let tol = 1e-5 * reference.iter().fold(1f64, |m, v| m.max(v.abs() as f64));
    let dist = |a: &[f32]| {
        a.iter()
            .zip(exact)
            .fold(0f64, |m, (x, e)| m.max((*x as f64 - e).abs()))
    };
    let (d_ours, d_ref) = (dist(ours), dist(reference));
    let d_pair = ours
        .iter()
        .zip(reference)
        .fold(0f64, |m, (a, b)| m.max((a - b).abs() as f64));
    if d_pair <= tol {
        return;
    }
    assert!(
        d_ours <= tol.max(2.0 * d_ref),
        "{what}: max |ours - ref| = {d_pair} > {tol}; distance to the exact value: ours {d_ours}, PyTorch {d_ref}"
    );
}

/// Exact (float64) gradients of `sum(LayerNorm(x) * r)` over the last axis:
/// `(input, weight, bias)`.
fn layer_norm_grads_exact(
    x: &[f32],
    r: &[f32],
    w: &[f32],
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let c = w.len();
    let n = c as f64;
    let mut gx = Vec::with_capacity(x.len());
    let (mut gw, mut gb) = (vec![0f64; c], vec![0f64; c]);
    for (xr, rr) in x.chunks(c).zip(r.chunks(c)) {
        let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = xr.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let rstd = 1.0 / (var + eps).sqrt();
        let xh: Vec<f64> = xr.iter().map(|&v| (v as f64 - mean) * rstd).collect();
        let g: Vec<f64> = rr
            .iter()
            .zip(w)
            .map(|(&a, &b)| a as f64 * b as f64)
            .collect();
        let mg = g.iter().sum::<f64>() / n;
        let mgx = g.iter().zip(&xh).map(|(a, b)| a * b).sum::<f64>() / n;
        gx.extend((0..c).map(|j| rstd * (g[j] - mg - xh[j] * mgx)));
        for j in 0..c {
            gw[j] += rr[j] as f64 * xh[j];
            gb[j] += rr[j] as f64;
        }
    }
    (gx, gw, gb)
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
            // Rows whose raw linear weights are all (nearly) 0 (k = 1 at the largest
            // distance) are left out: idx_flow divides them by (sum + 1e-10), which
            // turns distance rounding (BallTree's vs ours) into O(1e-5) differences.
            let (ours, os) = tensor_to_vec(m.interpolation_weights.clone());
            let t = sd.get("interpolation_weights").unwrap();
            let theirs = t.f32("interpolation_weights").unwrap();
            let k = graph.k();
            let d = graph.distances_km();
            let radius = d.iter().fold(0f64, |a, &b| a.max(b));
            let keep: Vec<usize> = (0..graph.n_out())
                .filter(|&row| {
                    kernel != UpsamplingKernel::Linear
                        || d[row * k..(row + 1) * k]
                            .iter()
                            .map(|&x| (1.0 - x / radius).max(0.0))
                            .sum::<f64>()
                            > 1e-6
                })
                .collect();
            let pick = |v: &[f32]| -> Vec<f32> {
                keep.iter()
                    .flat_map(|&r| v[r * k..(r + 1) * k].to_vec())
                    .collect()
            };
            let (a, b) = (pick(&ours), pick(theirs));
            assert!(
                keep.len() * 2 >= graph.n_out(),
                "{name}: too few well-conditioned rows"
            );
            assert_eq!(os, t.shape, "{name} interpolation_weights shape");
            assert_close(
                &format!("{name} interpolation_weights"),
                &a,
                &[a.len()],
                &b,
                &[b.len()],
            );
            run_case(file, case, m, |m, x: Tensor<3>| m.forward(x));
        }
        "SpatialMLP" | "GlobalMLP" => {
            // (activations, residual) as make_fixtures.py builds each case.
            let (acts, residual) = match name {
                "spatial_mlp" => (vec![act("gelu"), act("linear")], false),
                "spatial_mlp_bn_residual" => (vec![act("selu"), act("tanh")], true),
                "global_mlp" => (vec![act("swish"), act("linear")], true),
                "global_mlp_bn_eval" => (vec![act("mish"), act("elu")], false),
                _ => no_mapping(),
            };
            let hidden: Vec<usize> = (0..acts.len())
                .map(|i| shape_of(&sd, &format!("mlp_layers.{i}.weight"))[0])
                .collect();
            let bn = sd.get("bn_layers.0.weight").is_some();
            let c = xs[2];
            // A bias feeding a batch norm in training has gradient exactly 0
            // (the norm removes any shift): only rounding noise in both.
            let mut exact = BTreeMap::new();
            if bn && case.train {
                for (i, &h) in hidden.iter().enumerate() {
                    exact.insert(format!("grad.param.mlp_layers.{i}.bias"), vec![0.0; h]);
                }
            }
            if case.class == "SpatialMLP" {
                let graph = fixture_graph(&sd, "", xs[1]);
                let m = SpatialMlpConfig::new(c)
                    .with_hidden_units(hidden)
                    .with_activations(acts)
                    .with_use_batch_norm(bn)
                    .with_residual(residual)
                    .init(&graph, &device)
                    .unwrap();
                run_case_exact(file, case, m, |m, x: Tensor<3>| m.forward(x), &exact);
            } else {
                let m = GlobalMlpConfig::new(c)
                    .with_hidden_units(hidden)
                    .with_activations(acts)
                    .with_use_batch_norm(bn)
                    .with_residual(residual)
                    .init(&device)
                    .unwrap();
                run_case_exact(file, case, m, |m, x: Tensor<3>| m.forward(x), &exact);
            }
        }
        "SpatialBatchNorm" => {
            let m = SpatialBatchNormConfig::new(xs[2]).init(&device).unwrap();
            run_case(file, case, m, |m, x: Tensor<3>| m.forward(x));
        }
        "SpatialLayerNorm" => {
            let m = SpatialLayerNormConfig::new(xs[2]).init(&device).unwrap();
            let (x, _) = file.f32(&format!("{name}.input")).unwrap();
            let (r, _) = file.f32(&format!("{name}.output_cotangent")).unwrap();
            let w = sd.get("ln.weight").unwrap().f32("ln.weight").unwrap();
            let (gx, gw, gb) = layer_norm_grads_exact(&x, &r, w, m.ln.eps);
            let exact = BTreeMap::from([
                ("grad.input".to_string(), gx),
                ("grad.param.ln.weight".to_string(), gw),
                ("grad.param.ln.bias".to_string(), gb),
            ]);
            run_case_exact(file, case, m, |m, x: Tensor<3>| m.forward(x), &exact);
        }
        "SpatialInstanceNorm" => {
            let affine = sd.get("instance_norm.weight").is_some();
            let m = SpatialInstanceNormConfig::new(xs[2])
                .with_affine(affine)
                .init(&device)
                .unwrap();
            run_case(file, case, m, |m, x: Tensor<3>| m.forward(x));
        }
        "SpatialGroupNorm" => {
            let groups = match name {
                "group_norm" => 3,
                _ => no_mapping(),
            };
            let m = SpatialGroupNormConfig::new(groups, xs[2])
                .init(&device)
                .unwrap();
            run_case(file, case, m, |m, x: Tensor<3>| m.forward(x));
        }
        "SpatialSelfAttention" => {
            let heads = match name {
                "self_attention" => 2,
                _ => no_mapping(),
            };
            // Both computations against the same reference.
            for backend in [AttnBackend::Manual, AttnBackend::Fused, AttnBackend::Auto] {
                let m = SpatialSelfAttentionConfig::new(xs[2], heads)
                    .with_attn_backend(backend)
                    .init(&device)
                    .unwrap();
                run_case(file, case, m, |m, x: Tensor<3>| m.forward(x));
            }
        }
        "SpatialPatchEmbedding" => {
            let graph = fixture_graph(&sd, "", xs[1]);
            let m = SpatialPatchEmbeddingConfig::new(xs[2])
                .with_embed_dim(ys[2])
                .init(&graph, &device)
                .unwrap();
            run_case(file, case, m, |m, x: Tensor<3>| m.forward(x));
        }
        "SpatialTransformerBlock" => {
            let (heads, activation) = match name {
                "transformer_block" => (2, act("gelu")),
                _ => no_mapping(),
            };
            let e = xs[2];
            let hidden = shape_of(&sd, "ffn.0.weight")[0];
            for backend in [AttnBackend::Manual, AttnBackend::Fused] {
                let m = SpatialTransformerBlockConfig::new(e, heads)
                    .with_mlp_ratio(hidden as f64 / e as f64)
                    .with_activation(activation)
                    .with_attn_backend(backend)
                    .init(&device)
                    .unwrap();
                run_case(file, case, m, |m, x: Tensor<3>| m.forward(x));
            }
        }
        "SpatialViT" => {
            let heads = match name {
                "vit" => 2,
                _ => no_mapping(),
            };
            let graph = fixture_graph(&sd, "patch_embed.", xs[1]);
            let e = shape_of(&sd, "pos_embed")[2];
            let depth = (0..)
                .take_while(|i| sd.get(&format!("blocks.{i}.norm1.weight")).is_some())
                .count();
            let hidden = shape_of(&sd, "blocks.0.ffn.0.weight")[0];
            for backend in [AttnBackend::Manual, AttnBackend::Fused] {
                let m = SpatialVitConfig::new(xs[2])
                    .with_embed_dim(e)
                    .with_depth(depth)
                    .with_num_heads(heads)
                    .with_mlp_ratio(hidden as f64 / e as f64)
                    .with_output_dim(Some(ys[2]))
                    .with_attn_backend(backend)
                    .init(&graph, &device)
                    .unwrap();
                run_case(file, case, m, |m, x: Tensor<3>| m.forward(x));
            }
        }
        "SpatialPooling" | "Squeeze" => {
            let pool = match name.rsplit('_').next() {
                Some("mean") => PoolType::Mean,
                Some("max") => PoolType::Max,
                Some("sum") => PoolType::Sum,
                _ => no_mapping(),
            };
            if case.class == "SpatialPooling" {
                let graph = fixture_graph(&sd, "", xs[1]);
                let m = SpatialPoolingConfig::new()
                    .with_pool_type(pool)
                    .init(&graph, &device)
                    .unwrap();
                run_case(file, case, m, |m, x: Tensor<3>| m.forward(x));
            } else {
                let m = SqueezeConfig::new().with_reduction(pool).init();
                run_case(file, case, m, |m, x: Tensor<3>| m.forward(x));
            }
        }
        "Unsqueeze" => {
            let m = UnsqueezeConfig::new(ys[1]).init().unwrap();
            run_case(file, case, m, |m, x: Tensor<2>| m.forward(x));
        }
        _ => no_mapping(),
    }
}

/// The graph of a case's `connection_indices` buffer (BallTree's tie order),
/// with its true distances, between grids of `n_in` and `n_out` pixels.
pub fn fixture_graph(sd: &StateDict, prefix: &str, n_in: usize) -> ConnectionGraph {
    let key = format!("{prefix}connection_indices");
    let t = sd.get(&key).unwrap_or_else(|| panic!("no {key}"));
    let (n_out, k) = (t.shape[0], t.shape[1]);
    let StateValues::I64(idx) = &t.values else {
        panic!("{key} is not int64")
    };
    let (gi, go) = (grid(n_in), grid(n_out));
    let (ci, co) = (gi.centers(), go.centers());
    let dist = idx
        .iter()
        .enumerate()
        .map(|(e, &i)| angular_distance(co[e / k], ci[i as usize]))
        .collect();
    ConnectionGraph::from_parts(gi, go, k, idx.clone(), dist, None).unwrap()
}
