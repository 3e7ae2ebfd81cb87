//! pdequinox's architectures (`idx_flow_pde::{Sequential, Hierarchical, ConvNet}`
//! and the configs of `pde::arch`): parameter counts and receptive fields of
//! every entry of `pdequinox_archs_manifest.json` (defaults and variants in
//! 1-3 D, as pdequinox 0.1.2 reports them), outputs and gradients of the tiny
//! networks of `pdequinox_archs.safetensors`, the errors of bad arguments, and
//! an FNO that learns one step of 1-D advection.
//!
//! Cases and their constructor arguments come from the manifest, so any file
//! written by `fixtures/make_pdequinox_archs.py` runs (from
//! `IDX_FLOW_FIXTURES` when it holds one, else from the workspace's `fixtures/`).

use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use idx_flow_pde::*;

#[test]
fn architectures_keep_the_grid_and_batch() {
    let device = Device::default();
    let x = Tensor::<4>::random([3, 2, 8, 12], Distribution::Normal(0.0, 1.0), &device);
    // The two kinds of network pdequinox's architectures build.
    enum Arch {
        Seq(Sequential),
        Hier(Hierarchical),
    }
    impl Arch {
        fn forward(&self, x: Tensor<4>) -> Tensor<4> {
            match self {
                Arch::Seq(m) => m.forward(x),
                Arch::Hier(m) => m.forward(x),
            }
        }
    }
    let nets: Vec<(&str, Arch)> = vec![
        (
            "modern unet",
            Arch::Hier(
                ModernUNetConfig::new(2, 2, 5)
                    .with_hidden_channels(4)
                    .with_num_levels(2)
                    .with_boundary_mode(BoundaryMode::Neumann)
                    .init(&device)
                    .unwrap(),
            ),
        ),
        (
            "dilated resnet",
            Arch::Seq(
                DilatedResNetConfig::new(2, 2, 5)
                    .with_hidden_channels(4)
                    .init(&device)
                    .unwrap(),
            ),
        ),
        (
            "fno",
            Arch::Seq(
                ClassicFnoConfig::new(2, 2, 5)
                    .with_hidden_channels(4)
                    .with_num_modes(vec![3, 4])
                    .init(&device)
                    .unwrap(),
            ),
        ),
    ];
    for (what, net) in nets {
        let y = net.forward(x.clone());
        assert_eq!(y.dims(), [3, 5, 8, 12], "{what}");
        // Each sample is processed on its own (group norms are per sample).
        let one = net.forward(x.clone().narrow(0, 1, 1));
        let (a, _) = idx_flow_core::state_dict::tensor_to_vec(y.narrow(0, 1, 1));
        let (b, _) = idx_flow_core::state_dict::tensor_to_vec(one);
        let worst = a
            .iter()
            .zip(&b)
            .fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(worst < 1e-4, "{what}: sample 1 alone differs by {worst}");
    }
}

#[test]
fn architecture_arguments_are_checked() {
    let device = Device::default();
    let p = BoundaryMode::Periodic;
    let err = |r: idx_flow_healpix::Result<()>| r.unwrap_err().to_string();
    let e = err(
        SequentialConfig::new(1, 1, 1, vec![4, 4], 2, PdeActivation::Relu, p)
            .init(&device)
            .map(|_| ()),
    );
    assert!(e.contains("hidden_channels") && e.contains('3'), "{e}");
    let e = err(ClassicResNetConfig::new(1, 1, 1)
        .with_num_blocks(0)
        .init(&device)
        .map(|_| ()));
    assert!(e.contains("num_blocks"), "{e}");
    let e = err(ModernUNetConfig::new(1, 1, 1)
        .with_channel_multipliers(Some(vec![2, 4]))
        .init(&device)
        .map(|_| ()));
    assert!(e.contains("channel_multipliers") && e.contains('4'), "{e}");
    let e = err(ClassicFnoConfig::new(4, 1, 1).init(&device).map(|_| ()));
    assert!(e.contains("num_spatial_dims"), "{e}");
    let e = err(ClassicUNetConfig::new(1, 1, 1)
        .with_hidden_channels(0)
        .init(&device)
        .map(|_| ()));
    assert!(e.contains("hidden_channels"), "{e}");

    let unet = ClassicUNetConfig::new(1, 2, 1)
        .with_hidden_channels(2)
        .with_num_levels(3)
        .init(&device)
        .unwrap();
    let bad = Tensor::<3>::zeros([1, 2, 12], &device);
    let e = unet.try_forward(bad).unwrap_err().to_string();
    assert!(e.contains("multiples of") && e.contains('8'), "{e}");
    let bad = Tensor::<3>::zeros([1, 3, 16], &device);
    assert!(unet.try_forward(bad).is_err());
    let bad = Tensor::<4>::zeros([1, 2, 16, 16], &device);
    assert!(unet.try_forward(bad).is_err());
    let net = ConvNetConfig::new(2, 1, 1).init(&device).unwrap();
    let e = net
        .try_forward(Tensor::<4>::zeros([1, 2, 8, 8], &device))
        .unwrap_err()
        .to_string();
    assert!(e.contains("PhysicsConv input"), "{e}");
}

