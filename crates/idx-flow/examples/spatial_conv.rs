//! A SpatialConv forward and backward on the fused gather kernels, checked
//! against the plain tensor-op reference path.
//!
//! ```sh
//! cargo run --release -p idx-flow --example spatial_conv
//! ```

use burn::tensor::{Device, Distribution, Tensor};
use idx_flow::geometry::HealpixGrid;
use idx_flow::graphs::ConnectionGraph;
use idx_flow::kernels::KernelPath;
use idx_flow::layers::SpatialConvConfig;

fn main() -> Result<(), idx_flow::Error> {
    // Autodiff on the default CPU backend (burn's flex).
    let device = Device::default().autodiff();
    let graph = ConnectionGraph::knn(HealpixGrid::ring(32)?, HealpixGrid::ring(16)?, 4)?;
    let conv = SpatialConvConfig::new(8, 16).init(&graph, &device)?;
    let x = Tensor::<3>::random(
        [2, graph.n_in(), 8],
        Distribution::Normal(0.0, 1.0),
        &device,
    )
    .require_grad();

    let start = std::time::Instant::now();
    let y = conv.try_forward(x.clone())?; // [2, 3072, 16]
    let grads = y.clone().powi_scalar(2).mean().backward();
    let dx = x.grad(&grads).expect("the input takes part in the loss");
    println!(
        "fused: output {:?}, input gradient {:?}, forward + backward in {:.1} ms",
        y.dims(),
        dx.dims(),
        start.elapsed().as_secs_f64() * 1e3
    );

    // The same layer on the reference path (a gathered copy, then matmul).
    let mut reference = conv.clone();
    reference.indices = reference.indices.with_path(KernelPath::Reference);
    let y_ref = reference.try_forward(x.clone())?;
    let dx_ref = x
        .grad(&y_ref.clone().powi_scalar(2).mean().backward())
        .expect("gradient");
    println!(
        "largest difference to the reference: output {:e}, input gradient {:e}",
        max_difference(y, y_ref),
        max_difference(dx, dx_ref)
    );
    Ok(())
}

fn max_difference(a: Tensor<3>, b: Tensor<3>) -> f32 {
    let (a, b) = (a.into_data(), b.into_data());
    a.iter::<f32>()
        .zip(b.iter::<f32>())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}
