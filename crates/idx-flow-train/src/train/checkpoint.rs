//! Checkpoints: a directory `checkpoints/step-NNNNNNNN/` holding the model
//! (`model.safetensors`, PyTorch-style names), the AdamW state
//! (`optimizer.bpk`, burn's burnpack record) and `state.json` (step, the loss
//! of every step so far, the config). A checkpoint is assembled in a temporary
//! directory and renamed into place, then `checkpoints/latest` (the name of the
//! newest one) is replaced atomically, so an interrupted write never leaves a
//! checkpoint that `--resume` would read. The two newest checkpoints are kept.
//!
//! Each checkpoint also holds `checksums.json` (length and SHA-256 of its
//! three files, see [`super::checksums`]). [`latest_intact_checkpoint`]
//! verifies them: a damaged checkpoint is passed over, with the reason, for
//! the newest intact one, and when none is intact resuming stops with an error
//! rather than starting afresh.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::checksums::{verify_checksums, write_checksums};
use crate::{Error, Result};
use idx_flow_healpix::io::write_bytes_atomically;

/// The files of a checkpoint, each covered by its `checksums.json`.
pub const CHECKPOINT_FILES: [&str; 3] = ["state.json", "model.safetensors", "optimizer.bpk"];

/// The small JSON part of a checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Optimiser steps taken.
    pub step: usize,
    /// Training loss (MSE on the data's scale) of every step taken, in order.
    pub losses: Vec<f64>,
    /// Seconds of training so far (excluding setup and evaluation).
    pub train_seconds: f64,
    /// The run's config.
    pub config: serde_json::Value,
}

/// The files of one checkpoint.
#[derive(Clone, Debug)]
pub struct CheckpointFiles {
    /// The directory.
    pub dir: PathBuf,
}

impl CheckpointFiles {
    /// `model.safetensors`.
    pub fn model(&self) -> PathBuf {
        self.dir.join("model.safetensors")
    }
    /// `optimizer.bpk`.
    pub fn optimizer(&self) -> PathBuf {
        self.dir.join("optimizer.bpk")
    }
    /// `state.json`.
    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }
}

/// Writes a checkpoint under `root` (`<out>/checkpoints`): `write` fills the
/// temporary directory it is given with the model and optimiser files.
pub fn write_checkpoint(
    root: &Path,
    state: &CheckpointState,
    write: impl FnOnce(&CheckpointFiles) -> Result<()>,
) -> Result<PathBuf> {
    std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
    let name = format!("step-{:08}", state.step);
    let final_dir = root.join(&name);
    let tmp = CheckpointFiles {
        dir: root.join(format!(".{name}.tmp-{}", std::process::id())),
    };
    if tmp.dir.exists() {
        std::fs::remove_dir_all(&tmp.dir).map_err(|e| Error::io(&tmp.dir, e))?;
    }
    std::fs::create_dir_all(&tmp.dir).map_err(|e| Error::io(&tmp.dir, e))?;
    let result = (|| {
        write(&tmp)?;
        let json = serde_json::to_vec_pretty(state)
            .map_err(|e| Error::format(tmp.state(), e.to_string()))?;
        write_bytes_atomically(&tmp.state(), &json)?;
        write_checksums(&tmp.dir, &CHECKPOINT_FILES)?;
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir).map_err(|e| Error::io(&final_dir, e))?;
        }
        std::fs::rename(&tmp.dir, &final_dir).map_err(|e| Error::io(&final_dir, e))?;
        write_bytes_atomically(&root.join("latest"), name.as_bytes())
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp.dir);
    }
    result?;
    // Keep the two newest.
    let mut steps: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(|e| Error::io(root, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("step-"))
        })
        .collect();
    steps.retain(|p| *p != final_dir);
    steps.sort();
    let keep = steps.len().saturating_sub(1);
    for old in &steps[..keep] {
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(final_dir)
}

/// A checkpoint that passed its checks, and the newer ones that did not.
#[derive(Debug)]
pub struct IntactCheckpoint {
    /// Its files.
    pub files: CheckpointFiles,
    /// Its `state.json`.
    pub state: CheckpointState,
    /// Newer checkpoints passed over, newest first, each with what was wrong
    /// (for a warning: the run goes back to `state.step`).
    pub damaged: Vec<(PathBuf, Error)>,
}

