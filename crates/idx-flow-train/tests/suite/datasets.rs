//! Datasets of many maps: `.npy` of every dtype read a sample at a time,
//! directories, globs and zarr arrays, masked pixels, the split, the epoch
//! order and the prefetch thread's time limit.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use idx_flow_healpix::geometry::{HealpixGrid, Ordering};
use idx_flow_train::Error;
use idx_flow_train::data::loader::{Prefetch, TrainingPlan, epoch_order};
use idx_flow_train::data::mask::UNSEEN;
use idx_flow_train::data::npy::{NpyMaps, NpyWriter};
use idx_flow_train::data::open_maps;
use idx_flow_train::data::reader::load_into_memory;
use idx_flow_train::data::zarr::ZarrMaps;
use idx_flow_train::data::{DataOptions, HealpixMaps, Rotation, SphereDataset, SphereSource};

/// Writes a `.npy` file by hand: header with `descr` and `shape`, then `data`.
pub(crate) fn raw_npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

fn write_f32(path: &Path, shape: &[usize], values: &[f32]) {
    let mut w = NpyWriter::create(path, shape).unwrap();
    w.append(values).unwrap();
    w.finish().unwrap();
}

#[test]
fn npy_of_every_numeric_dtype_reads_as_float32() {
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<i64> = (0..48).map(|v| v - 20).collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "<f2",
            values
                .iter()
                .flat_map(|v| half::f16::from_f32(*v as f32).to_le_bytes())
                .collect(),
        ),
        (
            ">f4",
            values
                .iter()
                .flat_map(|v| (*v as f32).to_be_bytes())
                .collect(),
        ),
        (
            "<f8",
            values
                .iter()
                .flat_map(|v| (*v as f64).to_le_bytes())
                .collect(),
        ),
        (
            "|i1",
            values
                .iter()
                .flat_map(|v| (*v as i8).to_le_bytes())
                .collect(),
        ),
        (
            "<i2",
            values
                .iter()
                .flat_map(|v| (*v as i16).to_le_bytes())
                .collect(),
        ),
        (
            ">i4",
            values
                .iter()
                .flat_map(|v| (*v as i32).to_be_bytes())
                .collect(),
        ),
        ("<i8", values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        (
            "<u2",
            values
                .iter()
                .flat_map(|v| ((*v + 20) as u16).to_le_bytes())
                .collect(),
        ),
        (
            "|u1",
            values
                .iter()
                .flat_map(|v| ((*v + 20) as u8).to_le_bytes())
                .collect(),
        ),
    ];
    for (descr, bytes) in cases {
        let path = dir.path().join("m.npy");
        raw_npy(&path, descr, &[48], &bytes);
        let maps = HealpixMaps::open(&path, false).unwrap_or_else(|e| panic!("{descr}: {e}"));
        let offset = if descr.contains('u') { 20.0 } else { 0.0 };
        for (got, want) in maps.map(0, 0).iter().zip(&values) {
            assert_eq!(*got, *want as f32 + offset, "{descr}");
        }
    }
    let path = dir.path().join("b.npy");
    raw_npy(&path, "|b1", &[48], &[0; 48]);
    let e = NpyMaps::open(&path).unwrap_err().to_string();
    assert!(e.contains("dtype '|b1' is not supported"), "{e}");
    raw_npy(&path, "<c8", &[48], &[0; 48 * 8]);
    assert!(
        NpyMaps::open(&path)
            .unwrap_err()
            .to_string()
            .contains("'<c8'")
    );
}

#[test]
fn truncated_and_fortran_npy_files_are_refused_with_their_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.npy");
    raw_npy(&path, "<f4", &[10, 2, 48], &vec![0u8; 4 * 48 * 20 - 100]);
    let e = NpyMaps::open(&path).unwrap_err().to_string();
    assert!(
        e.contains("truncated") && e.contains("3840 bytes") && e.contains("3740"),
        "{e}"
    );
    std::fs::write(&path, b"\x93NUMPY\x01\x00\x30\x00{'descr': '<f4', 'fortran_order': True, 'shape': (48,), }     \n").unwrap();
    let e = NpyMaps::open(&path).unwrap_err().to_string();
    assert!(e.contains("Fortran order"), "{e}");
    std::fs::write(&path, b"not numpy").unwrap();
    assert!(
        NpyMaps::open(&path)
            .unwrap_err()
            .to_string()
            .contains("not a .npy file")
    );
}

