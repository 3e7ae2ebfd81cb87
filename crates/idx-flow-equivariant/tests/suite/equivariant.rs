//! The equivariant layers (`idx_flow_equivariant`) against ginjax 0.1.8.

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor, TensorData};
use idx_flow_core::state_dict::tensor_to_vec;
use idx_flow_equivariant::*;
use idx_flow_healpix::io::SafetensorsFile;
use serde_json::Value;

use idx_flow_testing::compare::assert_close;
use idx_flow_testing::fixtures;

fn file() -> SafetensorsFile {
    fixtures::open("ginjax.safetensors")
}

fn manifest() -> Value {
    fixtures::manifest("ginjax_manifest.json")
}

#[test]
fn group_operators_match_ginjax() {
    let file = file();
    for d in [2usize, 3] {
        let (v, s) = file.f32(&format!("group.D{d}.operators")).unwrap();
        let ours: Vec<f32> = hyperoctahedral_group(d)
            .unwrap()
            .iter()
            .flat_map(|g| g.matrix().into_iter().map(|x| x as f32))
            .collect();
        assert_eq!(s, vec![ours.len() / (d * d), d, d]);
        assert_eq!(ours, v, "B_{d} operators");
    }
}

#[test]
fn filter_bases_match_ginjax() {
    let file = file();
    let m = manifest();
    let counts = m["filter_counts"].as_object().expect("filter_counts");
    assert!(!counts.is_empty());
    for (name, n) in counts {
        // M{M}.k{k}.p{p}.D{D}
        let parts: Vec<usize> = name.split('.').map(|p| p[1..].parse().unwrap()).collect();
        let (size, k, p, d) = (parts[0], parts[1], parts[2], parts[3]);
        let ours = invariant_filters(size, TensorKey::new(k, p), d).unwrap();
        assert_eq!(ours.len() as u64, n.as_u64().unwrap(), "{name}: count");
        let key = format!("filters.{name}");
        if ours.is_empty() {
            assert!(!file.contains(&key), "{key}: ginjax has filters");
            continue;
        }
        let (v, s) = file.f32(&key).unwrap();
        assert_close(&key, ours.values(), &ours.shape(), &v, &s);
    }
}

/// A multi-image of one block from pixel-layout values `[B, C, *N, *(D,)*k]`.
fn image<const R: usize>(
    key: TensorKey,
    values: &[f32],
    shape: &[usize],
    torus: bool,
    device: &Device,
) -> MultiImage<R> {
    let mut x = MultiImage::<R>::new(vec![torus; R - 2]).unwrap();
    x.insert_pixel_layout(key, values, shape, device).unwrap();
    x
}

fn values<const R: usize>(t: Tensor<R>) -> Vec<f32> {
    t.into_data().convert::<f32>().iter::<f32>().collect()
}

/// ginjax's filters are invariant under our action of every group element,
/// which pins the action's conventions (centre, direction, components).
#[test]
fn fixture_filters_are_invariant_under_the_action() {
    let file = file();
    let device = Device::default();
    let names = fixtures::prefixes(&file, "");
    let mut checked = 0;
    for name in names.iter().filter(|n| n.starts_with("filters.")) {
        let (v, s) = file.f32(name).unwrap();
        let d: usize = name.rsplit(".D").next().unwrap().parse().unwrap();
        let k = s.len() - 1 - d;
        let p: usize = name.split(".p").nth(1).unwrap()[..1].parse().unwrap();
        let key = TensorKey::new(k, p);
        let mut shape = vec![s[0], 1];
        shape.extend_from_slice(&s[1..]);
        for g in hyperoctahedral_group(d).unwrap() {
            let (a, b) = match d {
                2 => {
                    let x = image::<4>(key, &v, &shape, false, &device);
                    let y = g.apply(&x).unwrap();
                    (
                        values(x.get(key).unwrap().clone()),
                        values(y.get(key).unwrap().clone()),
                    )
                }
                _ => {
                    let x = image::<5>(key, &v, &shape, false, &device);
                    let y = g.apply(&x).unwrap();
                    (
                        values(x.get(key).unwrap().clone()),
                        values(y.get(key).unwrap().clone()),
                    )
                }
            };
            let sh = [a.len()];
            assert_close(&format!("{name} under {:?}", g.matrix()), &b, &sh, &a, &sh);
        }
        checked += 1;
    }
    assert!(checked > 0, "no filters in the fixture");
}

// ---- equivariance ---------------------------------------------------------------------

