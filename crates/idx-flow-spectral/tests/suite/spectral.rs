//! The spectral mixers and hybrid blocks (`idx_flow_spectral`): every case of
//! `spectrans.safetensors` (spectrans 0.1.0, PyTorch) with its output, input
//! gradient and every parameter gradient of `sum(output * output_cotangent)`;
//! the cases where spectrans is wrong, checked for the correct behaviour; the
//! transforms against closed forms; and a small GFNet/FNet regressor on
//! HEALPix pixel sequences that learns.
//!
//! Cases, classes and constructor arguments come from `spectrans_manifest.json`
//! and the tensors of the file, so any fixture set of `make_spectrans.py` runs.
use std::f64::consts::TAU;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use idx_flow_core::state_dict::{state_dict, tensor_to_vec};
use idx_flow_healpix::geometry::HealpixGrid;
use idx_flow_nn::{LinearConfig, SpatialSelfAttentionConfig};
use idx_flow_spectral::transforms::{
    Dwt, WaveletFilters, daubechies, dct, dft, dst, hadamard, linear_interpolation,
};
use idx_flow_spectral::*;

use idx_flow_testing::compare::{assert_close, tensor};
use idx_flow_testing::fixtures;

/// Re(fft2(x, norm="ortho")) of one `[N, H]` sample, by the definition in float64.
fn real_dft2(x: &[f32], n: usize, h: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * h];
    for k in 0..n {
        for l in 0..h {
            let mut re = 0.0;
            for a in 0..n {
                for b in 0..h {
                    let ang = TAU * (k * a) as f64 / n as f64 + TAU * (l * b) as f64 / h as f64;
                    re += x[a * h + b] as f64 * ang.cos();
                }
            }
            out[k * h + l] = re / ((n * h) as f64).sqrt();
        }
    }
    out
}

#[test]
fn real_fourier_mixing_is_the_identity_in_spectrans_and_mixes_here() {
    let file = fixtures::open("spectrans.safetensors");
    let device = Device::default();
    let name = "real_fourier_mixing";
    if !file.contains(&format!("{name}.output")) {
        return;
    }
    let (xv, xs) = file.f32(&format!("{name}.input")).unwrap();
    let (yv, ys) = file.f32(&format!("{name}.output")).unwrap();
    // spectrans' layer returns its input: irfft2(rfft2(x)).
    assert_close("spectrans RealFourierMixing = identity", &yv, &ys, &xv, &xs);
    // The layer it should be is FNet's real part of the 2-D DFT.
    let x: Tensor<3> = tensor(&file, &format!("{name}.input"), &device);
    let (ov, os) = tensor_to_vec(FourierMixing::new().forward(x));
    let (b, n, h) = (xs[0], xs[1], xs[2]);
    let reference: Vec<f32> = (0..b)
        .flat_map(|i| real_dft2(&xv[i * n * h..(i + 1) * n * h], n, h))
        .map(|v| v as f32)
        .collect();
    assert_close(
        "FourierMixing vs the DFT's definition",
        &ov,
        &os,
        &reference,
        &xs,
    );
    let moved = ov
        .iter()
        .zip(&xv)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(moved > 0.1, "FourierMixing must mix (max change {moved})");
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// `m·mᵀ` of a row-major `[n, n]` matrix.
fn gram(m: &[f64], n: usize) -> Vec<f64> {
    let mut g = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            g[i * n + j] = (0..n).map(|k| m[i * n + k] * m[j * n + k]).sum();
        }
    }
    g
}

fn eye(n: usize) -> Vec<f64> {
    (0..n * n)
        .map(|i| if i / n == i % n { 1.0 } else { 0.0 })
        .collect()
}

