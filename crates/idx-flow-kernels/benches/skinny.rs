//! The skinny linear kernel against burn's matrix product (flex's `gemm`)
//! on the shapes of spectrans' AFNO MLP: a batch of 8 flattened spectra
//! through `[512, 132 354]` and back through `[132 354, 512]`.
//!
//! cargo bench -p idx-flow-kernels --bench skinny
//!
//! Each line: the product, the median time of the forward and of the
//! forward with both gradients (autodiff, `loss = Σ y`), ours and burn's.

use burn::tensor::{Device, Distribution, Tensor};
use idx_flow_kernels::skinny::linear;
use idx_flow_testing::bench::median_seconds;

fn ms(f: impl FnMut()) -> f64 {
    1e3 * median_seconds(f, 7, 2)
}

fn case(label: &str, m: usize, k: usize, o: usize) {
    let plain = Device::default();
    let x = Tensor::<2>::random([m, k], Distribution::Normal(0.0, 1.0), &plain);
    let w = Tensor::<2>::random([o, k], Distribution::Normal(0.0, 0.01), &plain);
    let ours_fwd = ms(|| {
        let _ = linear(x.clone(), w.clone()).expect("shapes fit");
    });
    let burn_fwd = ms(|| {
        let _ = x.clone().matmul(w.clone().transpose());
    });
    let (xa, wa) = (
        x.clone().autodiff().require_grad(),
        w.clone().autodiff().require_grad(),
    );
    let ours_step = ms(|| {
        let _ = linear(xa.clone(), wa.clone())
            .expect("shapes fit")
            .sum()
            .backward();
    });
    let burn_step = ms(|| {
        let _ = xa.clone().matmul(wa.clone().transpose()).sum().backward();
    });
    println!(
        "| {label} | [{m}, {k}]·[{o}, {k}]ᵀ | {ours_fwd:.1} / {burn_fwd:.1} | {:.1} | \
         {ours_step:.1} / {burn_step:.1} | {:.1} |",
        burn_fwd / ours_fwd,
        burn_step / ours_step
    );
}

fn main() {
    println!("threads: {}", rayon::current_num_threads());
    println!(
        "| product | shapes | forward ours / burn (ms) | × | forward + gradients ours / burn (ms) | × |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    case("AFNO mlp.0", 8, 132_354, 512);
    case("AFNO mlp.3", 8, 512, 132_354);
    case("one row", 1, 132_354, 512);
}
