//! Properties of the layers that the fixtures do not show: shapes for odd sizes,
//! errors on wrong inputs, gradients reaching every parameter, dropout
//! statistics, initialiser distributions, state dict round trips.

use std::collections::BTreeMap;

use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Gradients, Tensor};
use idx_flow_core::init::fans;
use idx_flow_core::state_dict::{
    StateDict, StateValues, StateVisitor, TorchState, load_state_dict, state_dict, tensor_to_vec,
};
use idx_flow_core::{Initializer, Nonlinearity, WeightInit};
use idx_flow_healpix::Error;
use idx_flow_healpix::geometry::HealpixGrid;
use idx_flow_healpix::graphs::{ConnectionGraph, WeightMethod};
use idx_flow_nn::*;

use crate::common::{assert_close, case_state, cases, layers_file, tensor};

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    tensor_to_vec(t).0
}

/// Every parameter's gradient: present, finite, of the parameter's shape.
struct AllGrads<'a> {
    grads: &'a Gradients,
    seen: Vec<String>,
    missing: Vec<String>,
}

impl StateVisitor for AllGrads<'_> {
    fn param<const D: usize>(&mut self, name: &str, param: &Param<Tensor<D>>) {
        self.seen.push(name.to_string());
        match param.val().grad(self.grads) {
            Some(g) => {
                assert_eq!(g.dims(), param.val().dims(), "{name}: gradient shape");
                assert!(
                    values(g).iter().all(|v| v.is_finite()),
                    "{name}: gradient not finite"
                );
            }
            None => self.missing.push(name.to_string()),
        }
    }
    fn buffer<const D: usize>(&mut self, _: &str, _: &Tensor<D>) {}
    fn int_buffer(&mut self, _: &str, _: &[usize], _: &[i64]) {}
}

/// Runs `forward` on a random input of `input` shape, checks the output shape
/// and that `sum(y²)` reaches every parameter; returns the parameter names.
fn grads_reach_every_param<M: TorchState, const DI: usize, const DO: usize>(
    what: &str,
    module: &M,
    input: [usize; DI],
    output: [usize; DO],
    forward: impl Fn(&M, Tensor<DI>) -> Tensor<DO>,
) -> Vec<String> {
    let device = Device::default().autodiff();
    let x = Tensor::<DI>::random(input, Distribution::Normal(0.0, 1.0), &device).require_grad();
    let y = forward(module, x.clone());
    assert_eq!(y.dims(), output, "{what}: output shape");
    let grads = (y.clone() * y).sum().backward();
    assert!(x.grad(&grads).is_some(), "{what}: no input gradient");
    let mut v = AllGrads {
        grads: &grads,
        seen: vec![],
        missing: vec![],
    };
    module.visit_state("", &mut v);
    assert!(
        v.missing.is_empty(),
        "{what}: no gradient reached {:?}",
        v.missing
    );
    v.seen
}

/// Odd sizes everywhere: nside 3 (108 pixels, not a power of two) to nside 2
/// (48 pixels) with k = 7, batch 3, 5 channels.
fn odd_graphs() -> (ConnectionGraph, ConnectionGraph) {
    let (a, b) = (HealpixGrid::ring(3).unwrap(), HealpixGrid::ring(2).unwrap());
    let down = ConnectionGraph::knn(a, b, 7).unwrap();
    let up = ConnectionGraph::knn(b, a, 7)
        .unwrap()
        .with_weights(WeightMethod::Gaussian)
        .unwrap();
    (down, up)
}

