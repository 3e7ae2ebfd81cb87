//! The fused activations against the exact functions in float64, their
//! gradients through autodiff, and other float dtypes.

use burn::tensor::{DType, Device, Tensor, TensorData};
use idx_flow_kernels::pointwise::{Activation, activation, reference};

const ALL: [Activation; 7] = [
    Activation::GeluTanh,
    Activation::GeluErf,
    Activation::Silu,
    Activation::Tanh,
    Activation::Sigmoid,
    Activation::Selu,
    Activation::Elu,
];

/// erf in float64: the Maclaurin series below 3, the asymptotic series of
/// erfc above (both far below float32's resolution).
fn erf(x: f64) -> f64 {
    let a = x.abs();
    let v = if a < 3.0 {
        let (mut term, mut sum, mut n) = (a, a, 0.0);
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= -a * a / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        let z = 1.0 / (a * a);
        let series = 1.0 - z / 2.0 + 3.0 * z * z / 4.0 - 15.0 * z * z * z / 8.0;
        1.0 - (-a * a).exp() / (a * std::f64::consts::PI.sqrt()) * series
    };
    v.copysign(x)
}

fn exact(kind: Activation, x: f64) -> (f64, f64) {
    let s = 1.0 / (1.0 + (-x).exp());
    match kind {
        Activation::GeluTanh => {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            let u = c * (x + 0.044715 * x * x * x);
            let t = u.tanh();
            let du = c * (1.0 + 3.0 * 0.044715 * x * x);
            (
                0.5 * x * (1.0 + t),
                0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du,
            )
        }
        Activation::GeluErf => {
            let phi = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
            let cdf = 0.5 * (1.0 + erf(x / std::f64::consts::SQRT_2));
            (x * cdf, cdf + x * phi)
        }
        Activation::Silu => (x * s, s * (1.0 + x * (1.0 - s))),
        Activation::Tanh => (x.tanh(), 1.0 - x.tanh().powi(2)),
        Activation::Sigmoid => (s, s * (1.0 - s)),
        // PyTorch's constants; at 0 the left-hand derivative, as PyTorch takes it.
        Activation::Selu => {
            let (scale, alpha) = (1.050_700_987_355_480_5, 1.673_263_242_354_377_3);
            if x > 0.0 {
                (scale * x, scale)
            } else {
                (scale * alpha * x.exp_m1(), scale * alpha * x.exp())
            }
        }
        Activation::Elu => {
            if x > 0.0 {
                (x, 1.0)
            } else {
                (x.exp_m1(), x.exp())
            }
        }
    }
}

fn values() -> Vec<f32> {
    let mut v: Vec<f32> = (-3000..=3000).map(|i| i as f32 * 0.004).collect();
    v.extend([
        -90.0, -40.0, -12.0, -1e-6, 0.0, 1e-6, 1e-30, 12.0, 40.0, 90.0,
    ]);
    v
}

#[test]
fn activations_and_their_gradients_match_float64() {
    let device = Device::default().autodiff();
    let xs = values();
    for kind in ALL {
        let x =
            Tensor::<1>::from_data(TensorData::new(xs.clone(), [xs.len()]), &device).require_grad();
        let y = activation(x.clone(), kind);
        // d/dx Σ y = f'(x).
        let grads = y.clone().sum().backward();
        let dx: Vec<f32> = x.grad(&grads).unwrap().into_data().iter().collect();
        let y: Vec<f32> = y.into_data().iter().collect();
        for ((x, y), d) in xs.iter().zip(&y).zip(&dx) {
            let (f, df) = exact(kind, *x as f64);
            let tol = |v: f64| 3e-7 + 2e-6 * v.abs();
            assert!(
                ((*y as f64) - f).abs() <= tol(f),
                "{kind:?}({x}) = {y}, exact {f}"
            );
            assert!(
                ((*d as f64) - df).abs() <= tol(df) * 2.0,
                "{kind:?}'({x}) = {d}, exact {df}"
            );
        }
    }
}

#[test]
fn fused_and_tensor_op_activations_agree_in_every_dtype() {
    let device = Device::default();
    let xs: Vec<f32> = (0..4096)
        .map(|i| ((i * 37) % 801) as f32 * 0.01 - 4.0)
        .collect();
    for kind in ALL {
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let x =
                Tensor::<2>::from_data(TensorData::new(xs.clone(), [64, 64]), &device).cast(dtype);
            let fused = activation(x.clone(), kind);
            assert_eq!(fused.dtype(), dtype);
            assert_eq!(fused.dims(), [64, 64]);
            let r = reference(x.cast(DType::F32), kind);
            let err = (fused.cast(DType::F32) - r)
                .abs()
                .max()
                .into_scalar::<f32>();
            let bound = if dtype == DType::F32 { 1e-5 } else { 0.05 };
            assert!(err <= bound, "{kind:?} in {dtype:?}: {err}");
        }
    }
}
