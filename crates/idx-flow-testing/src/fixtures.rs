//! Where the reference data is, and how to read it.

use std::collections::BTreeSet;
use std::path::PathBuf;

use idx_flow_healpix::io::SafetensorsFile;

/// The fixtures committed with the workspace (`fixtures/` at its root).
pub fn workspace_fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// The fixture folder: `$IDX_FLOW_FIXTURES`, or the workspace's `fixtures/`.
pub fn dir() -> PathBuf {
    match std::env::var_os("IDX_FLOW_FIXTURES") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => workspace_fixtures(),
    }
}

/// Opens `name` in the fixture folder.
pub fn open(name: &str) -> SafetensorsFile {
    let path = dir().join(name);
    SafetensorsFile::open(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// `name` in the fixture folder, or in the workspace's `fixtures/` when that
/// folder lacks it (fixtures that only this crate's generators make, such as
/// `make_pdequinox_archs.py`'s, so that a shared fixture set still runs them).
pub fn find(name: &str) -> PathBuf {
    let path = dir().join(name);
    if path.exists() {
        path
    } else {
        workspace_fixtures().join(name)
    }
}

/// The JSON manifest `name` (e.g. `spectrans_manifest.json`), found as [`find`] does.
pub fn manifest(name: &str) -> serde_json::Value {
    let path = find(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("manifest {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("manifest {}: {e}", path.display()))
}

/// The cases of a manifest's `"cases"` object (name, entry), in name order:
/// at least one, and each with an output in `file` (`{case}.output`, or
/// `{case}.output.{key}` for outputs of several blocks). `what` names the
/// two files in the messages.
pub fn manifest_cases(
    manifest: &serde_json::Value,
    file: &SafetensorsFile,
    what: &str,
) -> Vec<(String, serde_json::Value)> {
    let cases: Vec<(String, serde_json::Value)> = manifest["cases"]
        .as_object()
        .unwrap_or_else(|| panic!("{what}: the manifest has no 'cases'"))
        .iter()
        .map(|(name, v)| (name.clone(), v.clone()))
        .collect();
    assert!(!cases.is_empty(), "{what}: no cases in the manifest");
    let names = file.names();
    for (case, _) in &cases {
        let output = format!("{case}.output");
        let dotted = format!("{output}.");
        assert!(
            names.iter().any(|n| *n == output || n.starts_with(&dotted)),
            "{what}: case {case} of the manifest has no output in the tensors"
        );
    }
    cases
}

/// Every fixture file whose name starts with `prefix` and ends in `.safetensors`.
pub fn open_all(prefix: &str) -> Vec<SafetensorsFile> {
    open_all_named(prefix).into_iter().map(|(_, f)| f).collect()
}

/// [`open_all`], each file with its name without `.safetensors`, in name order.
pub fn open_all_named(prefix: &str) -> Vec<(String, SafetensorsFile)> {
    let mut names: Vec<String> = std::fs::read_dir(dir())
        .unwrap_or_else(|e| panic!("fixture folder {}: {e}", dir().display()))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix) && n.ends_with(".safetensors"))
        .collect();
    names.sort();
    assert!(
        !names.is_empty(),
        "no {prefix}*.safetensors in {}",
        dir().display()
    );
    names
        .iter()
        .map(|n| (n.trim_end_matches(".safetensors").to_string(), open(n)))
        .collect()
}

/// The distinct values of the first dot-separated field of the names that end with `suffix`.
pub fn prefixes(file: &SafetensorsFile, suffix: &str) -> BTreeSet<String> {
    file.names()
        .into_iter()
        .filter_map(|n| n.strip_suffix(suffix).map(str::to_string))
        .collect()
}