#[test]
fn every_layer_has_the_right_shapes_and_gradients_for_odd_sizes() {
    let d = Device::default().autodiff();
    let (down, up) = odd_graphs();
    let (b, n_in, n_out, c) = (3, 108, 48, 5);

    let conv = SpatialConvConfig::new(c, 4)
        .with_use_graph_weights(false)
        .with_weight_init(WeightInit::KaimingNormal)
        .init(&down, &d)
        .unwrap();
    let names =
        grads_reach_every_param("SpatialConv", &conv, [b, n_in, c], [b, n_out, 4], |m, x| {
            m.forward(x)
        });
    assert_eq!(names, ["bias_param", "kernel"]);

    let tconv = SpatialTransposeConvConfig::new(c, 2)
        .with_use_graph_weights(true)
        .with_bias(false)
        .init(&up, &d)
        .unwrap();
    grads_reach_every_param(
        "SpatialTransposeConv",
        &tconv,
        [b, n_out, c],
        [b, n_in, 2],
        |m, x| m.forward(x),
    );

    for kernel in [
        UpsamplingKernel::Linear,
        UpsamplingKernel::Idw,
        UpsamplingKernel::Gaussian,
    ] {
        let up_layer = SpatialUpsamplingConfig::new()
            .with_interpolation(kernel)
            .with_kernel_radius(Some(900.0))
            .init(&up, &d)
            .unwrap();
        grads_reach_every_param(
            "SpatialUpsampling",
            &up_layer,
            [b, n_out, c],
            [b, n_in, c],
            |m, x| m.forward(x),
        );
    }

    let mlp = SpatialMlpConfig::new(c)
        .with_hidden_units(vec![9, 6, 3])
        .with_activations(vec![
            Activation::Elu,
            Activation::LeakyRelu,
            Activation::Sigmoid,
        ])
        .with_dropout(0.2)
        .with_use_batch_norm(true)
        .with_residual(true)
        .with_weight_init(WeightInit::Orthogonal)
        .init(&down, &d)
        .unwrap();
    let names = grads_reach_every_param("SpatialMLP", &mlp, [b, n_in, c], [b, n_out, 3], |m, x| {
        m.forward(x)
    });
    assert!(
        names.contains(&"residual_proj.weight".to_string())
            && names.contains(&"bn_layers.2.weight".to_string())
    );

    let gmlp = GlobalMlpConfig::new(c)
        .with_hidden_units(vec![7, c])
        .with_activations(vec![Activation::Relu, Activation::Linear])
        .with_residual(true)
        .init(&d)
        .unwrap();
    let names = grads_reach_every_param("GlobalMLP", &gmlp, [b, n_in, c], [b, n_in, c], |m, x| {
        m.forward(x)
    });
    // Same width: the residual is the identity, no projection.
    assert_eq!(names.len(), 4);

    let bn = SpatialBatchNormConfig::new(c).init(&d).unwrap();
    grads_reach_every_param(
        "SpatialBatchNorm",
        &bn,
        [b, n_in, c],
        [b, n_in, c],
        |m, x| m.forward(x),
    );
    let ln = SpatialLayerNormConfig::new(c).init(&d).unwrap();
    grads_reach_every_param(
        "SpatialLayerNorm",
        &ln,
        [b, n_in, c],
        [b, n_in, c],
        |m, x| m.forward(x),
    );
    let inorm = SpatialInstanceNormConfig::new(c)
        .with_affine(true)
        .init(&d)
        .unwrap();
    grads_reach_every_param(
        "SpatialInstanceNorm",
        &inorm,
        [b, n_in, c],
        [b, n_in, c],
        |m, x| m.forward(x),
    );
    let gn = SpatialGroupNormConfig::new(3, 9).init(&d).unwrap();
    grads_reach_every_param(
        "SpatialGroupNorm",
        &gn,
        [b, n_in, 9],
        [b, n_in, 9],
        |m, x| m.forward(x),
    );

    let attn = SpatialSelfAttentionConfig::new(6, 3).init(&d).unwrap();
    grads_reach_every_param(
        "SpatialSelfAttention",
        &attn,
        [b, 13, 6],
        [b, 13, 6],
        |m, x| m.forward(x),
    );
    let pe = SpatialPatchEmbeddingConfig::new(c)
        .with_embed_dim(6)
        .init(&down, &d)
        .unwrap();
    grads_reach_every_param(
        "SpatialPatchEmbedding",
        &pe,
        [b, n_in, c],
        [b, n_out, 6],
        |m, x| m.forward(x),
    );
    let block = SpatialTransformerBlockConfig::new(6, 2)
        .with_mlp_ratio(1.5)
        .with_activation(Activation::Mish)
        .init(&d)
        .unwrap();
    grads_reach_every_param(
        "SpatialTransformerBlock",
        &block,
        [b, 13, 6],
        [b, 13, 6],
        |m, x| m.forward(x),
    );
    let vit = SpatialVitConfig::new(c)
        .with_embed_dim(6)
        .with_depth(2)
        .with_num_heads(3)
        .with_mlp_ratio(2.0)
        .with_output_dim(Some(4))
        .with_dropout(0.1)
        .init(&down, &d)
        .unwrap();
    let names = grads_reach_every_param("SpatialViT", &vit, [b, n_in, c], [b, n_out, 4], |m, x| {
        m.forward(x)
    });
    assert!(
        names.contains(&"pos_embed".to_string())
            && names.contains(&"blocks.1.ffn.3.weight".to_string())
    );

    for pool in [PoolType::Mean, PoolType::Max, PoolType::Sum] {
        let p = SpatialPoolingConfig::new()
            .with_pool_type(pool)
            .init(&down, &d)
            .unwrap();
        grads_reach_every_param("SpatialPooling", &p, [b, n_in, c], [b, n_out, c], |m, x| {
            m.forward(x)
        });
        let s = SqueezeConfig::new().with_reduction(pool).init();
        grads_reach_every_param("Squeeze", &s, [b, n_in, c], [b, c], |m, x| m.forward(x));
    }
    let u = UnsqueezeConfig::new(n_out).init().unwrap();
    grads_reach_every_param("Unsqueeze", &u, [b, c], [b, n_out, c], |m, x| m.forward(x));
}