#[test]
fn npy_writer_leaves_nothing_behind_unless_finished() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.npy");
    let mut w = NpyWriter::create(&path, &[2, 12]).unwrap();
    w.append(&[1.0; 12]).unwrap();
    let e = w.finish().unwrap_err().to_string();
    assert!(e.contains("12 of 24 values"), "{e}");
    let mut w = NpyWriter::create(&path, &[2, 12]).unwrap();
    assert!(w.append(&[1.0; 25]).is_err());
    drop(w);
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    // A finished file is a numpy array ndarray-npy reads back.
    let mut w = NpyWriter::create(&path, &[2, 12]).unwrap();
    w.append(&(0..24).map(|v| v as f32).collect::<Vec<_>>())
        .unwrap();
    w.finish().unwrap();
    let back: ndarray::Array2<f32> = ndarray_npy::read_npy(&path).unwrap();
    assert_eq!(back[[1, 3]], 15.0);
}

#[test]
fn directories_and_globs_chain_their_files_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    // nside 2 (48 pixels), 2 channels; 3 samples in a.npy, 1 in b.npy, 2 in c.npy.
    for (name, t, value) in [("a.npy", 3, 0.0), ("b.npy", 1, 10.0), ("c.npy", 2, 20.0)] {
        let v: Vec<f32> = (0..t * 96).map(|i| value + (i / 96) as f32).collect();
        write_f32(&dir.path().join(name), &[t, 2, 48], &v);
    }
    std::fs::write(dir.path().join("notes.txt"), "not a map").unwrap();
    let maps = open_maps(dir.path().to_str().unwrap(), false).unwrap();
    assert_eq!(
        (maps.samples(), maps.channels(), maps.grid().nside()),
        (6, 2, 2)
    );
    let mut s = vec![0f32; 96];
    let firsts: Vec<f32> = (0..6)
        .map(|t| {
            maps.read(t, &mut s).unwrap();
            s[0]
        })
        .collect();
    assert_eq!(firsts, [0.0, 1.0, 2.0, 10.0, 20.0, 21.0]);
    assert!(
        maps.locate(5).ends_with("c.npy, sample 1"),
        "{}",
        maps.locate(5)
    );
    let glob = format!("{}/[ab].npy", dir.path().display());
    assert_eq!(open_maps(&glob, false).unwrap().samples(), 4);

    let e = open_maps(&format!("{}/*.fits", dir.path().display()), false).unwrap_err();
    assert!(
        e.to_string().contains("no .npy or .fits files match"),
        "{e}"
    );
    let empty = tempfile::tempdir().unwrap();
    let e = open_maps(empty.path().to_str().unwrap(), false).unwrap_err();
    assert!(e.to_string().contains("without .npy or .fits files"), "{e}");

    // A file of another nside, or of other channels, names both files.
    write_f32(&dir.path().join("d.npy"), &[1, 2, 192], &[0.0; 384]);
    let e = open_maps(dir.path().to_str().unwrap(), false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("d.npy") && e.contains("a.npy") && e.contains("nside 4"),
        "{e}"
    );
    std::fs::remove_file(dir.path().join("d.npy")).unwrap();
    write_f32(&dir.path().join("d.npy"), &[1, 3, 48], &[0.0; 144]);
    let e = open_maps(dir.path().to_str().unwrap(), false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("3 channel(s)") && e.contains("same nside and channels"),
        "{e}"
    );
}

#[test]
fn zarr_arrays_read_by_time_step_in_their_ordering_and_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(zarrs::filesystem::FilesystemStore::new(dir.path()).unwrap());
    let (t, c, n) = (5u64, 2u64, 48u64);
    let array = zarrs::array::ArrayBuilder::new(
        vec![t, c, n],
        vec![2, c, n],
        zarrs::array::data_type::float64(),
        0.0f64,
    )
    .attributes(
        serde_json::json!({"healpix_order": "nested"})
            .as_object()
            .unwrap()
            .clone(),
    )
    .build(store, "/")
    .unwrap();
    array.store_metadata().unwrap();
    let values: Vec<f64> = (0..t * c * n).map(|v| v as f64 * 0.5).collect();
    array
        .store_array_subset(&[0..t, 0..c, 0..n], &values)
        .unwrap();

    let maps = open_maps(dir.path().to_str().unwrap(), false).unwrap();
    assert_eq!((maps.samples(), maps.channels()), (5, 2));
    assert_eq!(maps.grid(), HealpixGrid::nested(2).unwrap());
    let mut s = vec![0f32; 96];
    maps.read(3, &mut s).unwrap();
    assert_eq!(s[0], (3 * 96) as f32 * 0.5);
    assert_eq!(s[95], (4 * 96 - 1) as f32 * 0.5);
    assert!(maps.describe().contains("float64"), "{}", maps.describe());
    assert!(maps.read(5, &mut s).is_err());

    let bad = tempfile::tempdir().unwrap();
    let store = Arc::new(zarrs::filesystem::FilesystemStore::new(bad.path()).unwrap());
    zarrs::array::ArrayBuilder::new(
        vec![2, 50],
        vec![1, 50],
        zarrs::array::data_type::float32(),
        0.0f32,
    )
    .build(store, "/")
    .unwrap()
    .store_metadata()
    .unwrap();
    let e = ZarrMaps::open(bad.path(), Ordering::Ring)
        .unwrap_err()
        .to_string();
    assert!(e.contains("50 pixels") && e.contains("12·nside²"), "{e}");
}