#[test]
fn transforms_are_orthonormal_and_match_closed_forms() {
    for n in [1, 2, 5, 12, 16, 48] {
        // DFT: F·F^H = I, i.e. (C + iS)(C − iS)ᵀ: CCᵀ + SSᵀ = I and SCᵀ − CSᵀ = 0.
        let (c, s) = dft(n);
        let cc = gram(&c, n);
        let ss = gram(&s, n);
        let sum: Vec<f64> = cc.iter().zip(&ss).map(|(a, b)| a + b).collect();
        assert!(max_abs_diff(&sum, &eye(n)) < 1e-12, "DFT {n}");
        // A cosine of frequency k0 has spectrum √N/2 at ±k0 (√N at 0 or N/2).
        let k0 = n / 3;
        let wave: Vec<f64> = (0..n)
            .map(|j| (TAU * (k0 * j) as f64 / n as f64).cos())
            .collect();
        for k in 0..n {
            let re: f64 = (0..n).map(|j| c[k * n + j] * wave[j]).sum();
            let hits = usize::from(k == k0) + usize::from((n - k) % n == k0);
            let want = hits as f64 * (n as f64).sqrt() / 2.0;
            assert!((re - want).abs() < 1e-9, "DFT of a cosine, n {n} k {k}");
        }
        assert!(max_abs_diff(&gram(&dct(n), n), &eye(n)) < 1e-12, "DCT {n}");
        assert!(max_abs_diff(&gram(&dst(n), n), &eye(n)) < 1e-12, "DST {n}");
        // DCT-II of a constant is √N at frequency 0 only.
        let d = dct(n);
        for k in 0..n {
            let v: f64 = (0..n).map(|j| d[k * n + j]).sum();
            let want = if k == 0 { (n as f64).sqrt() } else { 0.0 };
            assert!((v - want).abs() < 1e-9, "DCT of ones, n {n} k {k}");
        }
        // DST-II of the alternating sequence (−1)^j is √N at the last frequency only.
        let t = dst(n);
        for k in 0..n {
            let v: f64 = (0..n)
                .map(|j| t[k * n + j] * if j % 2 == 0 { 1.0 } else { -1.0 })
                .sum();
            let want = if k == n - 1 { (n as f64).sqrt() } else { 0.0 };
            assert!((v - want).abs() < 1e-9, "DST of (−1)^j, n {n} k {k}");
        }
    }
    // Hadamard: Sylvester's recursion H_2n = [[H, H], [H, −H]]/√2.
    let mut sylvester = vec![1.0];
    let mut n = 1;
    while n < 32 {
        let mut next = vec![0.0; 4 * n * n];
        for i in 0..n {
            for j in 0..n {
                let v = sylvester[i * n + j] / 2f64.sqrt();
                next[i * 2 * n + j] = v;
                next[i * 2 * n + j + n] = v;
                next[(i + n) * 2 * n + j] = v;
                next[(i + n) * 2 * n + j + n] = -v;
            }
        }
        sylvester = next;
        n *= 2;
        assert!(
            max_abs_diff(&hadamard(n).unwrap(), &sylvester) < 1e-12,
            "Hadamard {n}"
        );
    }
    assert!(hadamard(12).is_err());
    // Interpolation rows sum to one and reproduce linear functions inside the range.
    let m = linear_interpolation(20, 16);
    for i in 0..16 {
        let row = &m[i * 20..(i + 1) * 20];
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
}

#[test]
fn daubechies_filters_match_closed_forms_and_reconstruct_perfectly() {
    // db2 in closed form: (1 + √3, 3 + √3, 3 − √3, 1 − √3)/(4√2).
    let r3 = 3f64.sqrt();
    let db2: Vec<f64> = [1.0 + r3, 3.0 + r3, 3.0 - r3, 1.0 - r3]
        .iter()
        .map(|v| v / (4.0 * 2f64.sqrt()))
        .collect();
    assert!(max_abs_diff(&daubechies(2).unwrap(), &db2) < 1e-15);
    for order in 1..=8 {
        let h = daubechies(order).unwrap();
        // Σh = √2, Σh² = 1, orthogonal to its even shifts, p vanishing moments.
        assert!(
            (h.iter().sum::<f64>() - 2f64.sqrt()).abs() < 1e-12,
            "db{order}"
        );
        for shift in (0..h.len()).step_by(2) {
            let dot: f64 = (0..h.len() - shift).map(|k| h[k] * h[k + shift]).sum();
            let want = if shift == 0 { 1.0 } else { 0.0 };
            assert!((dot - want).abs() < 1e-10, "db{order} shift {shift}");
        }
        let f = WaveletFilters::named(&format!("db{order}")).unwrap();
        for moment in 0..order {
            let m: f64 = f
                .rec_hi
                .iter()
                .enumerate()
                .map(|(k, v)| v * (k as f64).powi(moment as i32))
                .sum();
            assert!(m.abs() < 1e-6, "db{order} moment {moment}: {m}");
        }
        for n in [1, 7, 12, 16, 48] {
            for levels in 1..=3 {
                let dwt = Dwt::new(&f, levels, n).unwrap();
                let err = max_abs_diff(&dwt.with_gains(&vec![1.0; levels + 1]), &eye(n));
                assert!(err < 1e-9, "db{order} n {n} levels {levels}: {err}");
            }
        }
    }
    // Haar, one level, symmetric mode: c_k = (x_{2k} + x_{2k+1})/√2 (PyWavelets' dwt).
    let dwt = Dwt::new(&WaveletFilters::named("haar").unwrap(), 1, 4).unwrap();
    let (len, a, _) = &dwt.bands[0];
    assert_eq!(*len, 2);
    let s = 1.0 / 2f64.sqrt();
    assert!(max_abs_diff(a, &[s, s, 0.0, 0.0, 0.0, 0.0, s, s]) < 1e-15);
    assert!(WaveletFilters::named("sym4").is_err());
}

#[test]
fn spectral_attention_estimates_softmax_attention_with_a_positive_normaliser() {
    let device = Device::default();
    let (h, n) = (4, 10);
    let attn = idx_flow_core::init::with_seed(3, || {
        SpectralAttentionConfig::new(h)
            .with_num_heads(1)
            .with_num_features(Some(4096))
            .init(&device)
    })
    .unwrap();
    // ω ~ N(0, I): mean squared norm d.
    let (w, _) = tensor_to_vec(attn.projection.clone());
    let msq: f64 = w.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / 4096.0;
    assert!((msq - h as f64).abs() < 0.3, "mean |ω|² = {msq}");
    let x = Tensor::<3>::random([1, n, h], Distribution::Normal(0.0, 0.5), &device);
    let ours = attn.forward(x.clone());
    // Exact softmax attention with the same projections.
    let q = attn.q_proj.forward(x.clone());
    let k = attn.k_proj.forward(x.clone());
    let v = attn.v_proj.forward(x);
    let scores = q.matmul(k.swap_dims(1, 2)) / (h as f64).sqrt();
    let exact = attn
        .out_proj
        .forward(burn::tensor::activation::softmax(scores, 2).matmul(v));
    let err = (ours - exact.clone()).abs().max().into_scalar::<f32>();
    let scale = exact.abs().max().into_scalar::<f32>();
    assert!(
        err < 0.05 * scale.max(1.0),
        "FAVOR+ error {err} (scale {scale})"
    );
    // Huge inputs: the max-shift keeps features finite and the normaliser positive.
    let big = Tensor::<3>::random([2, n, h], Distribution::Normal(0.0, 60.0), &device);
    for kernel in [AttentionKernel::Softmax, AttentionKernel::Gaussian] {
        let a = SpectralAttentionConfig::new(h)
            .with_num_heads(2)
            .with_kernel(kernel)
            .init(&device)
            .unwrap();
        let (v, _) = tensor_to_vec(a.forward(big.clone()));
        assert!(
            v.iter().all(|x| x.is_finite()),
            "{kernel:?}: non-finite output"
        );
    }
}

#[test]
fn hard_gate_selects_one_mixer_and_still_trains_the_gate() {
    let device = Device::default().autodiff();
    let layers = vec![
        Mixer::from(FourierMixing1d::new()),
        Mixer::from(GlobalFilterMixingConfig::new(8, 12).init(&device).unwrap()),
    ];
    let block = AdaptiveBlockConfig::new(8)
        .with_gate(Gate::Hard)
        .init(layers, &device)
        .unwrap();
    let x = Tensor::<3>::random([3, 12, 8], Distribution::Normal(0.0, 1.0), &device);
    let y = block.forward(x.clone());
    // Forward: exactly the arg-max mixer per sample.
    let normed = block.norm1.forward(x.clone());
    let w = block.weights(normed.clone());
    let (wv, _) = tensor_to_vec(w);
    assert!(wv.iter().all(|&v| v == 0.0 || v == 1.0), "{wv:?}");
    for b in 0..3 {
        let pick = if wv[2 * b] == 1.0 { 0 } else { 1 };
        let xb = x.clone().narrow(0, b, 1);
        let nb = normed.clone().narrow(0, b, 1);
        let hb = xb + block.layers[pick].forward(nb);
        let want = hb.clone() + tail(&block, hb);
        let got = y.clone().narrow(0, b, 1);
        let err = (got - want).abs().max().into_scalar::<f32>();
        assert!(err < 1e-5, "sample {b}: {err}");
    }
    // Backward: the gate gets a gradient through the straight-through estimator.
    let grads = y.sum().backward();
    let g = block.gate.weight.val().grad(&grads).expect("gate gradient");
    let gmax = g.abs().max().into_scalar::<f32>();
    assert!(gmax > 0.0, "the hard gate must train");
}

/// `ffn(norm2(h))` of a hybrid block, from its state (norm2 and ffn are private).
fn tail(block: &AdaptiveBlock<Mixer>, h: Tensor<3>) -> Tensor<3> {
    let sd = state_dict(block).unwrap();
    let device = h.device();
    let get = |k: &str| {
        let t = sd.get(k).unwrap();
        let v = t.f32(k).unwrap().to_vec();
        (v, t.shape.clone())
    };
    let vec1 = |k: &str| {
        let (v, s) = get(k);
        Tensor::<1>::from_data(TensorData::new(v, [s[0]]), &device)
    };
    let mat = |k: &str| {
        let (v, s) = get(k);
        Tensor::<2>::from_data(TensorData::new(v, [s[0], s[1]]), &device)
    };
    let mean = h.clone().mean_dim(2);
    let c = h - mean;
    let var = c.clone().square().mean_dim(2);
    let n = c / (var + 1e-12).sqrt() * vec1("norm2.weight").reshape([1, 1, 8])
        + vec1("norm2.bias").reshape([1, 1, 8]);
    let [b, t, _] = n.dims();
    let f1 = n
        .reshape([b * t, 8])
        .matmul(mat("ffn.fc1.weight").transpose())
        + vec1("ffn.fc1.bias").unsqueeze::<2>();
    let f1 = burn::tensor::activation::gelu(f1);
    let f2 = f1.matmul(mat("ffn.fc2.weight").transpose()) + vec1("ffn.fc2.bias").unsqueeze::<2>();
    f2.reshape([b, t, 8])
}

#[test]
fn afno_is_block_diagonal_and_resolution_free() {
    let device = Device::default();
    let cfg = AfnoMixingConfig::new(16).with_num_blocks(Some(4));
    let afno = cfg.init(&device).unwrap();
    // 2 complex layers of 4 blocks of 4×4, plus complex biases: independent of N.
    assert_eq!(afno.num_params(), 2 * (2 * 4 * 4 * 4 + 2 * 16));
    for n in [12, 48, 192] {
        let x = Tensor::<3>::random([2, n, 16], Distribution::Normal(0.0, 1.0), &device);
        assert_eq!(afno.forward(x).dims(), [2, n, 16]);
    }
    // With λ larger than any spectral value the shrinkage zeroes the filter:
    // the layer is its residual.
    let mut shrunk = afno.clone();
    shrunk.sparsity_threshold = 1e6;
    let x = Tensor::<3>::random([1, 48, 16], Distribution::Normal(0.0, 1.0), &device);
    let err = (shrunk.forward(x.clone()) - x.clone())
        .abs()
        .max()
        .into_scalar::<f32>();
    assert_eq!(err, 0.0);
    // Channels of different blocks do not mix: a perturbation of block 0's
    // channels leaves the other blocks' outputs unchanged.
    let mut bump = vec![0f32; 48 * 16];
    for p in 0..48 {
        bump[p * 16] = 1.0;
    }
    let bump = Tensor::<3>::from_data(TensorData::new(bump, [1, 48, 16]), &device);
    let d = afno.forward(x.clone() + bump) - afno.forward(x);
    let others = d.narrow(2, 4, 12).abs().max().into_scalar::<f32>();
    assert!(others < 1e-6, "{others}");
    assert!(cfg.with_num_blocks(Some(3)).init(&device).is_err());
}

#[test]
fn mixers_refuse_wrong_inputs_with_errors() {
    let device = Device::default();
    let gf = GlobalFilterMixingConfig::new(8, 16).init(&device).unwrap();
    let e = gf
        .try_forward(Tensor::zeros([1, 16, 5], &device))
        .unwrap_err()
        .to_string();
    assert!(e.contains("GlobalFilterMixing") && e.contains('8'), "{e}");
    assert!(
        FourierMixing::new()
            .try_forward(Tensor::zeros([1, 0, 4], &device))
            .is_err()
    );
    let afno = SpectransAfnoMixingConfig::new(8, 16).init(&device).unwrap();
    assert!(
        afno.try_forward(Tensor::zeros([1, 20, 8], &device))
            .is_err()
    );
    assert!(
        SpectralAttentionConfig::new(8)
            .with_num_heads(3)
            .init(&device)
            .is_err()
    );
    assert!(
        WaveletMixingConfig::new(8)
            .with_wavelet("db9".into())
            .init(&device)
            .is_err()
    );
    assert!(
        CascadeBlockConfig::new(8)
            .init(Vec::<Mixer>::new(), &device)
            .is_err()
    );
}

#[test]
fn self_attention_and_spectral_mixers_share_a_block() {
    let device = Device::default();
    let layers = vec![
        Mixer::from(SpatialSelfAttentionConfig::new(8, 2).init(&device).unwrap()),
        Mixer::from(
            LstAttentionConfig::new(8)
                .with_num_heads(2)
                .init(&device)
                .unwrap(),
        ),
        Mixer::from(
            WaveletMixingConfig::new(8)
                .with_levels(2)
                .init(&device)
                .unwrap(),
        ),
        Mixer::from(AfnoMixingConfig::new(8).init(&device).unwrap()),
    ];
    let block = CascadeBlockConfig::new(8).init(layers, &device).unwrap();
    let x = Tensor::<3>::random([2, 48, 8], Distribution::Normal(0.0, 1.0), &device);
    assert_eq!(block.forward(x).dims(), [2, 48, 8]);
    let keys = state_dict(&block).unwrap();
    assert!(keys.get("layers.0.qkv_proj.weight").is_some());
    assert!(keys.get("layers.2.dwt.dec_lo").is_some());
    assert!(keys.get("norms.3.weight").is_some());
}

#[test]
fn a_graph_convolution_on_a_same_resolution_graph_is_a_token_mixer() {
    use idx_flow_healpix::geometry::HealpixGrid;
    use idx_flow_healpix::graphs::ConnectionGraph;
    use idx_flow_nn::SpatialConvConfig;
    let device = Device::default();
    let grid = || HealpixGrid::nested(2).unwrap();
    let same = ConnectionGraph::knn(grid(), grid(), 5).unwrap();
    let conv = SpatialConvConfig::new(8, 8).init(&same, &device).unwrap();
    let layers = vec![Mixer::from(conv), Mixer::from(FourierMixing1d::new())];
    let block = CascadeBlockConfig::new(8).init(layers, &device).unwrap();
    let ad = device.clone().autodiff();
    let block = block.fork(&ad);
    let x = Tensor::<3>::random([2, 48, 8], Distribution::Normal(0.0, 1.0), &ad).require_grad();
    let y = block.forward(x.clone());
    assert_eq!(y.dims(), [2, 48, 8]);
    let grads = (y.clone() * y).sum().backward();
    let gx = x.grad(&grads).expect("input gradient");
    assert!(gx.abs().sum().into_scalar::<f32>() > 0.0);

    // A graph to a coarser grid, or a change of width, is no token mixer.
    let down = ConnectionGraph::knn(grid(), HealpixGrid::nested(1).unwrap(), 4).unwrap();
    let x = Tensor::<3>::random([2, 48, 8], Distribution::Normal(0.0, 1.0), &device);
    let conv = SpatialConvConfig::new(8, 8).init(&down, &device).unwrap();
    assert!(TokenMixer::try_forward(&conv, x.clone()).is_err());
    let wider = SpatialConvConfig::new(8, 16).init(&same, &device).unwrap();
    assert!(TokenMixer::try_forward(&wider, x).is_err());
}

/// A GFNet/FNet-style regressor on HEALPix pixel sequences.
#[derive(Module, Debug)]
struct Regressor {
    embed: idx_flow_nn::Linear,
    gfnet: TransformerBlock<GlobalFilterMixing>,
    fnet: TransformerBlock<FourierMixing1d>,
    head: idx_flow_nn::Linear,
}

impl Regressor {
    fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        let h = self.fnet.forward(self.gfnet.forward(self.embed.forward(x)));
        let [b, _, c] = h.dims();
        self.head.forward(h.mean_dim(1).reshape([b, c]))
    }
}