#[test]
fn wrong_input_shapes_are_errors_naming_the_layer_and_both_shapes() {
    let d = Device::default();
    let (down, _) = odd_graphs();
    let conv = SpatialConvConfig::new(5, 4).init(&down, &d).unwrap();
    let err = conv
        .try_forward(Tensor::zeros([3, 100, 5], &d))
        .unwrap_err();
    match &err {
        Error::Shape {
            context,
            expected,
            got,
        } => {
            assert_eq!(context, "SpatialConv input");
            assert_eq!(expected, "[B, 108, 5]");
            assert_eq!(got, "[3, 100, 5]");
        }
        other => panic!("expected a shape error, got {other}"),
    }
    let mlp = GlobalMlpConfig::new(5).init(&d).unwrap();
    let msg = mlp
        .try_forward(Tensor::zeros([2, 7, 4], &d))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("GlobalMLP") && msg.contains("[B, N, 5]") && msg.contains("[2, 7, 4]"),
        "{msg}"
    );
    let vit = SpatialVitConfig::new(5)
        .with_embed_dim(8)
        .with_num_heads(2)
        .with_depth(1)
        .init(&down, &d)
        .unwrap();
    let msg = vit
        .try_forward(Tensor::zeros([2, 108, 3], &d))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("SpatialViT") && msg.contains("[B, 108, 5]"),
        "{msg}"
    );
    let gn = SpatialGroupNormConfig::new(2, 4).init(&d).unwrap();
    assert!(gn.try_forward(Tensor::zeros([2, 7, 6], &d)).is_err());
    let bn = SpatialBatchNormConfig::new(3)
        .init(&d.clone().autodiff())
        .unwrap();
    let msg = bn
        .try_forward(Tensor::zeros([1, 1, 3], &d.clone().autodiff()))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("more than 1 value per channel"), "{msg}");
    let inorm = SpatialInstanceNormConfig::new(3).init(&d).unwrap();
    assert!(inorm.try_forward(Tensor::zeros([2, 1, 3], &d)).is_err());
    assert!(
        SqueezeConfig::new()
            .init()
            .try_forward(Tensor::zeros([2, 0, 3], &d))
            .is_err()
    );
}

#[test]
#[should_panic(
    expected = "shape mismatch in SpatialPooling input: expected [B, 108, C], got [2, 48, 3]"
)]
fn forward_panics_with_the_shape_message() {
    let d = Device::default();
    let (down, _) = odd_graphs();
    let pool = SpatialPoolingConfig::new().init(&down, &d).unwrap();
    let _ = pool.forward(Tensor::zeros([2, 48, 3], &d));
}