/// Two channels on nside 2, `t` samples: channel 0 = sample index, channel 1 = pixel index.
fn two_channel_maps(t: usize) -> Vec<f32> {
    (0..t)
        .flat_map(|s| {
            (0..48)
                .map(move |_| s as f32)
                .chain((0..48).map(|p| p as f32))
        })
        .collect()
}

#[test]
fn masked_pixels_are_left_out_of_statistics_and_flagged_in_samples() {
    let mut v = two_channel_maps(3);
    v[5] = UNSEEN as f32; // sample 0, channel 0, pixel 5 (RING)
    v[96 + 48 + 7] = f32::NAN; // sample 1, channel 1, pixel 7
    let maps = HealpixMaps::new(Ordering::Ring, 2, 2, v.clone()).unwrap();
    let e = SphereDataset::new(SphereSource::maps(maps.clone()), 2)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("sample 1")
            && e.contains("channel 1, pixel 7 is NaN")
            && e.contains("--mask-nan"),
        "{e}"
    );
    let options = DataOptions {
        mask_nan: true,
        ..DataOptions::default()
    };
    let data =
        SphereDataset::with_options(SphereSource::maps(maps), 2, &options, &|_, _| {}).unwrap();
    // Channel 1 is 0..47 on every valid pixel: mean 23.5 whatever the masked pixel held.
    let sum_1: f64 = (0..3)
        .flat_map(|s| {
            (0..48)
                .filter(move |&p| !(s == 1 && p == 7))
                .map(|p| p as f64)
        })
        .sum();
    assert!(
        (data.mean()[1] as f64 - sum_1 / 143.0).abs() < 1e-4,
        "{:?}",
        data.mean()
    );
    assert!((data.mean()[0] as f64 - (0.0 * 47.0 + 48.0 + 96.0) / 143.0).abs() < 1e-5);
    assert_eq!(data.peak(), 47.0);
    let s = data.render(0, &Rotation::IDENTITY).unwrap();
    let valid = s.valid.as_ref().unwrap();
    let nested5 = HealpixGrid::ring(2).unwrap().to_nested(5).unwrap() as usize;
    assert!(!valid[nested5 * 2] && valid[nested5 * 2 + 1]);
    assert_eq!(valid.iter().filter(|v| !**v).count(), 1);
    assert_eq!(s.values[nested5 * 2], 0.0);
    assert_eq!(data.normalised(&s)[nested5 * 2], 0.0);
    assert!(data.render(2, &Rotation::IDENTITY).unwrap().valid.is_none());

    // Every pixel of a channel masked: an error naming the sample and channel.
    let mut v = two_channel_maps(2);
    v[96..144].iter_mut().for_each(|x| *x = UNSEEN as f32);
    let maps = HealpixMaps::new(Ordering::Ring, 2, 2, v).unwrap();
    let e = SphereDataset::new(SphereSource::maps(maps), 2)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("sample 1: channel 0 has every pixel masked"),
        "{e}"
    );
}

#[test]
fn the_split_holds_out_the_last_fraction_or_the_given_ranges() {
    let split = |f: f64, r: Vec<[usize; 2]>, t| {
        DataOptions {
            mask_nan: false,
            val_fraction: f,
            val_ranges: r,
        }
        .split(t)
    };
    assert_eq!(
        split(0.1, vec![], 20).unwrap(),
        ((0..18).collect(), vec![18, 19])
    );
    assert_eq!(split(0.1, vec![], 1).unwrap(), (vec![0], vec![]));
    assert_eq!(split(0.25, vec![], 2).unwrap(), (vec![0], vec![1]));
    assert_eq!(split(0.0, vec![], 5).unwrap().1, Vec::<usize>::new());
    assert_eq!(
        split(0.5, vec![[1, 3], [6, 7]], 8).unwrap(),
        (vec![0, 3, 4, 5, 7], vec![1, 2, 6])
    );
    assert!(
        split(1.0, vec![], 5)
            .unwrap_err()
            .to_string()
            .contains("[0, 1)")
    );
    assert!(
        split(0.0, vec![[3, 9]], 8)
            .unwrap_err()
            .to_string()
            .contains("[3, 9)")
    );
    assert!(
        split(0.0, vec![[0, 4]], 4)
            .unwrap_err()
            .to_string()
            .contains("at least one training sample")
    );

    // Statistics come from the training maps only: channel 0 holds the sample index.
    let maps = HealpixMaps::new(Ordering::Ring, 2, 2, two_channel_maps(10)).unwrap();
    let options = DataOptions {
        val_fraction: 0.2,
        ..DataOptions::default()
    };
    let data =
        SphereDataset::with_options(SphereSource::maps(maps), 2, &options, &|_, _| {}).unwrap();
    assert_eq!(
        (data.train_indices().len(), data.val_indices()),
        (8, &[8usize, 9][..])
    );
    assert!((data.mean()[0] - 3.5).abs() < 1e-6, "{:?}", data.mean());
}

