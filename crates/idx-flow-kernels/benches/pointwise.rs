//! The fused activations against burn's tensor operations on the CPU,
//! printed (not asserted).
//!
//! cargo bench -p idx-flow-kernels --bench pointwise
//!
//! On `[8, 32, 128, 128]` (4.2 M values, the size of an FNO layer's
//! activations at batch 8): the median forward time, and forward + backward
//! of `Σ f(x)` on an autodiff device, of each activation both ways.

use burn::tensor::{Device, Distribution, Tensor};
use idx_flow_kernels::pointwise::{Activation, activation, reference};
use idx_flow_testing::bench::median_seconds;

fn main() {
    let device = Device::default();
    let shape = [8, 32, 128, 128];
    let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 2.0), &device);
    let ad = device.clone().autodiff();
    let xa = Tensor::<4>::random(shape, Distribution::Normal(0.0, 2.0), &ad).require_grad();
    println!(
        "[8, 32, 128, 128] float32 on flex, {} threads",
        rayon::current_num_threads()
    );
    println!(
        "{:<10} {:>14} {:>14} {:>8} {:>16} {:>16} {:>8}",
        "", "fwd fused ms", "fwd ops ms", "ratio", "fwd+bwd fused ms", "fwd+bwd ops ms", "ratio"
    );
    let (runs, warmup) = (10, 2);
    for kind in [
        Activation::GeluTanh,
        Activation::GeluErf,
        Activation::Silu,
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Selu,
        Activation::Elu,
    ] {
        let fwd = |f: fn(Tensor<4>, Activation) -> Tensor<4>| {
            1e3 * median_seconds(
                || {
                    let _ = f(x.clone(), kind).into_data();
                },
                runs,
                warmup,
            )
        };
        let step = |f: fn(Tensor<4>, Activation) -> Tensor<4>| {
            1e3 * median_seconds(
                || {
                    let g = f(xa.clone(), kind).sum().backward();
                    let _ = xa.grad(&g).map(|g| g.into_data());
                },
                runs,
                warmup,
            )
        };
        let (ff, fr) = (fwd(activation), fwd(reference));
        let (sf, sr) = (step(activation), step(reference));
        println!(
            "{:<10} {ff:>14.1} {fr:>14.1} {:>7.1}x {sf:>16.1} {sr:>16.1} {:>7.1}x",
            format!("{kind:?}"),
            fr / ff,
            sr / sf
        );
    }
}
