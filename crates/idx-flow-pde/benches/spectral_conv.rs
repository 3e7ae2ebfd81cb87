//! The FNO's spectral convolution on the families bench's layer shape
//! (`[8, 32, 128, 128]`, 12 modes), native FFT against the restricted DFTs,
//! forward and step (forward with every gradient of `Σ y²`).
//!
//! cargo bench -p idx-flow-pde --bench spectral_conv

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use idx_flow_pde::SpectralConvConfig;
use idx_flow_testing::bench::median_seconds;

fn main() {
    let plain = Device::default();
    let device = plain.clone().autodiff();
    let layer = SpectralConvConfig::new(2, 32, 32, vec![12])
        .init(&device)
        .expect("a valid layer");
    let x = Tensor::<4>::random([8, 32, 128, 128], Distribution::Normal(0.0, 1.0), &device);
    let ms = |f: &mut dyn FnMut()| 1e3 * median_seconds(f, 10, 2);
    let forward = |dense: bool| {
        let x = x.clone().inner();
        let layer = layer.valid();
        move || {
            let y = if dense {
                layer.try_forward_dense(x.clone())
            } else {
                layer.try_forward(x.clone())
            };
            let _ = y.expect("fits").sum().into_scalar::<f32>();
        }
    };
    let step = |dense: bool| {
        let (x, layer) = (x.clone().require_grad(), layer.clone());
        move || {
            let y = if dense {
                layer.try_forward_dense(x.clone())
            } else {
                layer.try_forward(x.clone())
            };
            let y = y.expect("fits");
            let _ = (y.clone() * y).sum().backward();
        }
    };
    println!(
        "SpectralConv 2-D, [8, 32, 128, 128], 12 modes, {} threads",
        rayon_threads()
    );
    println!("| path | forward (ms) | step (ms) |");
    println!("| --- | --- | --- |");
    let only = std::env::var("ONLY").ok();
    for (name, dense) in [("native FFT", false), ("restricted DFT", true)] {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let (f, s) = (ms(&mut forward(dense)), ms(&mut step(dense)));
        println!("| {name} | {f:.1} | {s:.1} |");
    }
}

fn rayon_threads() -> String {
    std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into())
}