#[test]
fn epochs_visit_every_training_map_once_in_a_seeded_order() {
    let train: Vec<usize> = (0..10).map(|t| t * 2).collect();
    let a = epoch_order(3, 0, &train);
    let mut sorted = a.clone();
    sorted.sort();
    assert_eq!(sorted, train);
    assert_eq!(a, epoch_order(3, 0, &train));
    assert_ne!(a, epoch_order(3, 1, &train));
    assert_ne!(a, epoch_order(4, 0, &train));
    // Steps of 4 samples: epoch e is samples 10e..10e+10 of the sequence.
    let mut plan = TrainingPlan::new(3, 4, false, &train);
    let seq: Vec<usize> = (0..5)
        .flat_map(|s| plan.items(s))
        .map(|(t, r)| {
            assert_eq!(r, Rotation::IDENTITY);
            t
        })
        .collect();
    assert_eq!(&seq[..10], &a[..]);
    assert_eq!(&seq[10..20], &epoch_order(3, 1, &train)[..]);
    // A plan started anywhere (a resumed run) gives the same samples.
    let mut fresh = TrainingPlan::new(3, 4, false, &train);
    assert_eq!(fresh.items(3), plan.items(3));
    let mut rotating = TrainingPlan::new(3, 4, true, &train);
    assert_ne!(rotating.item(0, 0).1, Rotation::IDENTITY);
}

#[test]
fn prefetch_delivers_in_order_and_times_out_instead_of_hanging() {
    std::thread::scope(|scope| {
        let p = Prefetch::start(scope, 2..6, 2, Duration::from_secs(10), |s| Ok(s * 10));
        for s in 2..6 {
            assert_eq!(p.next(s).unwrap(), s * 10);
        }
        let slow = Prefetch::start(scope, 0..1, 1, Duration::from_millis(50), |_| {
            std::thread::sleep(Duration::from_millis(400));
            Ok(0)
        });
        let e = slow.next(0).unwrap_err();
        assert!(matches!(e, Error::Timeout { .. }), "{e}");
        assert!(e.to_string().contains("timed out after 0.05 s"), "{e}");
        let failing = Prefetch::start(scope, 0..3, 1, Duration::from_secs(10), |s| {
            if s == 1 {
                Err(Error::arg("map", "bad file"))
            } else {
                Ok(s)
            }
        });
        assert_eq!(failing.next(0).unwrap(), 0);
        assert!(
            failing
                .next(1)
                .unwrap_err()
                .to_string()
                .contains("bad file")
        );
        assert!(failing.next(2).unwrap_err().to_string().contains("stopped"));
    });
}

#[test]
fn streamed_and_in_memory_sources_give_the_same_samples() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.npy");
    let v = two_channel_maps(4);
    write_f32(&path, &[4, 2, 48], &v);
    let streamed = SphereSource::open(path.to_str().unwrap(), false).unwrap();
    assert!(
        streamed.describe().contains("read from disk"),
        "{}",
        streamed.describe()
    );
    let memory = streamed.clone().in_memory().unwrap();
    let SphereSource::Maps(m) = &memory else {
        panic!("maps expected")
    };
    assert_eq!(load_into_memory(m.as_ref()).unwrap().data(), &v[..]);
    let options = DataOptions {
        val_fraction: 0.25,
        ..DataOptions::default()
    };
    let a = SphereDataset::with_options(streamed, 4, &options, &|_, _| {}).unwrap();
    let b = SphereDataset::with_options(memory, 4, &options, &|_, _| {}).unwrap();
    assert_eq!(a.normalisation(), b.normalisation());
    let r = Rotation::from_quaternion([0.3, 0.1, -0.5, 0.8]);
    assert_eq!(a.render(2, &r).unwrap(), b.render(2, &r).unwrap());
}
