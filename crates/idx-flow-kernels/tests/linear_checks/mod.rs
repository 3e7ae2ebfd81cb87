//! The checks shared by the linear kernels' tests (`dense`, `skinny`): the
//! forward `x·Wᵀ` and both gradients through autodiff against float64 sums,
//! the same bits on one thread and two, empty axes, and the error for
//! mismatched shapes. Each test file passes its kernel and its shapes.

use burn::tensor::{Device, Tensor, TensorData};
use idx_flow_testing::rng::uniform as values;
use idx_flow_testing::threads::{bits, on_threads};

/// A linear kernel: `x` `[M, K]`, weight `[O, K]` → `[M, O]`.
pub type Linear = fn(Tensor<2>, Tensor<2>) -> idx_flow_kernels::Result<Tensor<2>>;

fn tensor(v: &[f32], shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), device)
}

fn floats(t: Tensor<2>) -> Vec<f32> {
    t.into_data().iter().collect()
}

/// `a` `[p, r]` · `b` `[r, q]` in float64, `a` and `b` given by accessors.
fn product(
    p: usize,
    q: usize,
    r: usize,
    a: impl Fn(usize, usize) -> f64,
    b: impl Fn(usize, usize) -> f64,
) -> Vec<f64> {
    let mut out = vec![0.0; p * q];
    for i in 0..p {
        for j in 0..q {
            out[i * q + j] = (0..r).map(|l| a(i, l) * b(l, j)).sum();
        }
    }
    out
}

/// Largest error relative to the largest reference magnitude (float32
/// sums of `r` terms of magnitude ≤ 1 err by about `r·2⁻²⁴` at worst).
fn check(what: &str, got: &[f32], want: &[f64], terms: usize) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(want)
        .fold(0f64, |m, (g, w)| m.max((*g as f64 - w).abs()));
    let bound = 4.0 * (terms as f64).sqrt() * f32::EPSILON as f64 * scale.max(1.0);
    assert!(
        err <= bound,
        "{what}: error {err:.3e} above {bound:.3e} (scale {scale:.3e})"
    );
}

/// `x·Wᵀ` and both gradients (of `Σ y·g`) against float64 sums.
pub fn forward_and_gradients_match_float64(linear: Linear, shapes: &[(usize, usize, usize)]) {
    let device = Device::default().autodiff();
    for (case, &(m, k, o)) in shapes.iter().enumerate() {
        let seed = case as u64 * 3;
        let (xv, wv, gv) = (
            values(m * k, seed + 1),
            values(o * k, seed + 2),
            values(m * o, seed + 3),
        );
        let x = tensor(&xv, [m, k], &device).require_grad();
        let w = tensor(&wv, [o, k], &device).require_grad();
        let g = tensor(&gv, [m, o], &device);
        let y = linear(x.clone(), w.clone()).expect("shapes fit");
        assert_eq!(y.dims(), [m, o]);
        let want_y = product(
            m,
            o,
            k,
            |i, l| xv[i * k + l] as f64,
            |l, j| wv[j * k + l] as f64,
        );
        check(&format!("y {m}x{k}x{o}"), &floats(y.clone()), &want_y, k);

        // loss = Σ y·g: dx = g·W, dW = gᵀ·x.
        let grads = (y * g).sum().backward();
        let dx = x.grad(&grads).expect("x is tracked");
        let dw = w.grad(&grads).expect("w is tracked");
        let want_dx = product(
            m,
            k,
            o,
            |i, l| gv[i * o + l] as f64,
            |l, j| wv[l * k + j] as f64,
        );
        let want_dw = product(
            o,
            k,
            m,
            |i, l| gv[l * o + i] as f64,
            |l, j| xv[l * k + j] as f64,
        );
        check(
            &format!("dx {m}x{k}x{o}"),
            &dx.into_data().iter().collect::<Vec<f32>>(),
            &want_dx,
            o,
        );
        check(
            &format!("dW {m}x{k}x{o}"),
            &dw.into_data().iter().collect::<Vec<f32>>(),
            &want_dw,
            m,
        );
    }
}

/// The product and its gradients bit for bit the same on one thread and two.
pub fn results_do_not_depend_on_threads(linear: Linear, shapes: &[(usize, usize, usize)]) {
    let device = Device::default().autodiff();
    let run = |threads: usize| {
        on_threads(threads, || {
            let mut out = Vec::new();
            for (case, &(m, k, o)) in shapes.iter().enumerate() {
                let seed = 100 + case as u64 * 3;
                let x = tensor(&values(m * k, seed), [m, k], &device).require_grad();
                let w = tensor(&values(o * k, seed + 1), [o, k], &device).require_grad();
                let y = linear(x.clone(), w.clone()).expect("shapes fit");
                let grads = (y.clone() * y.clone()).sum().backward();
                out.push(floats(y.inner()));
                out.push(floats(x.grad(&grads).expect("tracked")));
                out.push(floats(w.grad(&grads).expect("tracked")));
            }
            out
        })
    };
    let (one, two) = (run(1), run(2));
    for (a, b) in one.iter().zip(&two) {
        let same = bits(a.iter().copied()) == bits(b.iter().copied());
        assert!(same, "results differ between one thread and two");
    }
}

/// A weight whose K differs from the input's is an error naming both.
pub fn mismatched_shapes_are_refused(linear: Linear) {
    let device = Device::default();
    let x = tensor(&values(6, 1), [2, 3], &device);
    let w = tensor(&values(8, 2), [2, 4], &device);
    let err = linear(x, w).expect_err("K differs").to_string();
    assert!(err.contains("[O, 3]") && err.contains("[2, 4]"), "{err}");
}

/// Empty M, K or O give empty or zero results and gradients of the right shape.
pub fn empty_dimensions_give_empty_or_zero_results(linear: Linear) {
    let device = Device::default().autodiff();
    for (m, k, o) in [(0, 5, 3), (2, 0, 3), (2, 5, 0)] {
        let x = tensor(&values(m * k, 1), [m, k], &device).require_grad();
        let w = tensor(&values(o * k, 2), [o, k], &device).require_grad();
        let y = linear(x.clone(), w.clone()).expect("empty shapes fit");
        assert_eq!(y.dims(), [m, o], "{m}x{k}x{o}");
        assert!(
            floats(y.clone().inner()).iter().all(|&v| v == 0.0),
            "{m}x{k}x{o}"
        );
        let grads = y.sum().backward();
        if let Some(g) = x.grad(&grads) {
            assert_eq!(g.dims(), [m, k]);
        }
    }
}
