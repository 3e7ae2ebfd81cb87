//! `idx-flow train` on datasets (a folder of `.npy` files, a zarr array, a
//! masked FITS map), `idx-flow apply`, and their errors, run as a user runs them.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use idx_flow::data::mask::{UNSEEN, is_unseen};
use idx_flow::data::npy::NpyWriter;
use idx_flow::geometry::{HealpixGrid, Ordering};

fn idx_flow(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_idx-flow"))
        .args(args)
        .output()
        .expect("run idx-flow");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `t` samples of 2 smooth channels on nside 8, RING.
fn maps(t: usize) -> Vec<f32> {
    let c = HealpixGrid::ring(8).unwrap().centers();
    (0..t)
        .flat_map(|i| {
            let a = i as f64 * 0.4;
            let c0: Vec<f32> = c.iter().map(|p| (p[0] * a.cos() + p[2]) as f32).collect();
            let c1: Vec<f32> = c.iter().map(|p| (p[1] * p[2] + a) as f32).collect();
            c0.into_iter().chain(c1)
        })
        .collect()
}

fn write(path: &Path, shape: &[usize], v: &[f32]) {
    let mut w = NpyWriter::create(path, shape).unwrap();
    w.append(v).unwrap();
    w.finish().unwrap();
}

/// Training options of a tiny model: nside 8, two levels, 2 latent channels.
fn tiny<'a>(data: &'a str, out: &'a str, steps: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--data",
        data,
        "--out",
        out,
        "--nside",
        "8",
        "--widths",
        "4,8",
        "--latent",
        "2",
        "--steps",
        steps,
        "--batch",
        "2",
        "--checkpoint-every",
        "0",
    ]
}

fn metrics(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap()
}

#[test]
fn train_on_a_folder_then_apply_to_new_maps() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("maps");
    std::fs::create_dir(&folder).unwrap();
    for (i, part) in maps(10).chunks(5 * 2 * 768).enumerate() {
        write(&folder.join(format!("year{i}.npy")), &[5, 2, 768], part);
    }
    let run = dir.path().join("run");
    // --batch 2 with the default workers: one worker of two samples.
    let (ok, stdout, stderr) = idx_flow(&tiny(s(&folder), s(&run), "4"));
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("9 training map(s), 1 validation map(s), no rotations"),
        "{stdout}"
    );
    assert!(stdout.contains("(1 workers)"), "{stdout}");
    assert!(stdout.contains("peak memory"), "{stdout}");
    let m = metrics(&run);
    assert_eq!(
        (m["train_maps"].as_u64(), m["val_maps"].as_u64()),
        (Some(9), Some(1))
    );
    assert!(run.join("normalisation.json").is_file());

    let new = dir.path().join("new.npy");
    let mut v = maps(3);
    v[2 * 768 + 5] = UNSEEN as f32; // sample 1, channel 0, pixel 5
    write(&new, &[3, 2, 768], &v);
    let out = dir.path().join("recon.npy");
    let codes = dir.path().join("codes.npy");
    let (ok, stdout, stderr) = idx_flow(&[
        "apply",
        "--run",
        s(&run),
        "--data",
        s(&new),
        "-o",
        s(&out),
        "--latent",
        s(&codes),
    ]);
    assert!(ok, "{stderr}");
    for t in 0..3 {
        assert!(stdout.contains(&format!("map {t:>6}  MSE")), "{stdout}");
    }
    assert!(stdout.contains("result   3 maps, PSNR"), "{stdout}");
    assert!(stdout.contains("maps/s"), "{stdout}");
    let recon: ndarray::Array3<f32> = ndarray_npy::read_npy(&out).unwrap();
    assert_eq!(recon.shape(), [3, 2, 768]);
    assert!(is_unseen(recon[[1, 0, 5]]));
    assert!(
        recon
            .iter()
            .filter(|x| !is_unseen(**x))
            .all(|x| x.is_finite())
    );
    let z: ndarray::Array3<f32> = ndarray_npy::read_npy(&codes).unwrap();
    assert_eq!(z.shape(), [3, 2, 48]);

    // One sample can go to FITS, and plots with its masked pixel grey.
    let one = dir.path().join("one.npy");
    write(&one, &[1, 2, 768], &v[2 * 768..4 * 768]);
    let fits = dir.path().join("one.fits");
    let (ok, _, stderr) = idx_flow(&[
        "apply",
        "--run",
        s(&run),
        "--data",
        s(&one),
        "-o",
        s(&fits),
        "--quiet",
    ]);
    assert!(ok, "{stderr}");
    let back = idx_flow::data::HealpixMaps::open(&fits, false).unwrap();
    assert_eq!((back.samples(), back.channels()), (1, 2));
    assert!(is_unseen(back.map(0, 0)[5]));
}