#[test]
fn bad_configurations_are_errors() {
    let d = Device::default();
    let (down, _) = odd_graphs();
    assert!(SpatialConvConfig::new(0, 4).init(&down, &d).is_err());
    // The knn graph has no weights.
    assert!(
        SpatialConvConfig::new(3, 4)
            .with_use_graph_weights(true)
            .init(&down, &d)
            .is_err()
    );
    assert!(
        SpatialMlpConfig::new(3)
            .with_hidden_units(vec![4, 4])
            .init(&down, &d)
            .is_err()
    );
    assert!(GlobalMlpConfig::new(3).with_dropout(1.0).init(&d).is_err());
    assert!(SpatialGroupNormConfig::new(4, 6).init(&d).is_err());
    assert!(SpatialSelfAttentionConfig::new(6, 4).init(&d).is_err());
    assert!(
        SpatialBatchNormConfig::new(3)
            .with_momentum(1.5)
            .init(&d)
            .is_err()
    );
    assert!(
        SpatialLayerNormConfig::new(3)
            .with_eps(0.0)
            .init(&d)
            .is_err()
    );
    assert!(SpatialDropoutConfig::new().with_p(-0.1).init().is_err());
    assert!(ChannelDropoutConfig::new().with_p(f64::NAN).init().is_err());
    assert!(UnsqueezeConfig::new(0).init().is_err());
    assert!(
        SpatialUpsamplingConfig::new()
            .with_kernel_radius(Some(-1.0))
            .init(&down, &d)
            .is_err()
    );
    assert!(
        SpatialTransformerBlockConfig::new(4, 2)
            .with_mlp_ratio(0.1)
            .init(&d)
            .is_err()
    );
    assert!(
        Initializer::new(WeightInit::XavierUniform)
            .with_gain(-1.0)
            .init([3, 4], &d)
            .is_err()
    );
    assert!(
        Initializer::new(WeightInit::KaimingNormal)
            .init([3], &d)
            .is_err()
    );
    assert!(
        Initializer::new(WeightInit::Uniform)
            .with_a(1.0)
            .with_b(1.0)
            .init([3, 4], &d)
            .is_err()
    );
    assert!(LinearConfig::new(0, 3).init(&d).is_err());
    // Gain 0 is allowed, as in PyTorch: zeros.
    let z = Initializer::new(WeightInit::XavierUniform)
        .with_gain(0.0)
        .init([3, 4], &d)
        .unwrap();
    assert!(values(z).iter().all(|&v| v == 0.0));
    assert!("swishy".parse::<Activation>().is_err());
    assert!("he_normal".parse::<WeightInit>().is_err());
}

#[test]
fn dropouts_drop_whole_points_or_channels_at_rate_p_and_rescale() {
    let d = Device::default().autodiff();
    d.seed(11);
    let p = 0.3;
    let drop = SpatialDropoutConfig::new().with_p(p).init().unwrap();
    let (b, n, c) = (4, 3072, 5);
    let y = values(drop.forward(Tensor::<3>::ones([b, n, c], &d)));
    let scale = (1.0 / (1.0 - p)) as f32;
    let mut kept = 0usize;
    for point in y.chunks(c) {
        if point.iter().all(|&v| v == 0.0) {
            continue;
        }
        assert!(
            point.iter().all(|&v| (v - scale).abs() < 1e-6),
            "a point is partly dropped: {point:?}"
        );
        kept += 1;
    }
    let frac = kept as f64 / (b * n) as f64;
    // 12288 Bernoulli(0.7) draws: standard deviation 0.0041.
    assert!((frac - 0.7).abs() < 0.02, "kept fraction {frac}");

    let drop = ChannelDropoutConfig::new().with_p(0.5).init().unwrap();
    let (b, n, c) = (64, 10, 16);
    let y = values(drop.forward(Tensor::<3>::ones([b, n, c], &d)));
    let mut kept = 0usize;
    for s in 0..b {
        for ch in 0..c {
            let col: Vec<f32> = (0..n).map(|i| y[(s * n + i) * c + ch]).collect();
            if col.iter().all(|&v| v == 0.0) {
                continue;
            }
            assert!(
                col.iter().all(|&v| v == 2.0),
                "a channel is partly dropped: {col:?}"
            );
            kept += 1;
        }
    }
    let frac = kept as f64 / (b * c) as f64;
    // 1024 Bernoulli(0.5) draws: standard deviation 0.016.
    assert!((frac - 0.5).abs() < 0.08, "kept fraction {frac}");

    // Evaluation (flag off, or a validation model on a plain device): identity.
    let x = Tensor::<3>::random([2, 48, 3], Distribution::Normal(0.0, 1.0), &d);
    let spatial = SpatialDropoutConfig::new().with_p(0.9).init().unwrap();
    let channel = ChannelDropoutConfig::new().with_p(0.9).init().unwrap();
    for y in [
        set_training(spatial.clone(), false).forward(x.clone()),
        set_training(channel.clone(), false).forward(x.clone()),
        spatial.valid().forward(x.clone().without_autodiff()),
        channel.valid().forward(x.clone().without_autodiff()),
    ] {
        assert_eq!(values(y), values(x.clone()));
    }
    // p = 0: identity; p = 1: zeros (PyTorch's nn.Dropout; idx_flow would divide 0 by 0).
    let none = SpatialDropoutConfig::new().with_p(0.0).init().unwrap();
    assert_eq!(values(none.forward(x.clone())), values(x.clone()));
    let all = ChannelDropoutConfig::new().with_p(1.0).init().unwrap();
    assert!(values(all.forward(x)).iter().all(|&v| v == 0.0));
}

