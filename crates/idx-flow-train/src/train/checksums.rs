//! Damage detection for the files a run leaves behind: a directory's
//! `checksums.json` records the length and SHA-256 of each of its files when
//! they are written, and [`verify_checksums`] refuses the directory when any
//! of them no longer matches. A flipped bit in a weight or an optimiser
//! moment parses as a valid number, so only a checksum tells it apart.
//!
//! ```
//! use idx_flow_train::train::checksums::{verify_checksums, write_checksums};
//! let dir = tempfile::tempdir()?;
//! std::fs::write(dir.path().join("weights.bin"), [1u8, 2, 3])?;
//! write_checksums(dir.path(), &["weights.bin"])?;
//! verify_checksums(dir.path(), &["weights.bin"])?;
//! std::fs::write(dir.path().join("weights.bin"), [1u8, 2, 4])?;
//! let damage = verify_checksums(dir.path(), &["weights.bin"]).unwrap_err();
//! assert!(damage.to_string().contains("weights.bin"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};
use idx_flow_healpix::io::write_bytes_atomically;

/// The name of the checksum file in a checksummed directory.
pub const CHECKSUMS_FILE: &str = "checksums.json";

/// One file's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// Length in bytes.
    pub bytes: u64,
    /// SHA-256 of the content, lower-case hex.
    pub sha256: String,
}

/// The content of `checksums.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Checksums {
    algorithm: String,
    files: BTreeMap<String, FileDigest>,
}

/// Length and SHA-256 of the file at `path`, read in 1 MiB pieces.
pub fn digest_file(path: &Path) -> Result<FileDigest> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    let sha256 = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(FileDigest { bytes, sha256 })
}

/// Records the digests of `names` (files in `dir`) in `dir/checksums.json`,
/// written atomically. Call it after the files are complete.
pub fn write_checksums(dir: &Path, names: &[&str]) -> Result<()> {
    let mut files = BTreeMap::new();
    for name in names {
        files.insert(name.to_string(), digest_file(&dir.join(name))?);
    }
    let record = Checksums {
        algorithm: "sha256".into(),
        files,
    };
    let path = dir.join(CHECKSUMS_FILE);
    let json =
        serde_json::to_vec_pretty(&record).map_err(|e| Error::format(&path, e.to_string()))?;
    write_bytes_atomically(&path, &json)
}

/// Checks that each of `names` in `dir` is recorded in `dir/checksums.json`
/// and still has its recorded length and SHA-256. The error names the file
/// that differs (or the checksum file, when that is missing or unreadable).
pub fn verify_checksums(dir: &Path, names: &[&str]) -> Result<()> {
    let path = dir.join(CHECKSUMS_FILE);
    let bytes = std::fs::read(&path).map_err(|e| {
        Error::io(
            &path,
            std::io::Error::new(
                e.kind(),
                format!("{e}; expected the checksums of {}", names.join(", ")),
            ),
        )
    })?;
    let record: Checksums = serde_json::from_slice(&bytes).map_err(|e| {
        Error::format(
            &path,
            format!("damaged checksum file ({e}); expected {{\"algorithm\": \"sha256\", \"files\": {{name: {{bytes, sha256}}}}}}"),
        )
    })?;
    if record.algorithm != "sha256" {
        return Err(Error::format(
            &path,
            format!(
                "checksum algorithm {:?}, expected \"sha256\"",
                record.algorithm
            ),
        ));
    }
    for name in names {
        let file = dir.join(name);
        let expected = record
            .files
            .get(*name)
            .ok_or_else(|| Error::format(&path, format!("no checksum recorded for {name}")))?;
        let found = digest_file(&file)?;
        if found.bytes != expected.bytes {
            return Err(Error::format(
                &file,
                format!(
                    "damaged: {} bytes, but {CHECKSUMS_FILE} recorded {} when it was written \
                     (truncated or extended since)",
                    found.bytes, expected.bytes
                ),
            ));
        }
        if found.sha256 != expected.sha256 {
            return Err(Error::format(
                &file,
                format!(
                    "damaged: its SHA-256 is {} but {CHECKSUMS_FILE} recorded {} when it was written",
                    found.sha256, expected.sha256
                ),
            ));
        }
    }
    Ok(())
}
