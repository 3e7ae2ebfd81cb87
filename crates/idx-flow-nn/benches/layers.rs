//! Layer times on the default (flex CPU) device, printed (not asserted).
//!
//! cargo bench -p idx-flow-nn --bench layers [-- --small]
//!
//! For nside 64 → 32 (k = 9, batch 4, 32 → 64 channels; `--small`: nside 16 → 8)
//! it prints the median forward time, and forward + backward on an autodiff
//! device, of the gather-based layers.

use idx_flow_testing::bench::median_seconds;

use burn::tensor::{Device, Distribution, Tensor};
use idx_flow_healpix::geometry::HealpixGrid;
use idx_flow_healpix::graphs::{ConnectionGraph, WeightMethod};
use idx_flow_nn::{
    PoolType, SpatialConvConfig, SpatialMlpConfig, SpatialPoolingConfig, SpatialUpsamplingConfig,
};

fn sync(t: Tensor<3>) {
    let _ = t.sum().into_scalar::<f32>();
}

fn main() {
    let small = std::env::args().any(|a| a == "--small");
    let (ni, no, k, b, c, f) = if small {
        (16, 8, 9, 4, 32, 64)
    } else {
        (64, 32, 9, 4, 32, 64)
    };
    let (hi, lo) = (
        HealpixGrid::ring(ni).unwrap(),
        HealpixGrid::ring(no).unwrap(),
    );
    let down = ConnectionGraph::knn(hi, lo, k).unwrap();
    let up = ConnectionGraph::knn(lo, hi, 4)
        .unwrap()
        .with_weights(WeightMethod::InverseSquare)
        .unwrap();
    let (n_in, n_out) = (down.n_in(), down.n_out());
    println!("nside {ni} -> {no}, k = {k}, batch {b}, channels {c} -> {f}");
    let runs = 5;
    for (label, device) in [
        ("forward", Device::default()),
        ("forward+backward", Device::default().autodiff()),
    ] {
        let train = device.is_autodiff();
        let input = |n: usize| {
            let t = Tensor::<3>::random([b, n, c], Distribution::Normal(0.0, 1.0), &device);
            if train { t.require_grad() } else { t }
        };
        let (x, xl) = (input(n_in), input(n_out));
        let run = |y: Tensor<3>| {
            if train {
                let _ = y.sum().backward();
            } else {
                sync(y)
            }
        };
        let conv = SpatialConvConfig::new(c, f).init(&down, &device).unwrap();
        let t = median_seconds(|| run(conv.forward(x.clone())), runs, 1);
        println!("  SpatialConv        {label:>17}: {:8.1} ms", t * 1e3);
        let mlp = SpatialMlpConfig::new(c)
            .with_hidden_units(vec![f, f])
            .with_activations(vec!["gelu".parse().unwrap(), "linear".parse().unwrap()])
            .init(&down, &device)
            .unwrap();
        let t = median_seconds(|| run(mlp.forward(x.clone())), runs, 1);
        println!("  SpatialMLP         {label:>17}: {:8.1} ms", t * 1e3);
        let upl = SpatialUpsamplingConfig::new().init(&up, &device).unwrap();
        let t = median_seconds(|| run(upl.forward(xl.clone())), runs, 1);
        println!("  SpatialUpsampling  {label:>17}: {:8.1} ms", t * 1e3);
        let pool = SpatialPoolingConfig::new()
            .with_pool_type(PoolType::Max)
            .init(&down, &device)
            .unwrap();
        let t = median_seconds(|| run(pool.forward(x.clone())), runs, 1);
        println!("  SpatialPooling max {label:>17}: {:8.1} ms", t * 1e3);
    }
}
