//! Checkpoints: a directory `checkpoints/step-NNNNNNNN/` holding the model
//! (`model.safetensors`, PyTorch-style names), the AdamW state
//! (`optimizer.bpk`, burn's burnpack record) and `state.json` (step, the loss
//! of every step so far, the config). A checkpoint is assembled in a temporary
//! directory and renamed into place, then `checkpoints/latest` (the name of the
//! newest one) is replaced atomically, so an interrupted write never leaves a
//! checkpoint that `--resume` would read. The two newest checkpoints are kept.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};
use idx_flow_healpix::io::write_bytes_atomically;

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

/// The newest checkpoint under `root` and its state, or an error saying none is there.
pub fn latest_checkpoint(root: &Path) -> Result<(CheckpointFiles, CheckpointState)> {
    let latest = root.join("latest");
    let name = std::fs::read_to_string(&latest).map_err(|e| {
        Error::io(
            &latest,
            std::io::Error::new(
                e.kind(),
                format!("no checkpoint to resume from ({e}); run without --resume first"),
            ),
        )
    })?;
    let files = CheckpointFiles {
        dir: root.join(name.trim()),
    };
    let text = std::fs::read_to_string(files.state()).map_err(|e| Error::io(files.state(), e))?;
    let state: CheckpointState = serde_json::from_str(&text)
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
    Ok((files, state))
}