/// A random multi-image of `sig` on the grid `[n; D]`, batch 2.
fn random_image<const R: usize>(
    sig: &[(TensorKey, usize)],
    n: usize,
    torus: bool,
    device: &Device,
) -> MultiImage<R> {
    // A fixed draw, not the device's generator: tests run in parallel and
    // share it, and some checks are sensitive to the draw (see
    // `check_model_equivariant`), so every run must see the same data.
    let mut rng = idx_flow_testing::rng::Rng(0x5eed + (n * 31 + sig.len()) as u64);
    let mut x = MultiImage::<R>::new(vec![torus; R - 2]).unwrap();
    for &(k, c) in sig {
        let mut dims = [n; R];
        dims[0] = 2;
        dims[1] = c * k.components(R - 2);
        let values = rng.normal_vec(dims.iter().product());
        x.insert(k, Tensor::from_data(TensorData::new(values, dims), device))
            .unwrap();
    }
    x
}

fn assert_images_close<const R: usize>(what: &str, a: &MultiImage<R>, b: &MultiImage<R>) {
    assert_eq!(a.keys(), b.keys(), "{what}: keys");
    assert_eq!(a.is_torus(), b.is_torus(), "{what}: torus flags");
    for (k, t) in a.iter() {
        let (v, s) = tensor_to_vec(t.clone());
        let (w, sw) = tensor_to_vec(b.get(k).unwrap().clone());
        assert_close(&format!("{what} {k}"), &v, &s, &w, &sw);
    }
}

/// `f(g·x) = g·f(x)` for every `g` of `B_D`.
fn check_equivariant<const R: usize>(
    what: &str,
    x: &MultiImage<R>,
    f: impl Fn(MultiImage<R>) -> MultiImage<R>,
) {
    let y = f(x.clone());
    let group = hyperoctahedral_group(R - 2).unwrap();
    assert_eq!(group.len(), if R == 4 { 8 } else { 48 });
    for g in &group {
        let lhs = f(g.apply(x).unwrap());
        let rhs = g.apply(&y).unwrap();
        assert_images_close(&format!("{what} under {:?}", g.matrix()), &lhs, &rhs);
    }
}

fn all_keys(c: usize, max_k: usize) -> Signature {
    (0..=max_k)
        .flat_map(|k| [TensorKey::new(k, 0), TensorKey::new(k, 1)])
        .map(|k| (k, c))
        .collect()
}

/// Parameters drawn at random, so that no zero bias or unit scale hides a
/// broken symmetry.
fn randomized_norm(mut n: EquivariantGroupNorm, device: &Device) -> EquivariantGroupNorm {
    use burn::module::Param;
    let rnd = |c: usize| {
        Param::from_tensor(Tensor::<1>::random(
            [c],
            burn::tensor::Distribution::Normal(0.5, 0.5),
            device,
        ))
    };
    for (i, (_, c)) in n.keys().to_vec().iter().enumerate() {
        n.scales[i] = rnd(*c);
        if n.biases[i].is_some() {
            n.biases[i] = Some(rnd(*c));
        }
    }
    n
}

#[test]
fn conv_contract_is_equivariant_in_2d() {
    let device = Device::default();
    let sig = all_keys(1, 2);
    for (torus, bias) in [
        (true, BiasMode::Auto),
        (false, BiasMode::Mean),
        (true, BiasMode::Scalar),
    ] {
        let conv = ConvContractConfig::new(2, sig.clone(), sig.clone())
            .with_bias(bias)
            .init(&device)
            .unwrap();
        let x = random_image::<4>(&sig, 7, torus, &device);
        check_equivariant(&format!("ConvContract torus={torus} {bias:?}"), &x, |x| {
            conv.forward(x)
        });
    }
    // Stride 2 on an odd grid, dilation 2, and a 5×5 filter.
    let small: Signature = vec![(TensorKey::SCALAR, 2), (TensorKey::VECTOR, 1)];
    for (m, stride, dilation) in [(3, 2, 1), (3, 1, 2), (5, 1, 1)] {
        let conv = ConvContractConfig::new(2, small.clone(), small.clone())
            .with_kernel_size(m)
            .with_stride(vec![stride])
            .with_dilation(vec![dilation])
            .init(&device)
            .unwrap();
        let x = random_image::<4>(&small, 9, false, &device);
        check_equivariant(
            &format!("ConvContract M={m} stride={stride} dilation={dilation}"),
            &x,
            |x| conv.forward(x),
        );
    }
}

#[test]
fn transposed_conv_contract_doubles_the_grid_equivariantly() {
    let device = Device::default();
    let sig: Signature = vec![(TensorKey::SCALAR, 2), (TensorKey::VECTOR, 1)];
    let up = ConvContractConfig::new(2, sig.clone(), sig.clone())
        .with_kernel_size(2)
        .with_padding(Padding::Explicit(vec![(1, 1)]))
        .with_input_dilation(vec![2])
        .init(&device)
        .unwrap();
    let x = random_image::<4>(&sig, 4, true, &device);
    let y = up.forward(x.clone());
    assert_eq!(y.spatial_dims(), Some(vec![8, 8]));
    check_equivariant("transposed ConvContract", &x, |x| up.forward(x));
}