/// Sample mean and variance.
fn moments(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var)
}

#[test]
fn initialisers_draw_pytorchs_distributions_with_its_fan_rules() {
    let d = Device::default();
    d.seed(5);
    // A SpatialConv kernel [k, C_in, F]: fan_in = C_in·F, fan_out = k·F.
    let shape = [4usize, 300, 50];
    assert_eq!(fans(&shape).unwrap(), (15000, 200));
    let (fi, fo) = (15000.0f64, 200.0f64);
    let check = |init: Initializer, want_mean: f64, want_var: f64, bound: Option<f64>| {
        let v = values(init.init(shape, &d).unwrap());
        let (m, var) = moments(&v);
        assert!(
            (m - want_mean).abs() < 0.02 * want_var.sqrt().max(1e-3) + 1e-9,
            "{init:?}: mean {m}"
        );
        assert!(
            (var / want_var - 1.0).abs() < 0.03,
            "{init:?}: variance {var}, expected {want_var}"
        );
        if let Some(b) = bound {
            assert!(
                v.iter().all(|&x| (x as f64).abs() <= b * (1.0 + 1e-6)),
                "{init:?}: beyond {b}"
            );
        }
    };
    let xb = 2.0 * (6.0 / (fi + fo)).sqrt();
    check(
        Initializer::new(WeightInit::XavierUniform).with_gain(2.0),
        0.0,
        xb * xb / 3.0,
        Some(xb),
    );
    check(
        Initializer::new(WeightInit::XavierNormal).with_gain(0.5),
        0.0,
        0.25 * 2.0 / (fi + fo),
        None,
    );
    let kb = 2f64.sqrt() * (3.0 / fi).sqrt();
    check(
        Initializer::new(WeightInit::KaimingUniform),
        0.0,
        kb * kb / 3.0,
        Some(kb),
    );
    check(
        Initializer::new(WeightInit::KaimingNormal).with_nonlinearity(Nonlinearity::Tanh),
        0.0,
        (5.0f64 / 3.0).powi(2) / fi,
        None,
    );
    check(
        Initializer::new(WeightInit::Normal),
        0.0,
        0.02f64.powi(2),
        None,
    );
    check(
        Initializer::new(WeightInit::Uniform)
            .with_a(-1.0)
            .with_b(3.0),
        1.0,
        16.0 / 12.0,
        Some(3.0),
    );
    let z = values(Initializer::new(WeightInit::Zeros).init(shape, &d).unwrap());
    assert!(z.iter().all(|&x| x == 0.0));

    // Orthogonal on [k, C_in, F] flattened to [k, C_in·F]: orthonormal rows times gain.
    let w = values(
        Initializer::new(WeightInit::Orthogonal)
            .with_gain(3.0)
            .init([4, 3, 5], &d)
            .unwrap(),
    );
    for a in 0..4 {
        for b in 0..4 {
            let dot: f32 = (0..15).map(|i| w[a * 15 + i] * w[b * 15 + i]).sum();
            let want = if a == b { 9.0 } else { 0.0 };
            assert!((dot - want).abs() < 1e-4, "rows {a}, {b}: {dot}");
        }
    }

    // The layers use them: SpatialConv's default xavier_uniform on [k, C, F].
    let graph = ConnectionGraph::knn(
        HealpixGrid::ring(2).unwrap(),
        HealpixGrid::ring(1).unwrap(),
        4,
    )
    .unwrap();
    let conv = SpatialConvConfig::new(3, 5)
        .with_bias_init(0.25)
        .init(&graph, &d)
        .unwrap();
    let bound = (6.0f32 / (15.0 + 20.0)).sqrt();
    assert!(values(conv.kernel.val()).iter().all(|v| v.abs() <= bound));
    assert!(
        values(conv.bias_param.unwrap().val())
            .iter()
            .all(|&v| v == 0.25)
    );
    // PyTorch's default nn.Linear in the attention: U(±1/√E).
    let attn = SpatialSelfAttentionConfig::new(16, 2).init(&d).unwrap();
    assert!(
        values(attn.qkv_proj.weight.val())
            .iter()
            .all(|v| v.abs() <= 0.25)
    );
    // ViT position table: truncated normal, std 0.02.
    let vit = SpatialVitConfig::new(3)
        .with_embed_dim(64)
        .with_num_heads(8)
        .with_depth(0)
        .init(&graph, &d)
        .unwrap();
    let (m, var) = moments(&values(vit.pos_embed.val()));
    assert!(
        m.abs() < 0.005 && (var.sqrt() / 0.02 - 1.0).abs() < 0.1,
        "pos_embed mean {m}, std {}",
        var.sqrt()
    );
}