/// `n` fields on `cells` periodic cells, each a random sum of the lowest
/// `modes` Fourier modes, and the same fields advected by `shift` cells
/// (the exact solution of `u_t + c u_x = 0` after one step, `c·dt = shift·h`).
fn advection_pairs(
    n: usize,
    cells: usize,
    modes: usize,
    shift: f64,
    seed: u64,
) -> (Vec<f32>, Vec<f32>) {
    let mut state = seed;
    let mut uniform = || {
        // SplitMix64: reproducible data without a new dependency.
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let (mut u0, mut u1) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let coef: Vec<(f64, f64)> = (1..=modes)
            .map(|k| (uniform() / k as f64, uniform() / k as f64))
            .collect();
        let field = |x: f64| -> f64 {
            coef.iter().enumerate().fold(0.0, |s, (i, &(a, b))| {
                let kx = std::f64::consts::TAU * (i + 1) as f64 * x / cells as f64;
                s + a * kx.sin() + b * kx.cos()
            })
        };
        for j in 0..cells {
            u0.push(field(j as f64) as f32);
            u1.push(field(j as f64 - shift) as f32);
        }
    }
    (u0, u1)
}

/// The example: an FNO learns one step of periodic 1-D advection by 1.5 cells
/// from 32 pairs, and its error on 16 other fields falls by more than 5×.
#[test]
fn an_fno_learns_one_step_of_advection() {
    let device = Device::default().autodiff();
    let cells = 32;
    let tensor =
        |v: Vec<f32>, n: usize| Tensor::<3>::from_data(TensorData::new(v, [n, 1, cells]), &device);
    let (x, y) = advection_pairs(32, cells, 4, 1.5, 1);
    let (x, y) = (tensor(x, 32), tensor(y, 32));
    let (xt, yt) = advection_pairs(16, cells, 4, 1.5, 2);
    let (xt, yt) = (tensor(xt, 16), tensor(yt, 16));
    let mut net = idx_flow_core::init::with_seed(3, || {
        ClassicFnoConfig::new(1, 1, 1)
            .with_hidden_channels(8)
            .with_num_modes(vec![6])
            .with_num_blocks(2)
            .init(&device)
            .unwrap()
    });
    let rel_err = |net: &Sequential| -> f64 {
        let e = (net.forward(xt.clone()) - yt.clone()).powi_scalar(2).sum();
        let n = yt.clone().powi_scalar(2).sum();
        let r = (e / n).sqrt().into_data().iter::<f32>().next().unwrap();
        r as f64
    };
    let before = rel_err(&net);
    let mut optim = AdamConfig::new().init();
    for _ in 0..60 {
        let loss = (net.forward(x.clone()) - y.clone()).powi_scalar(2).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        net = optim.step(1e-2, net, grads);
    }
    let after = rel_err(&net);
    eprintln!("FNO on advection: held-out relative L2 error {before:.3} -> {after:.3}");
    assert!(after < before / 5.0, "error {before:.3} -> {after:.3}");
}