#[test]
fn conv_contract_is_equivariant_in_3d() {
    let device = Device::default();
    let sig = all_keys(1, 1);
    let conv = ConvContractConfig::new(3, sig.clone(), sig.clone())
        .init(&device)
        .unwrap();
    for torus in [true, false] {
        let x = random_image::<5>(&sig, 4, torus, &device);
        check_equivariant(&format!("3-D ConvContract torus={torus}"), &x, |x| {
            conv.forward(x)
        });
    }
}

#[test]
fn norms_nonlinearities_and_pooling_are_equivariant() {
    let device = Device::default();
    fn run<const R: usize>(device: &Device) {
        let d = R - 2;
        let sig = all_keys(2, 2);
        let x = random_image::<R>(&sig, 4, true, device);
        for groups in [1, 2] {
            let norm = EquivariantGroupNormConfig::new(d, sig.clone(), groups)
                .init(device)
                .unwrap();
            let norm = randomized_norm(norm, device);
            check_equivariant(
                &format!("{d}-D EquivariantGroupNorm groups={groups}"),
                &x,
                |x| norm.forward(x),
            );
        }
        let vn = VectorNeuronNonlinearConfig::new(d, sig.clone())
            .init(device)
            .unwrap();
        check_equivariant(&format!("{d}-D VectorNeuronNonlinear"), &x, |x| {
            vn.forward(x)
        });
        let pool = MaxNormPool::new(2);
        check_equivariant(&format!("{d}-D MaxNormPool"), &x, |x| pool.forward(x));
        let act = PerKey::new(
            BlockActivation::new(ScalarActivation::Gelu),
            vec![TensorKey::SCALAR],
        );
        check_equivariant(&format!("{d}-D PerKey(gelu)"), &x, |x| act.forward(x));
    }
    run::<4>(&device);
    run::<5>(&device);
}

/// Our filters are invariant for sizes the fixture does not hold (even ones
/// included), and the convolution with them is equivariant there.
#[test]
fn filters_of_other_sizes_are_invariant() {
    let device = Device::default();
    for (d, m, max_k) in [(2usize, 2usize, 2usize), (2, 4, 2), (2, 5, 1), (3, 2, 2)] {
        for k in 0..=max_k {
            for p in 0..2 {
                let key = TensorKey::new(k, p);
                let f = invariant_filters(m, key, d).unwrap();
                if f.is_empty() {
                    continue;
                }
                let mut shape = vec![f.len(), 1];
                shape.extend_from_slice(&f.shape()[1..]);
                for g in hyperoctahedral_group(d).unwrap() {
                    let (a, b) = if d == 2 {
                        let x = image::<4>(key, f.values(), &shape, false, &device);
                        let y = g.apply(&x).unwrap();
                        (
                            values(x.get(key).unwrap().clone()),
                            values(y.get(key).unwrap().clone()),
                        )
                    } else {
                        let x = image::<5>(key, f.values(), &shape, false, &device);
                        let y = g.apply(&x).unwrap();
                        (
                            values(x.get(key).unwrap().clone()),
                            values(y.get(key).unwrap().clone()),
                        )
                    };
                    let sh = [a.len()];
                    assert_close(&format!("M={m} D={d} {key}"), &b, &sh, &a, &sh);
                }
            }
        }
    }
}

// ---- where ginjax is defective -----------------------------------------------------------

/// ginjax's `use_bias="scalar"` drops every non-scalar output; ours keeps them
/// without a bias, and biases the scalars plainly.
#[test]
fn scalar_bias_mode_keeps_non_scalar_outputs() {
    let device = Device::default();
    let quirk = &manifest()["quirks"]["conv_contract_use_bias_scalar_output_keys"];
    assert_eq!(
        quirk.as_array().map(|a| a.len()),
        Some(1),
        "ginjax's defect is recorded"
    );
    let sig: Signature = vec![(TensorKey::SCALAR, 2), (TensorKey::VECTOR, 2)];
    let with = ConvContractConfig::new(2, sig.clone(), sig.clone())
        .with_bias(BiasMode::Scalar)
        .init(&device)
        .unwrap();
    let mut without = ConvContractConfig::new(2, sig.clone(), sig.clone())
        .with_bias(BiasMode::None)
        .init(&device)
        .unwrap();
    without.weights = with.weights.clone();
    assert_eq!(with.bias_keys(), &[TensorKey::SCALAR]);
    let x = random_image::<4>(&sig, 6, true, &device);
    let (a, b) = (with.forward(x.clone()), without.forward(x));
    assert_eq!(a.keys(), vec![TensorKey::SCALAR, TensorKey::VECTOR]);
    let (va, sa) = tensor_to_vec(a.get(TensorKey::VECTOR).unwrap().clone());
    let (vb, sb) = tensor_to_vec(b.get(TensorKey::VECTOR).unwrap().clone());
    assert_close("unbiased vectors", &va, &sa, &vb, &sb);
    let bias = with.biases[0].val().reshape([1, 2, 1, 1]);
    let (va, sa) = tensor_to_vec(a.get(TensorKey::SCALAR).unwrap().clone());
    let (vb, sb) = tensor_to_vec(b.get(TensorKey::SCALAR).unwrap().clone() + bias);
    assert_close("plainly biased scalars", &va, &sa, &vb, &sb);
}