/// The step of a checkpoint directory's name (`step-00001200` → 1200).
fn step_of(name: &str) -> Option<usize> {
    let digits = name.strip_prefix("step-")?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Reads and checks one checkpoint: its checksums, then its state.
pub fn read_checkpoint(dir: &Path) -> Result<(CheckpointFiles, CheckpointState)> {
    let files = CheckpointFiles {
        dir: dir.to_path_buf(),
    };
    verify_checksums(dir, &CHECKPOINT_FILES)?;
    let text = std::fs::read(files.state()).map_err(|e| Error::io(files.state(), e))?;
    let state: CheckpointState = serde_json::from_slice(&text)
        .map_err(|e| Error::format(files.state(), format!("not a checkpoint state: {e}")))?;
    if state.losses.len() != state.step {
        return Err(Error::format(
            files.state(),
            format!(
                "{} losses for step {}; expected one per step",
                state.losses.len(),
                state.step
            ),
        ));
    }
    let named = dir.file_name().and_then(|n| n.to_str()).and_then(step_of);
    if named.is_some_and(|n| n != state.step) {
        return Err(Error::format(
            files.state(),
            format!(
                "records step {} but the directory is named for step {}",
                state.step,
                named.unwrap_or_default()
            ),
        ));
    }
    Ok((files, state))
}

/// The newest checkpoint under `root` (`<out>/checkpoints`) whose files match
/// their checksums, with the newer ones that did not. Checkpoints are found by
/// their directory names (`step-NNNNNNNN`), so a damaged or missing `latest`
/// file loses nothing. Errors when there is no checkpoint, or none intact.
pub fn latest_intact_checkpoint(root: &Path) -> Result<IntactCheckpoint> {
    let no_checkpoint = |why: String| {
        Error::io(
            root,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no checkpoint to resume from ({why}); run without --resume first"),
            ),
        )
    };
    let entries = std::fs::read_dir(root).map_err(|e| no_checkpoint(e.to_string()))?;
    let mut dirs: Vec<(usize, PathBuf)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .filter_map(|p| {
            let step = step_of(p.file_name()?.to_str()?)?;
            Some((step, p))
        })
        .collect();
    if dirs.is_empty() {
        return Err(no_checkpoint("no step-* directory".into()));
    }
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
    let mut damaged = Vec::new();
    for (_, dir) in dirs {
        match read_checkpoint(&dir) {
            Ok((files, state)) => {
                return Ok(IntactCheckpoint {
                    files,
                    state,
                    damaged,
                });
            }
            Err(e) => damaged.push((dir, e)),
        }
    }
    let reasons: Vec<String> = damaged
        .iter()
        .map(|(dir, e)| format!("{}: {e}", dir.display()))
        .collect();
    Err(Error::format(
        root,
        format!(
            "no intact checkpoint to resume from; every one is damaged: {}. \
             Start afresh without --resume, or restore the files",
            reasons.join("; ")
        ),
    ))
}

/// The checkpoint a run resumes from, read into memory: rank 0 of a
/// distributed run reads it and hands the same bytes to every other rank, so
/// that only rank 0 needs the output directory.
pub(crate) struct ResumePoint {
    pub files: CheckpointFiles,
    pub state: CheckpointState,
    pub model: Vec<u8>,
    pub optimizer: Vec<u8>,
}

impl ResumePoint {
    /// Reads the model and optimiser files of a checkpoint that passed its checks.
    pub fn read(intact: IntactCheckpoint) -> Result<Self> {
        let read = |p: PathBuf| std::fs::read(&p).map_err(|e| Error::io(p, e));
        Ok(Self {
            model: read(intact.files.model())?,
            optimizer: read(intact.files.optimizer())?,
            files: intact.files,
            state: intact.state,
        })
    }

    /// Four length-prefixed frames: the directory, `state.json`, the model
    /// and the optimiser state.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let state = serde_json::to_vec(&self.state)
            .map_err(|e| Error::format(self.files.state(), e.to_string()))?;
        let dir = self.files.dir.to_string_lossy().into_owned().into_bytes();
        let mut out = Vec::new();
        for frame in [&dir, &state, &self.model, &self.optimizer] {
            out.extend_from_slice(&(frame.len() as u64).to_le_bytes());
            out.extend_from_slice(frame);
        }
        Ok(out)
    }

    /// Reads what [`to_bytes`](Self::to_bytes) wrote.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bad = || Error::Distributed("rank 0's checkpoint arrived damaged".into());
        let mut frames = Vec::with_capacity(4);
        let mut rest = bytes;
        for _ in 0..4 {
            let (len, tail) = rest.split_first_chunk::<8>().ok_or_else(bad)?;
            let len = usize::try_from(u64::from_le_bytes(*len)).map_err(|_| bad())?;
            if tail.len() < len {
                return Err(bad());
            }
            let (frame, tail) = tail.split_at(len);
            frames.push(frame.to_vec());
            rest = tail;
        }
        let optimizer = frames.pop().ok_or_else(bad)?;
        let model = frames.pop().ok_or_else(bad)?;
        let state = frames.pop().ok_or_else(bad)?;
        let dir =
            PathBuf::from(String::from_utf8_lossy(&frames.pop().ok_or_else(bad)?).into_owned());
        let files = CheckpointFiles { dir };
        let state = serde_json::from_slice(&state)
            .map_err(|e| Error::format(files.state(), e.to_string()))?;
        Ok(Self {
            files,
            state,
            model,
            optimizer,
        })
    }
}