#[test]
fn a_spectral_regressor_on_healpix_sequences_learns() {
    let device = Device::default().autodiff();
    let grid = HealpixGrid::ring(2).unwrap();
    let n = grid.npix() as usize; // 48 pixels
    let (hidden, batch) = (8, 16);
    let model = idx_flow_core::init::with_seed(11, || -> idx_flow_healpix::Result<Regressor> {
        Ok(Regressor {
            embed: LinearConfig::new(1, hidden).init(&device)?,
            gfnet: TransformerBlockConfig::new(hidden)
                .with_ffn_hidden_dim(Some(16))
                .init(
                    GlobalFilterMixingConfig::new(hidden, n).init(&device)?,
                    &device,
                )?,
            fnet: TransformerBlockConfig::new(hidden)
                .with_ffn_hidden_dim(Some(16))
                .init(FourierMixing1d::new(), &device)?,
            head: LinearConfig::new(hidden, 1).init(&device)?,
        })
    })
    .unwrap();
    // Random maps whose amplitude varies with the sample; target: the map's
    // power (1/N)·Σ_p x_p², which needs the whole sequence.
    let amp: Vec<f32> = (0..batch).map(|i| 0.5 + i as f32 / batch as f32).collect();
    let amp = Tensor::<3>::from_data(TensorData::new(amp, [batch, 1, 1]), &device);
    let x = idx_flow_core::init::with_seed(5, || {
        Tensor::<3>::random([batch, n, 1], Distribution::Normal(0.0, 1.0), &device)
    }) * amp;
    let target = x.clone().square().reshape([batch, n]).mean_dim(1);
    let mut model = model;
    let mut optim = AdamConfig::new().init();
    let mut losses = Vec::new();
    for _ in 0..25 {
        let pred = model.forward(x.clone());
        let loss = (pred - target.clone()).square().mean();
        losses.push(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(last < 0.5 * first, "loss {first} -> {last}: {losses:?}");
}

#[test]
fn global_filters_with_a_unit_filter_are_the_identity_and_separable_fourier_factorises() {
    let device = Device::default();
    let x = Tensor::<3>::random([2, 12, 6], Distribution::Normal(0.0, 1.0), &device);
    let cfg = GlobalFilterMixingConfig::new(6, 12).with_activation(FilterActivation::Identity);
    let mut gf = cfg.init(&device).unwrap();
    let mut gf2 = cfg.init_2d(&device).unwrap();
    let one = burn::module::Param::from_tensor(Tensor::<2>::ones([12, 6], &device));
    let zero = burn::module::Param::from_tensor(Tensor::<2>::zeros([12, 6], &device));
    gf.filter_real = one.clone();
    gf.filter_imag = zero.clone();
    gf2.filter_real = one;
    gf2.filter_imag = zero;
    // Re(F⁻¹(1·F x)) = x, on the configured length and, interpolated, on others.
    for n in [12, 7, 20] {
        let xn = Tensor::<3>::random([2, n, 6], Distribution::Normal(0.0, 1.0), &device);
        for y in [gf.forward(xn.clone()), gf2.forward(xn.clone())] {
            let err = (y - xn.clone()).abs().max().into_scalar::<f32>();
            assert!(err < 1e-5, "n {n}: {err}");
        }
    }
    // C_N·X·C_H: the 1-D transform along the sequence, then along the hidden axis.
    let sep = SeparableFourierMixing::new().forward(x.clone());
    let seq = FourierMixing1d::new().forward(x.clone());
    let both = FourierMixing1d::new()
        .forward(seq.swap_dims(1, 2))
        .swap_dims(1, 2);
    let err = (sep - both).abs().max().into_scalar::<f32>();
    assert!(err < 1e-5, "{err}");
    let block = TransformerBlockConfig::new(6)
        .init_parallel(FourierMixing::new(), &device)
        .unwrap();
    assert_eq!(block.forward(x).dims(), [2, 12, 6]);
}

/// Forward `(Re, Im)` of the dense, factored and native DFT paths and the
/// input gradients of `Σ Re·gr + Im·gi` (random cotangents), for a real or
/// complex input.
fn dft_all_paths(n: usize, complex: bool, inverse: bool) -> [(Vec<f32>, Vec<f32>); 3] {
    use idx_flow_spectral::fft::{DftPath, dft_seq};
    let device = Device::default().autodiff();
    let shape = [2, n, 3];
    let normal = Distribution::Normal(0.0, 1.0);
    let xr = Tensor::<3>::random(shape, normal, &device);
    let xi = Tensor::<3>::random(shape, normal, &device);
    let (gr, gi) = (
        Tensor::<3>::random(shape, normal, &device),
        Tensor::<3>::random(shape, normal, &device),
    );
    [DftPath::Dense, DftPath::Factored, DftPath::Native].map(|path| {
        let (ar, ai) = (xr.clone().require_grad(), xi.clone().require_grad());
        let (yr, yi) = dft_seq(ar.clone(), complex.then(|| ai.clone()), inverse, path);
        let out = Tensor::cat(vec![yr.clone(), yi.clone()], 1);
        let grads = (yr * gr.clone() + yi * gi.clone()).sum().backward();
        let mut grad = tensor_to_vec(ar.grad(&grads).unwrap()).0;
        if complex {
            grad.extend(tensor_to_vec(ai.grad(&grads).unwrap()).0);
        }
        (tensor_to_vec(out.inner()).0, grad)
    })
}

#[test]
fn factored_and_native_ffts_equal_the_dense_dft_with_their_gradients() {
    // HEALPix lengths 3·2^m (nside 1 to 16), powers of two, and lengths with
    // other factors (100 = 50·2; 202 = 2·101 with a prime base case).
    let sizes = [
        (12, true),
        (48, true),
        (96, false),
        (128, true),
        (192, false),
        (202, true),
        (768, true),
        (1024, false),
        (2048, false),
        (3072, false),
        (100, true),
    ];
    for (n, complex) in sizes {
        for inverse in [false, true] {
            let [(dv, dg), (fv, fg), (nv, ng)] = dft_all_paths(n, complex, inverse);
            // Orthonormal: entries are O(1); float32 rounding of the dense
            // O(N) sums dominates the difference.
            let tol = 2e-6 * (n as f32).sqrt().max(4.0);
            for (what, d, f) in [
                ("factored forward", &dv, &fv),
                ("factored gradient", &dg, &fg),
                ("native forward", &dv, &nv),
                ("native gradient", &dg, &ng),
            ] {
                let err = d
                    .iter()
                    .zip(f)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    err < tol,
                    "n {n} complex {complex} inverse {inverse} {what}: {err}"
                );
            }
        }
    }
}

#[test]
fn fourier_mixers_on_an_nside_32_sequence_train_by_the_fft() {
    // 12 288 pixels: the dense DFT would be a 12 288² matrix (0.6 GB per part).
    let n = 12 * 32 * 32;
    let device = Device::default().autodiff();
    let x = Tensor::<3>::random([1, n, 4], Distribution::Normal(0.0, 1.0), &device).require_grad();
    // Σ_k Re(F x)[k] = √N·x[0]: the gradient of the sum is √N at token 0, 0 elsewhere.
    let y = FourierMixing1d::new().forward(x.clone());
    let grads = y.sum().backward();
    let (g, _) = tensor_to_vec(x.grad(&grads).unwrap());
    let sqrt_n = (n as f32).sqrt();
    for (i, v) in g.iter().enumerate() {
        let want = if i < 4 { sqrt_n } else { 0.0 };
        assert!((v - want).abs() < 1e-3, "grad[{i}] = {v}, expected {want}");
    }
    // A unit global filter is the identity (forward and backward).
    let mut gf = GlobalFilterMixingConfig::new(4, n)
        .with_activation(FilterActivation::Identity)
        .init(&device)
        .unwrap();
    gf.filter_real = burn::module::Param::from_tensor(Tensor::<2>::ones([n, 4], &device));
    gf.filter_imag = burn::module::Param::from_tensor(Tensor::<2>::zeros([n, 4], &device));
    let y = gf.forward(x.clone());
    let err = (y.clone() - x.clone()).abs().max().into_scalar::<f32>();
    assert!(err < 1e-4, "unit filter at nside 32: {err}");
    let grads = y.sum().backward();
    assert!(gf.filter_real.grad(&grads).is_some());
    let g = x.grad(&grads).unwrap();
    let err = (g - 1.0).abs().max().into_scalar::<f32>();
    assert!(err < 1e-4, "unit filter gradient: {err}");
    // The other Fourier mixers run forward and backward at this length too.
    let afno = AfnoMixingConfig::new(4).init(&device).unwrap();
    let mixers = [
        Mixer::from(FourierMixing::new()),
        Mixer::from(SeparableFourierMixing::new()),
        Mixer::from(
            GlobalFilterMixingConfig::new(4, n)
                .init_2d(&device)
                .unwrap(),
        ),
        Mixer::from(afno),
    ];
    for m in mixers {
        let grads = m.forward(x.clone()).powf_scalar(2.0).sum().backward();
        let g = x.grad(&grads).unwrap();
        assert!(g.abs().max().into_scalar::<f32>().is_finite());
    }
}

#[test]
fn fourier_mixers_take_the_fft_above_the_crossover_and_match_the_definition() {
    use idx_flow_spectral::fft::FFT_MIN_LEN;
    // FNet's 2-D real part at 300 tokens (factored: 300 = 60·5) against the
    // definition in float64.
    let (n, h) = (300, 3);
    assert!(n >= FFT_MIN_LEN);
    let device = Device::default();
    let x = Tensor::<3>::random([1, n, h], Distribution::Normal(0.0, 1.0), &device);
    let (xv, xs) = tensor_to_vec(x.clone());
    let (ov, os) = tensor_to_vec(FourierMixing::new().forward(x.clone()));
    let reference: Vec<f32> = real_dft2(&xv, n, h).into_iter().map(|v| v as f32).collect();
    assert_close(
        "FourierMixing (FFT) vs definition",
        &ov,
        &os,
        &reference,
        &xs,
    );
    // GFNet's filter with random complex weights at 300 tokens against
    // Re(F⁻¹(w ⊙ F x)) computed by the definition in float64.
    let mut gf = GlobalFilterMixingConfig::new(h, n)
        .with_activation(FilterActivation::Identity)
        .with_filter_init_std(1.0)
        .init(&device)
        .unwrap();
    gf.filter_imag = burn::module::Param::from_tensor(gf.filter_imag.val() * 0.5);
    let (wr, _) = tensor_to_vec(gf.filter_real.val());
    let (wi, _) = tensor_to_vec(gf.filter_imag.val());
    let (ov, os) = tensor_to_vec(gf.forward(x));
    let angle = |a: usize| TAU * ((a % n) as f64) / n as f64;
    let mut reference = vec![0f32; n * h];
    for c in 0..h {
        // Filtered spectrum, then the inverse.
        let spec: Vec<(f64, f64)> = (0..n)
            .map(|k| {
                let (mut re, mut im) = (0.0, 0.0);
                for j in 0..n {
                    let v = xv[j * h + c] as f64;
                    re += v * angle(k * j).cos();
                    im -= v * angle(k * j).sin();
                }
                let (fr, fi) = (wr[k * h + c] as f64, wi[k * h + c] as f64);
                (re * fr - im * fi, re * fi + im * fr)
            })
            .collect();
        for j in 0..n {
            let v: f64 = (0..n)
                .map(|k| spec[k].0 * angle(k * j).cos() - spec[k].1 * angle(k * j).sin())
                .sum();
            reference[j * h + c] = (v / n as f64) as f32;
        }
    }
    assert_close(
        "GlobalFilterMixing (FFT) vs definition",
        &ov,
        &os,
        &reference,
        &xs,
    );
    // AFNO with zero weights and a complex bias b on the second layer keeps
    // all N/2 + 1 modes at b, so its output is x + irfft(b, …, b): the
    // factored (768) and the dense (100) inverse against the definition.
    for n in [100, 768] {
        let (h, bs) = (4, 2);
        let mut afno = AfnoMixingConfig::new(h)
            .with_num_blocks(Some(2))
            .with_sparsity_threshold(0.0)
            .init(&device)
            .unwrap();
        let zero = |t: burn::module::Param<Tensor<4>>| {
            burn::module::Param::from_tensor(t.val().zeros_like())
        };
        afno.w1 = zero(afno.w1);
        afno.w2 = zero(afno.w2);
        afno.b1 = burn::module::Param::from_tensor(afno.b1.val().zeros_like());
        let b2 = Tensor::<3>::random([2, h / bs, bs], Distribution::Normal(0.0, 1.0), &device);
        afno.b2 = burn::module::Param::from_tensor(b2.clone());
        let (bv, _) = tensor_to_vec(b2); // [re/im, channel]
        let x = Tensor::<3>::random([1, n, h], Distribution::Normal(0.0, 1.0), &device);
        let (ov, os) = tensor_to_vec(afno.forward(x.clone()) - x);
        let mut reference = vec![0f32; n * h];
        for j in 0..n {
            for c in 0..h {
                let mut v = 0.0;
                for k in 0..=n / 2 {
                    let w = if k == 0 || 2 * k == n { 1.0 } else { 2.0 };
                    let a = TAU * ((k * j) % n) as f64 / n as f64;
                    v += w * (bv[c] as f64 * a.cos() - bv[h + c] as f64 * a.sin());
                }
                reference[j * h + c] = (v / (n as f64).sqrt()) as f32;
            }
        }
        assert_close(&format!("AFNO irfft at {n}"), &ov, &os, &reference, &os);
    }
}