#[test]
fn attention_backends_agree_and_fused_refuses_dropout() {
    let d = Device::default().autodiff();
    let attn = SpatialSelfAttentionConfig::new(8, 2)
        .with_dropout(0.2)
        .init(&d)
        .unwrap();
    let x = Tensor::<3>::random([2, 30, 8], Distribution::Normal(0.0, 1.0), &d);
    let eval = set_training(attn.clone(), false);
    let a = values(
        eval.clone()
            .with_backend(AttnBackend::Fused)
            .forward(x.clone()),
    );
    let b = values(
        eval.clone()
            .with_backend(AttnBackend::Manual)
            .forward(x.clone()),
    );
    assert_close("fused vs manual", &a, &[a.len()], &b, &[b.len()]);
    // Training with dropout: the fused kernel cannot drop attention weights.
    let fused = attn.clone().with_backend(AttnBackend::Fused);
    assert!(matches!(
        fused.try_forward(x.clone()),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(attn.try_forward(x).is_ok());
}

#[test]
fn batch_norm_evaluation_uses_the_running_statistics() {
    let d = Device::default().autodiff();
    let bn = SpatialBatchNormConfig::new(2)
        .with_momentum(0.5)
        .init(&d)
        .unwrap();
    let x = Tensor::<3>::random([4, 100, 2], Distribution::Normal(3.0, 2.0), &d);
    let _ = bn.forward(x.clone());
    let _ = bn.forward(x.clone());
    assert_eq!(bn.bn.batches_tracked(), 2);
    let rm = values(bn.bn.running_mean.value_sync());
    let rv = values(bn.bn.running_var.value_sync());
    let xs = values(x.clone());
    // Two updates with momentum 0.5 from (0, 1): 0.75·batch + 0.25·initial.
    for ch in 0..2 {
        let col: Vec<f32> = xs.iter().skip(ch).step_by(2).copied().collect();
        let (m, var) = moments(&col);
        let unbiased = var * col.len() as f64 / (col.len() as f64 - 1.0);
        assert!((rm[ch] as f64 - 0.75 * m).abs() < 1e-4);
        assert!((rv[ch] as f64 - (0.75 * unbiased + 0.25)).abs() < 1e-3);
    }
    // Flag off on the autodiff device (PyTorch's eval()), and the validation model.
    let evals = [
        (set_training(bn.clone(), false), x.clone()),
        (bn.valid(), x.clone().without_autodiff()),
    ];
    for (eval, xin) in evals {
        let y = values(eval.forward(xin));
        for (i, (&yi, &xi)) in y.iter().zip(&xs).enumerate() {
            let ch = i % 2;
            let want = (xi - rm[ch]) / (rv[ch] + 1e-5).sqrt();
            assert!((yi - want).abs() < 1e-5, "{i}: {yi} vs {want}");
        }
    }
}

#[test]
fn state_dicts_round_trip_through_safetensors_with_pytorch_names() {
    let d = Device::default();
    let (down, up) = odd_graphs();
    let dir = tempfile::tempdir().unwrap();

    let mlp = SpatialMlpConfig::new(5)
        .with_hidden_units(vec![8, 3])
        .with_activations(vec![Activation::Gelu, Activation::Linear])
        .with_use_batch_norm(true)
        .with_residual(true)
        .init(&down, &d)
        .unwrap();
    let sd = state_dict(&mlp).unwrap();
    assert_eq!(
        sd.keys(),
        [
            "bn_layers.0.bias",
            "bn_layers.0.num_batches_tracked",
            "bn_layers.0.running_mean",
            "bn_layers.0.running_var",
            "bn_layers.0.weight",
            "bn_layers.1.bias",
            "bn_layers.1.num_batches_tracked",
            "bn_layers.1.running_mean",
            "bn_layers.1.running_var",
            "bn_layers.1.weight",
            "connection_indices",
            "mlp_layers.0.bias",
            "mlp_layers.0.weight",
            "mlp_layers.1.bias",
            "mlp_layers.1.weight",
            "residual_proj.bias",
            "residual_proj.weight",
        ]
    );
    assert_eq!(sd.get("mlp_layers.0.weight").unwrap().shape, [8, 35]);
    assert_eq!(sd.get("connection_indices").unwrap().shape, [48, 7]);
    assert_eq!(
        sd.get("bn_layers.0.num_batches_tracked").unwrap().shape,
        Vec::<usize>::new()
    );

    let vit = SpatialVitConfig::new(5)
        .with_embed_dim(6)
        .with_depth(2)
        .with_num_heads(2)
        .with_output_dim(Some(4))
        .init(&down, &d)
        .unwrap();
    let conv = SpatialTransposeConvConfig::new(5, 3)
        .with_use_graph_weights(true)
        .init(&up, &d)
        .unwrap();
    let x_down = Tensor::<3>::random([2, 108, 5], Distribution::Normal(0.0, 1.0), &d);
    let x_up = Tensor::<3>::random([2, 48, 5], Distribution::Normal(0.0, 1.0), &d);

    fn round_trip<M: TorchState>(dir: &std::path::Path, name: &str, model: &M, fresh: M) -> M {
        let path = dir.join(format!("{name}.safetensors"));
        state_dict(model).unwrap().save(&path).unwrap();
        let back = load_state_dict(fresh, &StateDict::load(&path).unwrap()).unwrap();
        assert_eq!(
            state_dict(&back).unwrap(),
            state_dict(model).unwrap(),
            "{name}"
        );
        back
    }
    let fresh_vit = SpatialVitConfig::new(5)
        .with_embed_dim(6)
        .with_depth(2)
        .with_num_heads(2)
        .with_output_dim(Some(4))
        .init(&down, &d)
        .unwrap();
    assert_ne!(state_dict(&fresh_vit).unwrap(), state_dict(&vit).unwrap());
    let vit2 = round_trip(dir.path(), "vit", &vit, fresh_vit);
    assert_eq!(
        values(vit2.forward(x_down.clone())),
        values(vit.forward(x_down.clone()))
    );
    let conv2 = round_trip(
        dir.path(),
        "conv",
        &conv,
        SpatialTransposeConvConfig::new(5, 3)
            .with_use_graph_weights(true)
            .init(&up, &d)
            .unwrap(),
    );
    assert_eq!(
        values(conv2.forward(x_up.clone())),
        values(conv.forward(x_up))
    );
    let mlp2 = round_trip(
        dir.path(),
        "mlp",
        &mlp,
        SpatialMlpConfig::new(5)
            .with_hidden_units(vec![8, 3])
            .with_activations(vec![Activation::Gelu, Activation::Linear])
            .with_use_batch_norm(true)
            .with_residual(true)
            .init(&down, &d)
            .unwrap(),
    );
    assert_eq!(
        values(mlp2.valid().forward(x_down.clone())),
        values(mlp.valid().forward(x_down))
    );
}

/// A state dict as an editable map.
type Entries = BTreeMap<String, (Vec<usize>, StateValues)>;

#[test]
fn loading_is_strict_about_keys_shapes_and_indices() {
    let d = Device::default();
    let (down, _) = odd_graphs();
    let build = || SpatialConvConfig::new(5, 4).init(&down, &d).unwrap();
    let sd = state_dict(&build()).unwrap();
    let with = |f: &dyn Fn(&mut Entries)| {
        let mut m: BTreeMap<String, (Vec<usize>, StateValues)> = sd
            .iter()
            .map(|(k, t)| (k.to_string(), (t.shape.clone(), t.values.clone())))
            .collect();
        f(&mut m);
        let mut out = StateDict::new();
        for (k, (s, v)) in m {
            out.insert(k, s, v).unwrap();
        }
        load_state_dict(build(), &out)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let msg = with(&|m| {
        m.remove("kernel");
    });
    assert!(msg.contains("missing key 'kernel'"), "{msg}");
    let msg = with(&|m| {
        m.insert(
            "kernel_weights".into(),
            (vec![48, 7, 1], StateValues::F32(vec![0.1; 336])),
        );
    });
    assert!(
        msg.contains("unexpected keys") && msg.contains("kernel_weights"),
        "{msg}"
    );
    let msg = with(&|m| {
        m.insert(
            "kernel".into(),
            (vec![7, 5, 3], StateValues::F32(vec![0.0; 105])),
        );
    });
    assert!(
        msg.contains("'kernel'") && msg.contains("[7, 5, 4]") && msg.contains("[7, 5, 3]"),
        "{msg}"
    );
    let msg = with(&|m| {
        m.insert(
            "connection_indices".into(),
            (vec![48, 7], StateValues::I64(vec![108; 336])),
        );
    });
    assert!(msg.contains("108") && msg.contains("0..108"), "{msg}");
    let msg = with(&|m| {
        m.insert("bias_param".into(), (vec![4], StateValues::I64(vec![0; 4])));
    });
    assert!(msg.contains("int64"), "{msg}");
}

#[test]
fn pytorch_state_loads_into_layers_built_on_our_own_graphs() {
    // Our k-nearest graph has the same neighbour sets as idx_flow's BallTree up
    // to the order of tied neighbours; PyTorch's `connection_indices` buffer
    // replaces it on loading, as `load_state_dict` does in PyTorch.
    let file = layers_file();
    let case = cases(&file)
        .into_iter()
        .find(|c| c.class == "SpatialConv" && c.train)
        .expect("a SpatialConv case");
    let name = &case.name;
    let d = Device::default();
    let sd = case_state(&file, name);
    let (xs, ys) = (
        file.shape(&format!("{name}.input")).unwrap(),
        file.shape(&format!("{name}.output")).unwrap(),
    );
    let ks = sd.get("kernel").unwrap().shape.clone();
    let (gi, go) = (crate::common::grid(xs[1]), crate::common::grid(ys[1]));
    let mut graph = ConnectionGraph::knn(gi, go, ks[0]).unwrap();
    let weighted = sd.get("kernel_weights").is_some();
    if weighted {
        graph = graph.with_weights(WeightMethod::InverseSquare).unwrap();
    }
    let conv = SpatialConvConfig::new(ks[1], ks[2])
        .with_use_graph_weights(weighted)
        .init(&graph, &d)
        .unwrap();
    let conv = load_state_dict(conv, &sd).unwrap();
    let y = conv.forward(tensor(&file, &format!("{name}.input"), &d));
    let (yv, ys) = tensor_to_vec(y);
    let (rv, rs) = file.f32(&format!("{name}.output")).unwrap();
    assert_close(
        &format!("{name} output (our graph, PyTorch state)"),
        &yv,
        &ys,
        &rv,
        &rs,
    );
    // Saving gives PyTorch's names and shapes back.
    let back = state_dict(&conv).unwrap();
    assert_eq!(back.keys(), sd.keys());
    for (k, t) in sd.iter() {
        assert_eq!(back.get(k).unwrap(), t, "{k}");
    }
}

#[test]
fn max_pooling_sends_the_gradient_of_a_tie_to_the_first_slot() {
    // PyTorch's max over a dimension picks the first of equal maxima, so after
    // a ReLU (many zeros) only the first tied neighbour gets the gradient.
    let d = Device::default().autodiff();
    let x = Tensor::<3>::from_floats([[[0.0], [0.0], [3.0], [3.0], [0.0]]], &d).require_grad();
    let s = SqueezeConfig::new().with_reduction(PoolType::Max).init();
    let grads = s.forward(x.clone()).sum().backward();
    assert_eq!(values(x.grad(&grads).unwrap()), [0.0, 0.0, 1.0, 0.0, 0.0]);
    let x = Tensor::<3>::zeros([1, 3, 1], &d).require_grad();
    let grads = s.forward(x.clone()).sum().backward();
    assert_eq!(values(x.grad(&grads).unwrap()), [1.0, 0.0, 0.0]);
}
