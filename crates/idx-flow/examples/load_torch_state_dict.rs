//! Loads the weights of a PyTorch idx_flow layer into ours, and writes ours
//! back in PyTorch's naming.
//!
//! In Python (idx-flow 0.2.1, safetensors):
//!
//! ```python
//! import torch, safetensors.torch
//! from idx_flow import SpatialConv, compute_connection_indices
//! idx, _ = compute_connection_indices(64, 32, 4)
//! conv = SpatialConv(output_points=12288, connection_indices=idx, filters=64)
//! conv(torch.zeros(1, 49152, 16))          # builds the kernel for 16 channels
//! safetensors.torch.save_file(conv.state_dict(), "conv.safetensors")
//! ```
//!
//! ```sh
//! cargo run --release -p idx-flow --example load_torch_state_dict -- conv.safetensors
//! ```
//!
//! Without a file it round-trips a freshly initialised layer through a
//! temporary file instead.

use burn::tensor::{Device, Distribution, Tensor};
use idx_flow::geometry::HealpixGrid;
use idx_flow::graphs::ConnectionGraph;
use idx_flow::layers::state_dict::{load_state_dict, state_dict};
use idx_flow::layers::{SpatialConvConfig, StateDict};

fn main() -> Result<(), idx_flow::Error> {
    let device = Device::default();
    let graph = ConnectionGraph::knn(HealpixGrid::ring(64)?, HealpixGrid::ring(32)?, 4)?;
    let conv = SpatialConvConfig::new(16, 64).init(&graph, &device)?;

    let path = match std::env::args().nth(1) {
        Some(path) => path.into(),
        None => {
            let path = std::env::temp_dir().join("idx-flow-example-conv.safetensors");
            state_dict(&conv)?.save(&path)?;
            path
        }
    };
    let weights = StateDict::load(&path)?;
    for (name, tensor) in weights.iter() {
        println!("{}: {name} {:?}", path.display(), tensor.shape);
    }
    // Strict: every key must be used and every shape must match, or a clear error.
    let conv = load_state_dict(conv, &weights)?;
    let x = Tensor::<3>::random(
        [2, graph.n_in(), 16],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    println!("output {:?}", conv.try_forward(x)?.dims());
    Ok(())
}
