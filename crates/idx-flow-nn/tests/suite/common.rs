//! Layers against idx_flow 0.2.1 (`layers.safetensors` + `manifest.json`), and
//! their own properties (statistics of dropouts, shapes, gradients, state dicts).

use idx_flow_healpix::geometry::{HealpixGrid, npix2nside};
use idx_flow_healpix::io::SafetensorsFile;

pub use idx_flow_testing::compare::{assert_close, case_state, tensor};
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
