//! The fused squared-error losses against float64 sums, their gradients
//! to the prediction and to the target through autodiff, independence from
//! the number of threads, and the shape errors.

use burn::tensor::{Device, Tensor, TensorData};
use idx_flow_kernels::Error;
use idx_flow_kernels::loss::{mse_loss, reference, squared_error};

/// Deterministic values in [−2, 2) (a linear congruential sequence).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

fn tensor(v: &[f32], shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), device)
}

/// Sizes below, at and across the kernel's 8-value lanes and 16 384-value chunks.
const SHAPES: [[usize; 2]; 5] = [[1, 1], [1, 7], [3, 8], [5, 3277], [17, 4099]];

#[test]
fn sums_equal_float64_with_and_without_weights() {
    let device = Device::default();
    for (i, shape) in SHAPES.into_iter().enumerate() {
        let n = shape[0] * shape[1];
        let (y, t) = (values(n, 2 * i as u64), values(n, 2 * i as u64 + 1));
        let w: Vec<f32> = values(n, 99).iter().map(|v| (v + 2.0) / 4.0).collect();
        for weighted in [false, true] {
            let exact: f64 = (0..n)
                .map(|j| {
                    let d = f64::from(y[j]) - f64::from(t[j]);
                    d * d * if weighted { f64::from(w[j]) } else { 1.0 }
                })
                .sum::<f64>()
                * 0.25;
            let weights = weighted.then(|| tensor(&w, shape, &device));
            let got: f32 = squared_error(
                tensor(&y, shape, &device),
                tensor(&t, shape, &device),
                weights,
                0.25,
            )
            .unwrap()
            .into_scalar();
            let err = (f64::from(got) - exact).abs() / exact.max(1e-30);
            assert!(
                err < 1e-6,
                "{shape:?} weighted {weighted}: {got} against {exact}"
            );
        }
        let mean: f32 = mse_loss(tensor(&y, shape, &device), tensor(&t, shape, &device))
            .unwrap()
            .into_scalar();
        let exact: f64 = (0..n)
            .map(|j| (f64::from(y[j]) - f64::from(t[j])).powi(2))
            .sum::<f64>()
            / n as f64;
        assert!(
            (f64::from(mean) - exact).abs() <= 1e-6 * exact,
            "{shape:?} mean"
        );
    }
}

#[test]
fn gradients_equal_the_tensor_operations() {
    let device = Device::default().autodiff();
    let shape = [17, 4099];
    let n = shape[0] * shape[1];
    let (y, t) = (values(n, 5), values(n, 6));
    let w: Vec<f32> = values(n, 7).iter().map(|v| f32::from(*v > 0.0)).collect();
    for weighted in [false, true] {
        let run = |fused: bool| {
            let yt = tensor(&y, shape, &device).require_grad();
            let tt = tensor(&t, shape, &device).require_grad();
            let wt = weighted.then(|| tensor(&w, shape, &device));
            let loss = if fused {
                squared_error(yt.clone(), tt.clone(), wt, 0.5).unwrap()
            } else {
                reference(yt.clone(), tt.clone(), wt, 0.5)
            };
            // A loss gradient other than one: 3·loss.
            let grads = (loss * 3.0).backward();
            let dy: Vec<f32> = yt.grad(&grads).unwrap().into_data().iter().collect();
            let dt: Vec<f32> = tt.grad(&grads).unwrap().into_data().iter().collect();
            (dy, dt)
        };
        let (fused, ops) = (run(true), run(false));
        for j in 0..n {
            // 2 · 0.5 · 3 · w · (y − t), to float32 rounding on both sides.
            let d = f64::from(y[j]) - f64::from(t[j]);
            let exact = 3.0 * d * if weighted { f64::from(w[j]) } else { 1.0 };
            for (got, what) in [(fused.0[j], "fused dy"), (ops.0[j], "ops dy")] {
                assert!(
                    (f64::from(got) - exact).abs() <= 1e-6 * exact.abs().max(1.0),
                    "{what} {j}"
                );
            }
            assert_eq!(fused.1[j], -fused.0[j], "dt = −dy at {j}");
            assert!(
                (fused.1[j] - ops.1[j]).abs() <= 1e-6 * ops.1[j].abs().max(1.0),
                "dt {j}"
            );
        }
    }
}

#[test]
fn only_the_tracked_side_gets_a_gradient() {
    let device = Device::default().autodiff();
    let y = tensor(&[1.0, 2.0, 3.0], [1, 3], &device).require_grad();
    let t = tensor(&[0.0, 0.0, 1.0], [1, 3], &device);
    let grads = mse_loss(y.clone(), t.clone()).unwrap().backward();
    let dy: Vec<f32> = y.grad(&grads).unwrap().into_data().iter().collect();
    // 2(y − t)/3
    let expected = [2.0 / 3.0, 4.0 / 3.0, 4.0 / 3.0];
    for (g, e) in dy.iter().zip(expected) {
        assert!((g - e).abs() < 1e-6, "{dy:?}");
    }
    assert!(t.grad(&grads).is_none());
}

#[test]
fn the_sum_does_not_depend_on_the_thread_count() {
    let device = Device::default();
    let shape = [17, 4099];
    let n = shape[0] * shape[1];
    let (y, t) = (values(n, 11), values(n, 12));
    let loss = || -> f32 {
        mse_loss(tensor(&y, shape, &device), tensor(&t, shape, &device))
            .unwrap()
            .into_scalar()
    };
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(loss);
    let three = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap()
        .install(loss);
    assert_eq!(one.to_bits(), three.to_bits());
}

#[test]
fn other_shapes_and_empty_predictions_are_errors() {
    let device = Device::default();
    let y = Tensor::<2>::zeros([2, 3], &device);
    let e = squared_error(y.clone(), Tensor::zeros([3, 2], &device), None, 1.0).unwrap_err();
    assert!(matches!(&e, Error::Shape { .. }), "{e}");
    assert!(e.to_string().contains("[3, 2]"), "{e}");
    let e = squared_error(
        y.clone(),
        y.clone(),
        Some(Tensor::zeros([2, 1], &device)),
        1.0,
    )
    .unwrap_err();
    assert!(e.to_string().contains("weights"), "{e}");
    let empty = Tensor::<2>::zeros([0, 3], &device);
    let e = mse_loss(empty.clone(), empty.clone()).unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
    let zero: f32 = squared_error(empty.clone(), empty, None, 1.0)
        .unwrap()
        .into_scalar();
    assert_eq!(zero, 0.0);
}
