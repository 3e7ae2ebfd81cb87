//! The fused 2-D Fourier mixing, `Re(F_N X F_W)` orthonormal: equal to the
//! direct sum for odd and even, tiny and larger `N` and `W` (more rows than
//! one task holds); its gradient is the adjoint (`⟨G, T x⟩ = ⟨T G, x⟩`);
//! results do not depend on the number of threads; and an empty axis is
//! refused.

use std::f64::consts::TAU;

use burn::tensor::{Device, Tensor, TensorData};
use idx_flow_kernels::fourier2::real_fft2;
use idx_flow_testing::rng::uniform as values;
use idx_flow_testing::threads::{bits, on_threads};

/// `Re Σ x[t, u]·e^{−2πi(st/N + hu/W)} / √(NW)` for one sample `[N, W]`,
/// in float64, with the phases reduced exactly (integer products mod N, W).
fn re_fft2(x: &[f32], n: usize, w: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * w];
    let scale = 1.0 / ((n * w) as f64).sqrt();
    for s in 0..n {
        for h in 0..w {
            let mut acc = 0.0;
            for t in 0..n {
                for u in 0..w {
                    let a =
                        TAU * (((s * t) % n) as f64 / n as f64 + ((h * u) % w) as f64 / w as f64);
                    acc += x[t * w + u] as f64 * a.cos();
                }
            }
            out[s * w + h] = acc * scale;
        }
    }
    out
}

#[test]
fn equals_the_direct_sum() {
    let device = Device::default();
    for (b, n, w) in [
        (2usize, 6usize, 8usize),
        (1, 5, 7),
        (3, 1, 4),
        (1, 4, 1),
        (1, 1, 1),
        (1, 3, 2),
        // More rows than one task's block, odd and composite lengths.
        (2, 37, 12),
        (1, 48, 45),
        // Even N (rows in pairs) with whole vector blocks, partial ones and
        // none: N/2 = 32, 35, 17; W = 48, 40, 33.
        (2, 64, 48),
        (1, 70, 40),
        (1, 34, 33),
        (1, 2, 3),
    ] {
        let x = values(b * n * w, (n * 31 + w) as u64);
        let xt = Tensor::<3>::from_data(TensorData::new(x.clone(), [b, n, w]), &device);
        let got: Vec<f32> = real_fft2(xt).unwrap().into_data().iter().collect();
        assert_eq!(got.len(), b * n * w);
        for s in 0..b {
            let want = re_fft2(&x[s * n * w..(s + 1) * n * w], n, w);
            for (i, e) in want.iter().enumerate() {
                let g = got[s * n * w + i];
                assert!(
                    (g as f64 - e).abs() < 1e-5 * (1.0 + e.abs()),
                    "[{b}, {n}, {w}] sample {s} value {i}: {g} against {e}"
                );
            }
        }
    }
}

#[test]
fn the_gradient_is_the_adjoint() {
    let device = Device::default().autodiff();
    for (b, n, w) in [(2usize, 6usize, 8usize), (1, 5, 7), (2, 33, 2)] {
        let xv = values(b * n * w, 5);
        let gv = values(b * n * w, 6);
        let x =
            Tensor::<3>::from_data(TensorData::new(xv.clone(), [b, n, w]), &device).require_grad();
        let g = Tensor::<3>::from_data(TensorData::new(gv.clone(), [b, n, w]), &device);
        let y = real_fft2(x.clone()).unwrap();
        let lhs: f64 = y
            .clone()
            .inner()
            .into_data()
            .iter::<f32>()
            .zip(&gv)
            .map(|(a, b)| a as f64 * *b as f64)
            .sum();
        let grads = (y * g).sum().backward();
        let dx: Vec<f32> = x.grad(&grads).unwrap().into_data().iter().collect();
        let rhs: f64 = dx.iter().zip(&xv).map(|(a, b)| *a as f64 * *b as f64).sum();
        assert!(
            (lhs - rhs).abs() < 1e-4 * (1.0 + lhs.abs()),
            "[{b}, {n}, {w}]: {lhs} against {rhs}"
        );
    }
}

#[test]
fn empty_axes_are_refused() {
    let device = Device::default();
    let e = real_fft2(Tensor::<3>::zeros([1, 0, 5], &device))
        .expect_err("an empty sequence")
        .to_string();
    assert!(
        e.contains("no empty axis") && e.contains("[1, 0, 5]"),
        "{e}"
    );
}

/// One sample per thread and passes spread over the threads give the same
/// bits: with one thread every batch takes the first order, with two a
/// single sample takes the second.
#[test]
fn results_do_not_depend_on_threads() {
    let run = |threads: usize| {
        on_threads(threads, || {
            let device = Device::default();
            [
                (1usize, 37usize, 12usize),
                (1, 64, 45),
                (3, 20, 16),
                (1, 96, 48),
                (3, 66, 32),
            ]
            .iter()
            .map(|&(b, n, w)| {
                let x = values(b * n * w, (b + n + w) as u64);
                let x = Tensor::<3>::from_data(TensorData::new(x, [b, n, w]), &device);
                real_fft2(x)
                    .unwrap()
                    .into_data()
                    .iter::<f32>()
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
        })
    };
    let (one, two) = (run(1), run(2));
    for (a, b) in one.iter().zip(&two) {
        assert!(
            bits(a.iter().copied()) == bits(b.iter().copied()),
            "results differ between one thread and two"
        );
    }
}
