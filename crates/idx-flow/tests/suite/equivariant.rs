//! The equivariant layers (`idx_flow::equivariant`) against ginjax 0.1.8.

use burn::tensor::{Device, Tensor, TensorData};
use idx_flow::equivariant::*;
use idx_flow::io::SafetensorsFile;
use serde_json::Value;

use crate::fixtures;
use crate::layers::assert_close;

fn file() -> SafetensorsFile {
    fixtures::open("ginjax.safetensors")
}

fn manifest() -> Value {
    let path = fixtures::dir().join("ginjax_manifest.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("manifest {}: {e}", path.display()));
    serde_json::from_str(&text).expect("ginjax_manifest.json is JSON")
}

#[test]
fn group_operators_match_ginjax() {
    let file = file();
    for d in [2usize, 3] {
        let (v, s) = file.f32(&format!("group.D{d}.operators")).unwrap();
        let ours: Vec<f32> = hyperoctahedral_group(d)
            .unwrap()
            .iter()
            .flat_map(|g| g.matrix().into_iter().map(|x| x as f32))
            .collect();
        assert_eq!(s, vec![ours.len() / (d * d), d, d]);
        assert_eq!(ours, v, "B_{d} operators");
    }
}

#[test]
fn filter_bases_match_ginjax() {
    let file = file();
    let m = manifest();
    let counts = m["filter_counts"].as_object().expect("filter_counts");
    assert!(!counts.is_empty());
    for (name, n) in counts {
        // M{M}.k{k}.p{p}.D{D}
        let parts: Vec<usize> = name.split('.').map(|p| p[1..].parse().unwrap()).collect();
        let (size, k, p, d) = (parts[0], parts[1], parts[2], parts[3]);
        let ours = invariant_filters(size, TensorKey::new(k, p), d).unwrap();
        assert_eq!(ours.len() as u64, n.as_u64().unwrap(), "{name}: count");
        let key = format!("filters.{name}");
        if ours.is_empty() {
            assert!(!file.contains(&key), "{key}: ginjax has filters");
            continue;
        }
        let (v, s) = file.f32(&key).unwrap();
        assert_close(&key, ours.values(), &ours.shape(), &v, &s);
    }
}

/// A multi-image of one block from pixel-layout values `[B, C, *N, *(D,)*k]`.
fn image<const R: usize>(
    key: TensorKey,
    values: &[f32],
    shape: &[usize],
    torus: bool,
    device: &Device,
) -> MultiImage<R> {
    let mut x = MultiImage::<R>::new(vec![torus; R - 2]).unwrap();
    x.insert_pixel_layout(key, values, shape, device).unwrap();
    x
}

fn values<const R: usize>(t: Tensor<R>) -> Vec<f32> {
    t.into_data().convert::<f32>().iter::<f32>().collect()
}

/// ginjax's filters are invariant under our action of every group element,
/// which pins the action's conventions (centre, direction, components).
#[test]
fn fixture_filters_are_invariant_under_the_action() {
    let file = file();
    let device = Device::default();
    let names = fixtures::prefixes(&file, "");
    let mut checked = 0;
    for name in names.iter().filter(|n| n.starts_with("filters.")) {
        let (v, s) = file.f32(name).unwrap();
        let d: usize = name.rsplit(".D").next().unwrap().parse().unwrap();
        let k = s.len() - 1 - d;
        let p: usize = name.split(".p").nth(1).unwrap()[..1].parse().unwrap();
        let key = TensorKey::new(k, p);
        let mut shape = vec![s[0], 1];
        shape.extend_from_slice(&s[1..]);
        for g in hyperoctahedral_group(d).unwrap() {
            let (a, b) = match d {
                2 => {
                    let x = image::<4>(key, &v, &shape, false, &device);
                    let y = g.apply(&x).unwrap();
                    (
                        values(x.get(key).unwrap().clone()),
                        values(y.get(key).unwrap().clone()),
                    )
                }
                _ => {
                    let x = image::<5>(key, &v, &shape, false, &device);
                    let y = g.apply(&x).unwrap();
                    (
                        values(x.get(key).unwrap().clone()),
                        values(y.get(key).unwrap().clone()),
                    )
                }
            };
            let sh = [a.len()];
            assert_close(&format!("{name} under {:?}", g.matrix()), &b, &sh, &a, &sh);
        }
        checked += 1;
    }
    assert!(checked > 0, "no filters in the fixture");
}
