//! Layers against idx_flow 0.2.1 (`layers.safetensors` + `manifest.json`), and
//! their own properties (statistics of dropouts, shapes, gradients, state dicts).

use idx_flow_core::state_dict::{StateDict, StateValues};
use idx_flow_healpix::geometry::{HealpixGrid, angular_distance, npix2nside};
use idx_flow_healpix::graphs::ConnectionGraph;
use idx_flow_healpix::io::SafetensorsFile;

pub use idx_flow_testing::compare::{
    GradCollect, assert_close, case_state, names_under, shape_of, tensor,
};
use idx_flow_testing::fixtures;

/// One recorded case of the manifest.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub class: String,
    pub train: bool,
}

/// The cases of `manifest.json`, checked against the tensors of `layers.safetensors`.
pub fn cases(file: &SafetensorsFile) -> Vec<Case> {
    let path = fixtures::dir().join("manifest.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("manifest {}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).expect("manifest.json is JSON");
    let layers = json["layers"].as_object().expect("manifest has 'layers'");
    let cases: Vec<Case> = layers
        .iter()
        .map(|(name, v)| Case {
            name: name.clone(),
            class: v["class"].as_str().expect("class").to_string(),
            train: v["train"].as_bool().expect("train"),
        })
        .collect();
    assert!(!cases.is_empty(), "no layer cases in the manifest");
    for c in &cases {
        assert!(
            file.contains(&format!("{}.output", c.name)),
            "case {} of the manifest has no output in layers.safetensors",
            c.name
        );
    }
    cases
}

pub fn layers_file() -> SafetensorsFile {
    fixtures::open("layers.safetensors")
}

/// The HEALPix RING grid with `npix` pixels.
pub fn grid(npix: usize) -> HealpixGrid {
    let nside = npix2nside(npix as u64).unwrap_or_else(|| panic!("{npix} is not a HEALPix size"));
    HealpixGrid::ring(nside).unwrap()
}

/// The graph of a case's `connection_indices` buffer (BallTree's tie order),
/// with its true distances, between grids of `n_in` and `n_out` pixels.
pub fn fixture_graph(sd: &StateDict, prefix: &str, n_in: usize) -> ConnectionGraph {
    let key = format!("{prefix}connection_indices");
    let t = sd.get(&key).unwrap_or_else(|| panic!("no {key}"));
    let (n_out, k) = (t.shape[0], t.shape[1]);
    let StateValues::I64(idx) = &t.values else {
        panic!("{key} is not int64")
    };
    let (gi, go) = (grid(n_in), grid(n_out));
    let (ci, co) = (gi.centers(), go.centers());
    let dist = idx
        .iter()
        .enumerate()
        .map(|(e, &i)| angular_distance(co[e / k], ci[i as usize]))
        .collect();
    ConnectionGraph::from_parts(gi, go, k, idx.clone(), dist, None).unwrap()
}