/// ginjax's norm gives pseudoscalars an affine bias, which a reflection does
/// not flip; ours has none there (equivariance is checked above).
#[test]
fn pseudoscalar_norm_has_no_bias() {
    let device = Device::default();
    let sig: Signature = vec![(TensorKey::SCALAR, 2), (TensorKey::PSEUDOSCALAR, 2)];
    let norm = EquivariantLayerNormConfig::new(2, sig)
        .init(&device)
        .unwrap();
    let sd = idx_flow_core::state_dict::state_dict(&norm).unwrap();
    let names: BTreeMap<&str, ()> = sd.keys().into_iter().map(|k| (k, ())).collect();
    assert!(names.contains_key("vanilla_norm.k0p0.bias"));
    assert!(names.contains_key("vanilla_norm.k0p1.weight"));
    assert!(!names.contains_key("vanilla_norm.k0p1.bias"));
}

#[test]
fn pairs_without_filters_contribute_nothing() {
    let device = Device::default();
    // No 3×3 invariant filter maps scalars to pseudoscalars in 2-D.
    let conv = ConvContractConfig::new(
        2,
        vec![(TensorKey::SCALAR, 1)],
        vec![(TensorKey::PSEUDOSCALAR, 2)],
    )
    .init(&device)
    .unwrap();
    assert!(conv.pairs().is_empty());
    let x = random_image::<4>(&[(TensorKey::SCALAR, 1)], 5, true, &device);
    let y = conv.forward(x);
    let (v, _) = tensor_to_vec(y.get(TensorKey::PSEUDOSCALAR).unwrap().clone());
    assert!(v.iter().all(|&x| x == 0.0));
}

#[test]
fn bad_arguments_and_inputs_are_errors() {
    let device = Device::default();
    let sig: Signature = vec![(TensorKey::SCALAR, 2)];
    assert!(
        ConvContractConfig::new(4, sig.clone(), sig.clone())
            .init(&device)
            .is_err()
    );
    assert!(
        ConvContractConfig::new(2, vec![], sig.clone())
            .init(&device)
            .is_err()
    );
    assert!(
        ConvContractConfig::new(2, sig.clone(), sig.clone())
            .with_kernel_size(2)
            .init(&device)
            .is_err()
    );
    assert!(
        EquivariantGroupNormConfig::new(2, vec![(TensorKey::VECTOR, 3)], 2)
            .init(&device)
            .is_err()
    );
    let conv = ConvContractConfig::new(2, sig.clone(), sig.clone())
        .init(&device)
        .unwrap();
    let wrong = random_image::<4>(&[(TensorKey::VECTOR, 2)], 5, true, &device);
    assert!(conv.try_forward(wrong.clone()).is_err());
    assert!(MaxNormPool::new(2).try_forward(wrong).is_err());
    assert!(MultiImage::<4>::new(vec![true]).is_err());
    assert!("k1q0".parse::<TensorKey>().is_err());
    let mut x = MultiImage::<4>::new(vec![true, true]).unwrap();
    assert!(
        x.insert(TensorKey::VECTOR, Tensor::zeros([1, 3, 4, 4], &device))
            .is_err()
    );
}

