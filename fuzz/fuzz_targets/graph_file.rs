//! Connection graphs saved as `.npz` or `.safetensors` (`--graph-file`): the
//! first byte picks the format.
#![no_main]
use idx_flow_fuzz::{MemoryBound, scratch_file, within};
use idx_flow_healpix::geometry::HealpixGrid;
use idx_flow_healpix::graphs::ConnectionGraph;
use libfuzzer_sys::fuzz_target;

// `.npz` members may be deflated (at most 1032:1), and the graph is built
// from them (indices and distances, a few copies).
const BOUND: MemoryBound = MemoryBound {
    factor: 8 * 1032,
    base: 32 << 20,
};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let name = if kind & 1 == 0 {
        "graph.npz"
    } else {
        "graph.safetensors"
    };
    let path = scratch_file(name, body);
    within(body.len(), BOUND, || {
        let _ = ConnectionGraph::load(&path);
        if let (Ok(input), Ok(output)) = (HealpixGrid::nested(2), HealpixGrid::nested(1)) {
            let _ = ConnectionGraph::load_with_grids(&path, input, output);
        }
    });
});
