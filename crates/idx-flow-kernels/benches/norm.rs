//! The fused layer and group norms against the same norms built from
//! burn's tensor operations, forward and forward + backward (to the input,
//! weight and bias of `Σ y²`).
//!
//! cargo bench -p idx-flow-kernels --bench norm

use burn::tensor::{Device, Distribution, Tensor};
use idx_flow_kernels::norm::{group_norm, layer_norm};
use idx_flow_testing::bench::median_seconds;

fn ms(f: impl FnMut()) -> f64 {
    1e3 * median_seconds(f, 10, 2)
}

/// `x` normalised over `axes` (their product `n`), from tensor operations.
fn ops_norm<const D: usize>(
    x: Tensor<D>,
    rows: [usize; 2],
    w: Tensor<D>,
    b: Tensor<D>,
) -> Tensor<D> {
    let dims = x.dims();
    let xr = x.reshape(rows);
    let mean = xr.clone().mean_dim(1);
    let xc = xr - mean;
    let var = xc.clone().square().mean_dim(1);
    (xc / (var + 1e-5).sqrt()).reshape(dims) * w + b
}

fn case<const D: usize>(label: &str, shape: [usize; D], groups: Option<usize>) {
    let device = Device::default().autodiff();
    let x = Tensor::<D>::random(shape, Distribution::Normal(0.0, 1.0), &device).require_grad();
    let c = if groups.is_some() {
        shape[1]
    } else {
        shape[D - 1]
    };
    let w = Tensor::<1>::ones([c], &device).require_grad();
    let b = Tensor::<1>::zeros([c], &device).require_grad();
    let fused = |x: Tensor<D>| match groups {
        Some(g) => group_norm(x, g, Some(w.clone()), Some(b.clone()), 1e-5).unwrap(),
        None => layer_norm(x, Some(w.clone()), Some(b.clone()), 1e-5).unwrap(),
    };
    let numel: usize = shape.iter().product();
    let ops = |x: Tensor<D>| {
        let mut wshape = [1usize; D];
        let rows = match groups {
            Some(g) => {
                wshape[1] = c;
                [shape[0] * g, numel / (shape[0] * g)]
            }
            None => {
                wshape[D - 1] = c;
                [numel / c, c]
            }
        };
        ops_norm(
            x,
            rows,
            w.clone().reshape(wshape),
            b.clone().reshape(wshape),
        )
    };
    let fwd = |f: &dyn Fn(Tensor<D>) -> Tensor<D>| {
        ms(|| {
            let _ = f(x.clone().inner().autodiff()).sum().into_scalar::<f32>();
        })
    };
    let step = |f: &dyn Fn(Tensor<D>) -> Tensor<D>| {
        ms(|| {
            let y = f(x.clone());
            let _ = (y.clone() * y).sum().backward();
        })
    };
    let (ff, fo) = (fwd(&fused), fwd(&ops));
    let (sf, so) = (step(&fused), step(&ops));
    println!(
        "| {label} | {ff:.1} / {fo:.1} | {:.1} | {sf:.1} / {so:.1} | {:.1} |",
        fo / ff,
        so / sf
    );
}

fn main() {
    println!("| norm | forward fused / ops (ms) | × | forward + backward fused / ops (ms) | × |");
    println!("| --- | --- | --- | --- | --- |");
    case("layer norm [8, 1024, 256]", [8, 1024, 256], None);
    case(
        "group norm [8, 32, 128, 128], 1 group",
        [8, 32, 128, 128],
        Some(1),
    );
    case(
        "group norm [8, 32, 128, 128], 8 groups",
        [8, 32, 128, 128],
        Some(8),
    );
}