/// The action is a faithful group action: `g·(h·x) = (gh)·x`, and only the
/// identity fixes a random image; so the equivariance checks cannot pass
/// for a trivial action.
#[test]
fn the_action_is_a_faithful_group_action() {
    let device = Device::default();
    fn run<const R: usize>(device: &Device) {
        let d = R - 2;
        let x = random_image::<R>(&all_keys(1, 2), 3, true, device);
        let group = hyperoctahedral_group(d).unwrap();
        for g in &group {
            let gx = g.apply(&x).unwrap();
            let moved = x.iter().any(|(k, t)| {
                let (a, _) = tensor_to_vec(t.clone());
                let (b, _) = tensor_to_vec(gx.get(k).unwrap().clone());
                a.iter().zip(&b).any(|(p, q)| (p - q).abs() > 1e-3)
            });
            assert_eq!(moved, *g != GroupElement::identity(d), "{:?}", g.matrix());
            for h in group.iter().step_by(5) {
                let lhs = g.apply(&h.apply(&x).unwrap()).unwrap();
                let rhs = g.compose(h).apply(&x).unwrap();
                assert_images_close("g·(h·x) = (gh)·x", &lhs, &rhs);
            }
        }
        // An elementwise ReLU of vector components is not equivariant.
        let relu = PerKey::new(
            BlockActivation::new(ScalarActivation::Relu),
            vec![TensorKey::VECTOR],
        );
        let y = relu.forward(x.clone());
        let broken = group.iter().any(|g| {
            let a = relu.forward(g.apply(&x).unwrap());
            let b = g.apply(&y).unwrap();
            let (va, _) = tensor_to_vec(a.get(TensorKey::VECTOR).unwrap().clone());
            let (vb, _) = tensor_to_vec(b.get(TensorKey::VECTOR).unwrap().clone());
            va.iter().zip(&vb).any(|(p, q)| (p - q).abs() > 1e-3)
        });
        assert!(broken, "{d}-D: the check must see a broken symmetry");
    }
    run::<4>(&device);
    run::<5>(&device);
}

// ---- models ---------------------------------------------------------------------------

/// [`check_equivariant`] for whole models, to 1e-3 of the output's scale.
/// Float32 rounding differs between `f(g·x)` and `g·f(x)` (the convolution
/// sums in another order), and a stack of layers amplifies it where it is
/// ill-conditioned: the Vector Neurons direction `q/(|q| + eps)` where `|q|`
/// is near 0, a norm over few channels. Seen: 1e-6 to 7e-4 depending on the
/// draw (DilResNet with norms); a broken symmetry gives errors of order 1.
fn check_model_equivariant<const R: usize>(
    what: &str,
    x: &MultiImage<R>,
    f: impl Fn(MultiImage<R>) -> MultiImage<R>,
) {
    let y = f(x.clone());
    for g in &hyperoctahedral_group(R - 2).unwrap() {
        let lhs = f(g.apply(x).unwrap());
        let rhs = g.apply(&y).unwrap();
        assert_eq!(lhs.keys(), rhs.keys(), "{what}: keys");
        for (k, a) in lhs.iter() {
            let b = rhs.get(k).unwrap();
            let scale = b.clone().abs().max().into_scalar::<f32>().max(1.0);
            let err = (a.clone() - b.clone()).abs().max().into_scalar::<f32>();
            assert!(
                err <= 1e-3 * scale,
                "{what} {k} under {:?}: max error {err} (scale {scale})",
                g.matrix()
            );
        }
    }
}

/// Scalars and vectors in, vectors and pseudoscalars out: every model must
/// carry each key through mixed hidden keys.
fn model_keys() -> (Signature, Signature) {
    (
        vec![(TensorKey::SCALAR, 1), (TensorKey::VECTOR, 1)],
        vec![(TensorKey::VECTOR, 1), (TensorKey::PSEUDOSCALAR, 1)],
    )
}

#[test]
fn models_are_equivariant_in_2d() {
    // Seeded initialisation: the same weights on every run (see `random_image`).
    idx_flow_core::init::with_seed(7, || {
        let device = Device::default();
        let (ins, outs) = model_keys();
        let resnet = ResNetConfig::new(2, ins.clone(), outs.clone(), 2)
            .with_num_blocks(2)
            .init(&device)
            .unwrap();
        let plain_act = ResNetConfig::new(2, ins.clone(), outs.clone(), 2)
            .with_num_blocks(1)
            .with_vector_neurons(false)
            .with_preactivation(false)
            .init(&device)
            .unwrap();
        let dil = DilResNetConfig::new(2, ins.clone(), outs.clone(), 2)
            .with_num_blocks(1)
            .with_dilations(vec![1, 2, 1])
            .with_norm(true)
            .init(&device)
            .unwrap();
        let unet = UNetConfig::new(2, ins.clone(), outs.clone(), 1)
            .with_num_downsamples(2)
            .with_num_conv(1)
            .init(&device)
            .unwrap();
        for torus in [true, false] {
            let x = random_image::<4>(&ins, 8, torus, &device);
            let y = unet.forward(x.clone());
            let mut want = outs.clone();
            want.sort();
            assert_eq!(y.signature(), want);
            assert_eq!(y.spatial_dims(), Some(vec![8, 8]));
            check_model_equivariant(&format!("ResNet torus={torus}"), &x, |x| resnet.forward(x));
            check_model_equivariant(
                &format!("ResNet, scalar activation, torus={torus}"),
                &x,
                |x| plain_act.forward(x),
            );
            check_model_equivariant(&format!("DilResNet torus={torus}"), &x, |x| dil.forward(x));
            check_model_equivariant(&format!("UNet torus={torus}"), &x, |x| unet.forward(x));
        }
    })
}

