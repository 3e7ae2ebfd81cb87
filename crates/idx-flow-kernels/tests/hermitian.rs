//! The Hermitian completion: the first `W/2 + 1` columns of `Re FFT2(x)` of
//! a real `x` give every column, for odd and even `W` and `N`; its gradient
//! is the adjoint (`⟨g, E r⟩ = ⟨Eᵀ g, r⟩`); and the shape errors.

use std::f64::consts::TAU;

use burn::tensor::{Device, Tensor, TensorData};
use idx_flow_kernels::hermitian::extend;
use idx_flow_testing::rng::uniform as values;

/// `Re Σ x[t, u]·e^{−2πi(st/N + hu/W)}` for one sample `[N, W]`.
fn re_fft2(x: &[f32], n: usize, w: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * w];
    for s in 0..n {
        for h in 0..w {
            let mut acc = 0.0;
            for t in 0..n {
                for u in 0..w {
                    let a = TAU * ((s * t) as f64 / n as f64 + (h * u) as f64 / w as f64);
                    acc += x[t * w + u] as f64 * a.cos();
                }
            }
            out[s * w + h] = acc;
        }
    }
    out
}

#[test]
fn half_the_columns_give_all_of_them() {
    let device = Device::default();
    for (b, n, w) in [
        (2usize, 6usize, 8usize),
        (1, 5, 7),
        (3, 1, 4),
        (1, 4, 1),
        (1, 3, 2),
    ] {
        let half = w / 2 + 1;
        let x = values(b * n * w, (n * 31 + w) as u64);
        let mut r = Vec::new();
        let mut want = Vec::new();
        for s in 0..b {
            let full = re_fft2(&x[s * n * w..(s + 1) * n * w], n, w);
            for row in full.chunks(w) {
                r.extend(row[..half].iter().map(|&v| v as f32));
            }
            want.extend(full);
        }
        let rt = Tensor::<3>::from_data(TensorData::new(r, [b, n, half]), &device);
        let got: Vec<f32> = extend(rt, w).unwrap().into_data().iter().collect();
        for (i, (g, e)) in got.iter().zip(&want).enumerate() {
            assert!(
                (*g as f64 - e).abs() < 1e-3,
                "[{b}, {n}, {w}] value {i}: {g} against {e}"
            );
        }
    }
}

#[test]
fn the_gradient_is_the_adjoint() {
    let device = Device::default().autodiff();
    for (b, n, w) in [(2usize, 6usize, 8usize), (1, 5, 7), (2, 3, 2)] {
        let half = w / 2 + 1;
        let rv = values(b * n * half, 5);
        let gv = values(b * n * w, 6);
        let r = Tensor::<3>::from_data(TensorData::new(rv.clone(), [b, n, half]), &device)
            .require_grad();
        let g = Tensor::<3>::from_data(TensorData::new(gv.clone(), [b, n, w]), &device);
        let y = extend(r.clone(), w).unwrap();
        let lhs: f64 = y
            .clone()
            .inner()
            .into_data()
            .iter::<f32>()
            .zip(&gv)
            .map(|(a, b)| a as f64 * *b as f64)
            .sum();
        let grads = (y * g).sum().backward();
        let dr: Vec<f32> = r.grad(&grads).unwrap().into_data().iter().collect();
        let rhs: f64 = dr.iter().zip(&rv).map(|(a, b)| *a as f64 * *b as f64).sum();
        assert!(
            (lhs - rhs).abs() < 1e-4 * (1.0 + lhs.abs()),
            "[{b}, {n}, {w}]: {lhs} against {rhs}"
        );
    }
}

#[test]
fn wrong_widths_are_refused() {
    let device = Device::default();
    let e = extend(Tensor::<3>::zeros([1, 4, 5], &device), 6)
        .expect_err("6 needs 4 columns")
        .to_string();
    assert!(
        e.contains("[B, N > 0, 4]") && e.contains("[1, 4, 5]"),
        "{e}"
    );
}
