//! Choosing the backend by name (`--device cpu|wgpu|cuda`).

use burn::tensor::Device;

use crate::{Error, Result};

/// The device called `name` and a description for `metrics.json`. `cpu` is
/// burn's `flex` backend (always there); `wgpu` and `cuda` need the crate
/// features of the same names.
///
/// ```
/// let (device, name) = idx_flow_train::train::device::by_name("cpu")?;
/// assert_eq!(name, "flex (CPU)");
/// assert!(idx_flow_train::train::device::by_name("tpu").is_err());
/// # Ok::<(), idx_flow_train::Error>(())
/// ```
pub fn by_name(name: &str) -> Result<(Device, String)> {
    match name.to_ascii_lowercase().as_str() {
        // Not Device::default(): with a GPU feature compiled in, that is the GPU.
        "cpu" | "flex" => Ok((Device::flex(), "flex (CPU)".into())),
        "wgpu" => wgpu(),
        "cuda" => cuda(),
        other => Err(Error::arg(
            "device",
            format!("unknown device {other:?}, expected cpu, wgpu or cuda"),
        )),
    }
}

#[cfg(feature = "wgpu")]
fn wgpu() -> Result<(Device, String)> {
    Ok((
        Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
        "wgpu".into(),
    ))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu() -> Result<(Device, String)> {
    Err(Error::arg(
        "device",
        "wgpu is not compiled in; build with `--features wgpu` (e.g. cargo run --release -p idx-flow-cli --features wgpu -- train --device wgpu)",
    ))
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<(Device, String)> {
    Ok((Device::cuda(0usize), "cuda".into()))
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<(Device, String)> {
    Err(Error::arg(
        "device",
        "cuda is not compiled in; build with `--features cuda` (e.g. cargo run --release -p idx-flow-cli --features cuda -- train --device cuda)",
    ))
}
