//! The comparison shared by the normalisation tests (`norm`, `batch_norm`):
//! a result against its float64 reference, within a tolerance relative to
//! the reference's largest magnitude.

use burn::tensor::Tensor;

/// Asserts `got` equals `want` within `tol` times `max(1, max |want|)`,
/// naming `what` and the first entry that does not.
pub fn check(what: &str, got: Tensor<1>, want: &[f64], tol: f64) {
    let got: Vec<f32> = got.into_data().iter().collect();
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (*a as f64 - b).abs() <= tol * scale,
            "{what}[{i}]: {a} against {b} (scale {scale})"
        );
    }
}

/// `t` as one axis.
pub fn flat<const D: usize>(t: Tensor<D>) -> Tensor<1> {
    let n: usize = t.dims().iter().product();
    t.reshape([n])
}