#[test]
fn a_zarr_array_trains() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("era.zarr");
    let store = Arc::new(zarrs::filesystem::FilesystemStore::new(&store_dir).unwrap());
    let array = zarrs::array::ArrayBuilder::new(
        vec![6, 2, 768],
        vec![1, 2, 768],
        zarrs::array::data_type::float32(),
        0.0f32,
    )
    .build(store, "/")
    .unwrap();
    array.store_metadata().unwrap();
    array
        .store_array_subset(&[0..6, 0..2, 0..768], maps(6))
        .unwrap();
    let run = dir.path().join("run");
    let (ok, stdout, stderr) = idx_flow(&tiny(s(&store_dir), s(&run), "3"));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("zarr array [6, 2, 768]"), "{stdout}");
    assert!(metrics(&run)["heldout_mse"].as_f64().unwrap().is_finite());
}

#[test]
fn a_masked_fits_map_trains_with_a_finite_loss_and_plots_grey() {
    let dir = tempfile::tempdir().unwrap();
    let grid = HealpixGrid::ring(8).unwrap();
    let z: Vec<f32> = grid
        .centers()
        .iter()
        .map(|c| {
            if c[2].abs() < 0.3 {
                UNSEEN as f32
            } else {
                c[2] as f32
            }
        })
        .collect();
    let fits = dir.path().join("sky.fits");
    idx_flow::data::fits::write_healpix_fits(&fits, Ordering::Ring, std::slice::from_ref(&z))
        .unwrap();
    let run = dir.path().join("run");
    let (ok, _, stderr) = idx_flow(&tiny(s(&fits), s(&run), "3"));
    assert!(ok, "{stderr}");
    let m = metrics(&run);
    for k in ["first_loss", "last_loss", "heldout_mse"] {
        let v = m[k].as_f64().unwrap();
        assert!(v.is_finite() && v < 10.0, "{k} = {v}");
    }
    assert_eq!(m["rotated"], true);

    let png = dir.path().join("sky.png");
    let (ok, _, stderr) = idx_flow(&["plot", s(&fits), "-o", s(&png), "--width", "400"]);
    assert!(ok, "{stderr}");
    let img = image::open(&png).unwrap().to_rgb8();
    let grey = img.pixels().filter(|p| p.0 == [128, 128, 128]).count();
    // The masked band is a quarter of the sphere's area; the map covers
    // about 0.39 of a 400 x 200 picture.
    assert!(grey > 4000, "{grey} grey pixels");
}

#[test]
fn dataset_and_apply_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(&d.join("n8.npy"), &[2, 2, 768], &maps(2));
    write(&d.join("n4.npy"), &[2, 2, 192], &[0.5; 768]);
    let mixed = d.join("mixed");
    std::fs::create_dir(&mixed).unwrap();
    std::fs::copy(d.join("n8.npy"), mixed.join("a.npy")).unwrap();
    std::fs::copy(d.join("n4.npy"), mixed.join("b.npy")).unwrap();
    let bytes = std::fs::read(d.join("n8.npy")).unwrap();
    std::fs::write(d.join("cut.npy"), &bytes[..bytes.len() - 1000]).unwrap();
    let empty = d.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let glob = format!("{}/*.nothing.npy", d.display());
    let run = d.join("run");
    let (ok, _, stderr) = idx_flow(&tiny(s(&d.join("n8.npy")), s(&run), "2"));
    assert!(ok, "{stderr}");
    let (n8, cut, x_fits) = (d.join("n8.npy"), d.join("cut.npy"), d.join("x.fits"));
    let three = d.join("three.npy");
    write(&three, &[1, 3, 768], &[0.0; 3 * 768]);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["train", "--data", s(&mixed)],
            "every file of a dataset needs the same nside and channels",
        ),
        (vec!["train", "--data", s(&cut)], "truncated"),
        (
            vec!["train", "--data", &glob],
            "no .npy or .fits files match",
        ),
        (
            vec!["train", "--data", s(&empty)],
            "without .npy or .fits files",
        ),
        (
            vec!["train", "--data", s(&n8), "--val-fraction", "1.5"],
            "[0, 1)",
        ),
        (
            vec![
                "apply",
                "--run",
                s(&empty),
                "--data",
                s(&three),
                "-o",
                "x.npy",
            ],
            "without a model",
        ),
        (
            vec![
                "apply",
                "--run",
                s(&run),
                "--data",
                s(&three),
                "-o",
                "x.npy",
            ],
            "trained on 2 channel(s) but the data have 3",
        ),
        (
            vec![
                "apply",
                "--run",
                s(&run),
                "--data",
                s(&n8),
                "-o",
                s(&x_fits),
            ],
            "write .npy",
        ),
    ];
    for (args, expected) in cases {
        let (ok, _, stderr) = idx_flow(&args);
        assert!(!ok, "{args:?} succeeded");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(expected),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    // Nothing half-written.
    assert!(!d.join("x.fits").exists() && !Path::new("x.npy").exists());
    let stray: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}
