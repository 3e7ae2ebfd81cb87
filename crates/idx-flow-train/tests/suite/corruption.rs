//! Damaged files give errors, never a panic or a silent read: randomly
//! corrupted copies of valid files (bytes flipped, inserted, cut), as a
//! user's damaged disk or half-copied download makes them. The fuzz targets
//! (fuzz/) search much further; these keep the cases that were found.

use std::panic::{AssertUnwindSafe, catch_unwind};

use idx_flow_core::rng::SplitMix64;
use idx_flow_healpix::geometry::Ordering;
use idx_flow_train::data::HealpixMaps;
use idx_flow_train::data::fits::{read_healpix_fits_bytes, write_healpix_fits};
use idx_flow_train::data::npy::NpyWriter;
use idx_flow_train::train::checkpoint::{
    CheckpointState, latest_intact_checkpoint, read_checkpoint, write_checkpoint,
};

/// A damaged copy of `bytes`: one to four edits, each a flipped byte, a few
/// inserted bytes or a cut tail.
fn corrupt(bytes: &[u8], rng: &mut SplitMix64) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len().max(1) as u64) as usize;
        match rng.below(3) {
            0 if !out.is_empty() => out[at] ^= 1 << rng.below(8),
            1 => {
                let junk: Vec<u8> = (0..1 + rng.below(8))
                    .map(|_| rng.next_u64() as u8)
                    .collect();
                out.splice(at..at, junk);
            }
            _ => out.truncate(at),
        }
    }
    out
}

/// healpy 1.20.1's `write_map` of two nside-4 NESTED maps (float32 columns).
const HEALPY_FITS: &[u8] =
    include_bytes!("../../../../fuzz/seeds/fits/healpy_nested_nside4_c2.fits");

#[test]
fn corrupted_fits_maps_give_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours.fits");
    let maps: Vec<Vec<f32>> = (0..3)
        .map(|c| (0..768).map(|p| (p * c) as f32).collect())
        .collect();
    write_healpix_fits(&ours, Ordering::Ring, &maps).unwrap();
    let ours = std::fs::read(&ours).unwrap();
    let healpy = read_healpix_fits_bytes(HEALPY_FITS, "healpy.fits".as_ref()).unwrap();
    assert_eq!((healpy.nside(), healpy.channels()), (4, 2));
    let mut rng = SplitMix64::new(25);
    let mut errors = 0;
    for (i, valid) in [&ours[..], HEALPY_FITS]
        .iter()
        .cycle()
        .take(500)
        .enumerate()
    {
        let damaged = corrupt(valid, &mut rng);
        let read = catch_unwind(AssertUnwindSafe(|| {
            read_healpix_fits_bytes(&damaged, "damaged.fits".as_ref())
        }));
        match read {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                errors += 1;
                assert!(e.to_string().contains("damaged.fits"), "case {i}: {e}");
            }
            Err(_) => panic!("case {i}: the FITS reader panicked on {damaged:?}"),
        }
    }
    // Most damage is caught (the rest flips values inside the data).
    assert!(errors > 200, "{errors} of 500 damaged files refused");
}

#[test]
fn corrupted_npy_maps_give_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("maps.npy");
    let mut w = NpyWriter::create(&path, &[2, 3, 192]).unwrap();
    w.append(&(0..2 * 3 * 192).map(|v| v as f32).collect::<Vec<_>>())
        .unwrap();
    w.finish().unwrap();
    let valid = std::fs::read(&path).unwrap();
    let mut rng = SplitMix64::new(26);
    let damaged_path = dir.path().join("damaged.npy");
    for i in 0..250 {
        std::fs::write(&damaged_path, corrupt(&valid, &mut rng)).unwrap();
        let read = catch_unwind(|| HealpixMaps::open(&damaged_path, false));
        match read {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => assert!(e.to_string().contains("damaged.npy"), "case {i}: {e}"),
            Err(_) => panic!("case {i}: the .npy reader panicked"),
        }
    }
    // A header promising far more than the file holds says so, without allocating it.
    crate::datasets::raw_npy(&damaged_path, "<f4", &[9_999_999_999, 3, 192], &[0u8; 4096]);
    let e = HealpixMaps::open(&damaged_path, false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("9999999999") && e.contains("bytes of data"),
        "{e}"
    );
}

#[test]
fn every_damaged_checkpoint_file_is_refused_and_an_older_one_taken() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let weights: Vec<u8> = (0..4000u32)
        .flat_map(|v| (v as f32 * 1e-3).to_le_bytes())
        .collect();
    let moments: Vec<u8> = (0..2000u32)
        .flat_map(|v| (v as f32).to_le_bytes())
        .collect();
    for step in [3, 6] {
        let state = CheckpointState {
            step,
            losses: vec![0.5; step],
            train_seconds: 1.0,
            config: serde_json::json!({"steps": 6}),
        };
        write_checkpoint(root, &state, |f| {
            std::fs::write(f.model(), &weights).unwrap();
            std::fs::write(f.optimizer(), &moments).unwrap();
            Ok(())
        })
        .unwrap();
    }
    let newest = root.join("step-00000006");
    let older = root.join("step-00000003");
    assert_eq!(latest_intact_checkpoint(root).unwrap().state.step, 6);
    let mut rng = SplitMix64::new(27);
    for i in 0..120 {
        let name = [
            "model.safetensors",
            "optimizer.bpk",
            "state.json",
            "checksums.json",
        ][i % 4];
        let file = newest.join(name);
        let genuine = std::fs::read(&file).unwrap();
        let damaged = corrupt(&genuine, &mut rng);
        if damaged == genuine {
            continue;
        }
        std::fs::write(&file, &damaged).unwrap();
        let e = read_checkpoint(&newest).unwrap_err().to_string();
        assert!(
            e.contains(name) || e.contains("checksums.json"),
            "case {i}: {e}"
        );
        let intact = latest_intact_checkpoint(root).unwrap();
        assert_eq!(
            intact.state.step, 3,
            "case {i}: resumed from a damaged checkpoint"
        );
        assert_eq!(intact.damaged.len(), 1);
        assert_eq!(intact.damaged[0].0, newest);
        std::fs::write(&file, &genuine).unwrap();
    }
    // With every checkpoint damaged, resuming stops rather than starting afresh.
    for dir in [&newest, &older] {
        let model = dir.join("model.safetensors");
        let mut bytes = std::fs::read(&model).unwrap();
        bytes[100] ^= 1;
        std::fs::write(&model, bytes).unwrap();
    }
    let e = latest_intact_checkpoint(root).unwrap_err().to_string();
    assert!(
        e.contains("no intact checkpoint")
            && e.contains("step-00000003")
            && e.contains("step-00000006"),
        "{e}"
    );
    // A lost `latest` file loses nothing: checkpoints are found by name.
    std::fs::remove_file(root.join("latest")).unwrap();
    std::fs::write(dir.path().join("step-00000003/model.safetensors"), &weights).unwrap();
    assert_eq!(latest_intact_checkpoint(root).unwrap().state.step, 3);
}