#[test]
fn models_are_equivariant_in_3d() {
    // Seeded initialisation: the same weights on every run (see `random_image`).
    idx_flow_core::init::with_seed(7, || {
        let device = Device::default();
        let ins: Signature = vec![(TensorKey::SCALAR, 1)];
        let outs: Signature = vec![(TensorKey::VECTOR, 1)];
        let resnet = ResNetConfig::new(3, ins.clone(), outs.clone(), 1)
            .with_num_blocks(1)
            .with_num_conv(1)
            .init(&device)
            .unwrap();
        let unet = UNetConfig::new(3, ins.clone(), outs, 1)
            .with_num_downsamples(1)
            .with_num_conv(1)
            .init(&device)
            .unwrap();
        let x = random_image::<5>(&ins, 4, true, &device);
        check_model_equivariant("3-D ResNet", &x, |x| resnet.forward(x));
        check_model_equivariant("3-D UNet", &x, |x| unet.forward(x));
    })
}

#[test]
fn model_parameter_counts_match_ginjax() {
    // ginjax 0.1.8's count_params for the same models, D = 2, scalar in,
    // vector out, depth 2, filters of side 3 (k ≤ 2) and 2 (upsampling).
    use burn::module::Module;
    let device = Device::default();
    let ins: Signature = vec![(TensorKey::SCALAR, 1)];
    let outs: Signature = vec![(TensorKey::VECTOR, 1)];
    let resnet = ResNetConfig::new(2, ins.clone(), outs.clone(), 2)
        .with_num_blocks(2)
        .init(&device)
        .unwrap();
    assert_eq!(resnet.num_params(), 401, "ResNet");
    let dil = DilResNetConfig::new(2, ins.clone(), outs.clone(), 2)
        .with_num_blocks(1)
        .init(&device)
        .unwrap();
    assert_eq!(dil.num_params(), 537, "DilResNet");
    let unet = UNetConfig::new(2, ins.clone(), outs.clone(), 2).with_num_downsamples(2);
    assert_eq!(unet.init(&device).unwrap().num_params(), 2733, "UNet");
    let normed = unet.with_norm(true).init(&device).unwrap();
    assert_eq!(normed.num_params(), 2893, "UNet with layer norms");
}

#[test]
fn model_configs_and_inputs_are_checked() {
    let device = Device::default();
    let (ins, outs) = model_keys();
    assert!(
        ResNetConfig::new(2, ins.clone(), outs.clone(), 0)
            .init(&device)
            .is_err()
    );
    assert!(
        ResNetConfig::new(4, ins.clone(), outs.clone(), 1)
            .init(&device)
            .is_err()
    );
    assert!(
        DilResNetConfig::new(2, ins.clone(), outs.clone(), 1)
            .with_dilations(vec![1, 0])
            .init(&device)
            .is_err()
    );
    assert!(
        UNetConfig::new(2, ins.clone(), outs.clone(), 1)
            .with_upsample_kernel_size(3)
            .init(&device)
            .is_err()
    );
    assert!(
        UNetConfig::new(2, ins.clone(), outs.clone(), 1)
            .with_num_conv(0)
            .init(&device)
            .is_err()
    );
    let unet = UNetConfig::new(2, ins.clone(), outs.clone(), 1)
        .with_num_downsamples(2)
        .with_num_conv(1)
        .init(&device)
        .unwrap();
    // 6 is not divisible by 4; wrong keys; wrong rank.
    assert!(
        unet.try_forward(random_image::<4>(&ins, 6, true, &device))
            .is_err()
    );
    assert!(
        unet.try_forward(random_image::<4>(&outs, 8, true, &device))
            .is_err()
    );
    assert!(
        unet.try_forward(random_image::<5>(&ins, 4, true, &device))
            .is_err()
    );
    let avg = GroupAverage::new(unet, 2).unwrap();
    assert!(
        avg.try_forward(random_image::<5>(&ins, 4, true, &device))
            .is_err()
    );
}

/// A plain convolution from the scalar block to a vector block: a burn
/// `Conv2d` whose 3×3 kernels have no symmetry, so it is not equivariant.
#[derive(burn::module::Module, Debug)]
struct PlainScalarToVector {
    conv: burn::nn::conv::Conv2d,
}

