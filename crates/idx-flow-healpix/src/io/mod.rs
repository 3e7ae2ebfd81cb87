//! Files: atomic writes, safetensors tensors, and connection graphs as `.npz`
//! or `.safetensors`.

mod graph_file;
mod npz_sizes;
mod tensors;

pub use tensors::{SafetensorsFile, SafetensorsWriter, TensorData};

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Writes `path` by calling `fill` on a temporary file beside it, syncing it and
/// renaming it into place, so that a crash or an error never leaves a partial file.
pub fn write_atomically(path: &Path, fill: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    let tmp = temporary_path(path)?;
    let result = (|| {
        let mut file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        fill(&mut file)?;
        file.flush().map_err(|e| Error::io(&tmp, e))?;
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The temporary name beside `path` that a file is written under before it
/// is renamed into place: `.NAME.tmp-PID` in the same directory (so the
/// rename cannot cross file systems).
pub fn temporary_path(path: &Path) -> Result<PathBuf> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::format(path, "expected a file name, got a directory path"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    Ok(dir.join(tmp_name))
}

/// Writes `bytes` to `path` atomically.
pub fn write_bytes_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically(path, |f| f.write_all(bytes).map_err(|e| Error::io(path, e)))
}
