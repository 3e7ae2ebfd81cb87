//! Builds the k-nearest connection graph between two HEALPix grids, as
//! idx_flow's `compute_connection_indices` does, and saves it for numpy.
//!
//! ```sh
//! cargo run --release -p idx-flow --example graph_to_numpy -- 64 32 4 graph.npz
//! python -c "import numpy as np; g = np.load('graph.npz'); print(g['indices'].shape)"
//! ```

use idx_flow::geometry::HealpixGrid;
use idx_flow::graphs::{ConnectionGraph, WeightMethod};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_string());
    let (nside_in, nside_out, k): (u32, u32, usize) = (
        arg(0, "64").parse()?,
        arg(1, "32").parse()?,
        arg(2, "4").parse()?,
    );
    let out = arg(3, "graph.npz");

    // RING order and idx_flow's inverse-square weights, as idx_flow uses them.
    let graph = ConnectionGraph::knn(
        HealpixGrid::ring(nside_in)?,
        HealpixGrid::ring(nside_out)?,
        k,
    )?
    .with_weights(WeightMethod::InverseSquare)?;
    graph.save(&out)?;
    let (lo, hi) = graph.distance_range_km();
    println!(
        "{out}: indices int64 [{}, {k}], distances_km float64 ({lo:.1}..{hi:.1} km), weights",
        graph.n_out()
    );
    Ok(())
}