impl MultiImageModule for PlainScalarToVector {
    fn try_forward<const R: usize>(
        &self,
        x: MultiImage<R>,
    ) -> idx_flow_healpix::Result<MultiImage<R>> {
        let s = x.get(TensorKey::SCALAR).cloned().ok_or_else(|| {
            idx_flow_healpix::Error::InvalidArgument {
                name: "x",
                message: "no scalar block".into(),
            }
        })?;
        let d = s.dims();
        if R != 4 {
            return Err(idx_flow_healpix::Error::InvalidArgument {
                name: "x",
                message: "2-D only".into(),
            });
        }
        let y = self.conv.forward(s.reshape([d[0], d[1], d[2], d[3]]));
        let mut shape = [0usize; R];
        shape.copy_from_slice(&y.dims());
        x.empty_like().with(TensorKey::VECTOR, y.reshape(shape))
    }
}

#[test]
fn group_average_makes_a_plain_layer_equivariant() {
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    let device = Device::default();
    let plain = PlainScalarToVector {
        conv: Conv2dConfig::new([1, 2], [3, 3])
            .with_padding(PaddingConfig2d::Same)
            .init(&device),
    };
    let x = random_image::<4>(&[(TensorKey::SCALAR, 1)], 6, false, &device);
    // The plain layer breaks the symmetry somewhere ...
    let y = plain.try_forward(x.clone()).unwrap();
    let worst = hyperoctahedral_group(2)
        .unwrap()
        .iter()
        .map(|g| {
            let a = plain.try_forward(g.apply(&x).unwrap()).unwrap();
            let b = g.apply(&y).unwrap();
            let (a, b) = (
                a.get(TensorKey::VECTOR).unwrap(),
                b.get(TensorKey::VECTOR).unwrap(),
            );
            (a.clone() - b.clone()).abs().max().into_scalar::<f32>()
        })
        .fold(0f32, f32::max);
    assert!(
        worst > 1e-2,
        "the plain layer is already equivariant ({worst})"
    );
    // ... its group average does not.
    let avg = GroupAverage::new(plain, 2).unwrap();
    assert_eq!(avg.group().len(), 8);
    check_model_equivariant("GroupAverage of a plain Conv2d", &x, |x| avg.forward(x));
    // An equivariant model is its own group average.
    let (ins, outs) = model_keys();
    let resnet = ResNetConfig::new(2, ins.clone(), outs, 1)
        .with_num_blocks(1)
        .init(&device)
        .unwrap();
    let x = random_image::<4>(&ins, 6, true, &device);
    let direct = resnet.forward(x.clone());
    let avg = GroupAverage::new(resnet, 2).unwrap();
    let averaged = avg.forward(x);
    for (k, a) in averaged.iter() {
        let b = direct.get(k).unwrap();
        let scale = b.clone().abs().max().into_scalar::<f32>().max(1.0);
        let err = (a.clone() - b.clone()).abs().max().into_scalar::<f32>();
        // The model's tolerance (see check_model_equivariant).
        assert!(err <= 1e-3 * scale, "GroupAverage of a ResNet {k}: {err}");
    }
}

/// `t` rolled by `shift` cells along spatial `axis` (periodic): out[i] = t[i − shift].
fn roll(t: Tensor<4>, axis: usize, shift: usize) -> Tensor<4> {
    let dim = axis + 2;
    let n = t.dims()[dim];
    let s = shift % n;
    if s == 0 {
        return t;
    }
    Tensor::cat(
        vec![t.clone().narrow(dim, n - s, s), t.narrow(dim, 0, n - s)],
        1 + axis + 1,
    )
}

/// The gradient of a periodic scalar field `[B, 1, N, N]` by central
/// differences, as a vector block `[B, 2, N, N]` (component `a` along axis `a`).
fn central_gradient(phi: Tensor<4>) -> Tensor<4> {
    let n = phi.dims()[2];
    let parts = (0..2)
        .map(|a| (roll(phi.clone(), a, n - 1) - roll(phi.clone(), a, 1)) * 0.5)
        .collect();
    Tensor::cat(parts, 1)
}

/// A plain CNN on the periodic grid: burn `Conv2d`s (3×3, no padding) on the
/// input wrapped by one cell, GELU between them.
#[derive(burn::module::Module, Debug)]
struct PlainCnn {
    convs: Vec<burn::nn::conv::Conv2d>,
}

impl PlainCnn {
    /// Weights and biases drawn from `U(−1/√fan_in, 1/√fan_in)` (PyTorch's
    /// default bound) by the suite's own generator, so the test is the same on
    /// every run (burn's generator is shared by the tests running beside it).
    fn new(widths: &[usize], device: &Device) -> Self {
        use burn::module::Param;
        let mut rng = idx_flow_testing::rng::Rng(5);
        let convs = widths
            .windows(2)
            .map(|w| {
                let mut conv = burn::nn::conv::Conv2dConfig::new([w[0], w[1]], [3, 3]).init(device);
                let bound = 1.0 / ((w[0] * 9) as f32).sqrt();
                let mut draw = |n: usize| -> Vec<f32> {
                    rng.uniform_vec(n).into_iter().map(|v| v * bound).collect()
                };
                let weight = TensorData::new(draw(w[1] * w[0] * 9), [w[1], w[0], 3, 3]);
                conv.weight = Param::from_tensor(Tensor::from_data(weight, device));
                let bias = TensorData::new(draw(w[1]), [w[1]]);
                conv.bias = Some(Param::from_tensor(Tensor::from_data(bias, device)));
                conv
            })
            .collect();
        PlainCnn { convs }
    }

    fn forward(&self, mut x: Tensor<4>) -> Tensor<4> {
        let last = self.convs.len() - 1;
        for (i, conv) in self.convs.iter().enumerate() {
            let wrapped =
                idx_flow_pde::pad(x, &[(1, 1), (1, 1)], idx_flow_pde::BoundaryMode::Periodic);
            x = conv.forward(wrapped);
            if i < last {
                x = burn::tensor::activation::gelu(x);
            }
        }
        x
    }
}

#[test]
fn an_equivariant_model_learns_a_gradient_field_better_than_a_plain_cnn() {
    use burn::module::Module;
    use burn::optim::{AdamConfig, GradientsParams};
    let device = Device::default().autodiff();
    let (batch, n, steps, lr) = (8, 8, 40, 1e-2);
    // Fields from the suite's generator: the same data on every run.
    let phi = Tensor::<4>::from_data(
        TensorData::new(
            idx_flow_testing::rng::Rng(11).normal_vec(batch * n * n),
            [batch, 1, n, n],
        ),
        &device,
    );
    let target = central_gradient(phi.clone());
    let scalar = |t: Tensor<4>| {
        MultiImage::<4>::new(vec![true, true])
            .unwrap()
            .with(TensorKey::SCALAR, t)
            .unwrap()
    };
    // The task itself is equivariant (so an equivariant model can fit it).
    check_model_equivariant("central differences", &scalar(phi.clone()), |x| {
        let g = central_gradient(x.get(TensorKey::SCALAR).unwrap().clone());
        x.empty_like().with(TensorKey::VECTOR, g).unwrap()
    });

    // Scalars gated by GELU, vectors kept linear (no Vector Neurons): the
    // target is linear in the field, and the vector path can carry it
    // undistorted. (With Vector Neurons the model learns too, but only about
    // as fast as the plain CNN in 40 steps.)
    let model = idx_flow_core::init::with_seed(3, || {
        ResNetConfig::new(
            2,
            vec![(TensorKey::SCALAR, 1)],
            vec![(TensorKey::VECTOR, 1)],
            2,
        )
        .with_num_blocks(1)
        .with_vector_neurons(false)
        .init(&device)
        .unwrap()
    });
    let plain = PlainCnn::new(&[1, 4, 4, 2], &device);
    let (pe, pp) = (model.num_params(), plain.num_params());
    eprintln!("parameters: equivariant {pe}, plain {pp}");
    assert!(
        pe * 4 > pp * 3 && pp * 4 > pe * 3,
        "sizes differ: {pe} vs {pp}"
    );

    let mut model = model;
    let mut optim = AdamConfig::new().init();
    let mut eq_losses = Vec::with_capacity(steps);
    for _ in 0..steps {
        let pred = model.forward(scalar(phi.clone()));
        let loss = (pred.get(TensorKey::VECTOR).unwrap().clone() - target.clone())
            .square()
            .mean();
        eq_losses.push(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr, model, grads);
    }
    let mut plain = plain;
    let mut optim = AdamConfig::new().init();
    let mut plain_losses = Vec::with_capacity(steps);
    for _ in 0..steps {
        let loss = (plain.forward(phi.clone()) - target.clone())
            .square()
            .mean();
        plain_losses.push(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &plain);
        plain = optim.step(lr, plain, grads);
    }
    // The last losses, after the final step.
    let eq_final = model
        .forward(scalar(phi.clone()))
        .get(TensorKey::VECTOR)
        .map(|p| {
            (p.clone() - target.clone())
                .square()
                .mean()
                .into_scalar::<f32>()
        })
        .unwrap();
    let plain_final = (plain.forward(phi.clone()) - target)
        .square()
        .mean()
        .into_scalar::<f32>();
    eprintln!("equivariant: {eq_losses:?} -> {eq_final}");
    eprintln!("plain:       {plain_losses:?} -> {plain_final}");
    assert!(
        eq_final < 0.5 * eq_losses[0],
        "the equivariant model did not learn: {eq_losses:?}"
    );
    assert!(
        eq_final < plain_final,
        "equivariant {eq_final} not below plain {plain_final}"
    );
}
