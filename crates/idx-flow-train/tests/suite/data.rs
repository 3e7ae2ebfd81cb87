//! Data on the sphere: equirectangular sampling, rotations, map files.

use std::path::Path;

use idx_flow_core::rng::SplitMix64;
use idx_flow_healpix::Error;
use idx_flow_healpix::geometry::{HealpixGrid, Ordering, ang2vec};
use idx_flow_train::data::fits::{read_healpix_fits, write_healpix_fits};
use idx_flow_train::data::{EquirectImage, HealpixMaps, Rotation, SphereDataset, SphereSource};

/// A one-channel image whose value is the pixel's column index.
fn column_image(w: usize, h: usize) -> EquirectImage {
    let data = (0..h).flat_map(|_| (0..w).map(|j| j as f32)).collect();
    EquirectImage::new(w, h, 1, data).unwrap()
}

#[test]
fn bilinear_sampling_hits_pixel_centres_and_interpolates_between_them() {
    let (w, h) = (8, 4);
    let img = column_image(w, h);
    for j in 0..w {
        // Centre of column j, on the equator between rows 1 and 2.
        let lon = -180.0 + (j as f64 + 0.5) * 360.0 / w as f64;
        let v = ang2vec(std::f64::consts::FRAC_PI_2, lon.to_radians());
        assert!((img.sample(v)[0] - j as f32).abs() < 1e-4, "column {j}");
    }
    // Halfway between columns 2 and 3.
    let lon: f64 = -180.0 + 3.0 * 360.0 / w as f64;
    let v = ang2vec(std::f64::consts::FRAC_PI_2, lon.to_radians());
    assert!((img.sample(v)[0] - 2.5).abs() < 1e-4);
    // Across the date line the last and first columns mix.
    let v = ang2vec(std::f64::consts::FRAC_PI_2, std::f64::consts::PI);
    assert!((img.sample(v)[0] - 3.5).abs() < 1e-4);
}

#[test]
fn latitude_rows_and_poles() {
    // Rows hold their index: row 0 at the north.
    let (w, h) = (4, 6);
    let data = (0..h).flat_map(|i| (0..w).map(move |_| i as f32)).collect();
    let img = EquirectImage::new(w, h, 1, data).unwrap();
    for i in 0..h {
        let lat = 90.0 - (i as f64 + 0.5) * 180.0 / h as f64;
        let v = ang2vec((90.0 - lat).to_radians(), 0.3);
        assert!((img.sample(v)[0] - i as f32).abs() < 1e-4, "row {i}");
    }
    assert_eq!(img.sample([0.0, 0.0, 1.0])[0], 0.0);
    assert_eq!(img.sample([0.0, 0.0, -1.0])[0], (h - 1) as f32);
}

#[test]
fn sampling_many_directions_gives_the_values_of_sampling_each() {
    // Three channels of distinct values, directions over the whole sphere:
    // both poles (clamped rows), the date line (wrapped columns) and random
    // ones, more than the prefetch distance apart and not a multiple of it.
    let (w, h, c) = (37, 19, 3);
    let data = (0..w * h * c).map(|i| (i as f32 * 0.618).sin()).collect();
    let img = EquirectImage::new(w, h, c, data).unwrap();
    let mut rng = SplitMix64::for_stream(11, 0, 0);
    let mut dirs = vec![
        [0.0, 0.0, 1.0],
        [0.0, 0.0, -1.0],
        [-1.0, 1e-12, 0.0],
        [-1.0, -1e-12, 0.0],
    ];
    dirs.extend((0..101).map(|_| Rotation::random(&mut rng).apply([0.0, 0.0, 1.0])));
    let mut many = vec![f32::NAN; dirs.len() * c];
    img.sample_many(&dirs, &mut many).unwrap();
    let err = img
        .sample_many(&dirs, &mut many[1..])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("105 directions x 3 channels = 315 values") && err.contains("314"),
        "{err}"
    );
    for (v, got) in dirs.iter().zip(many.chunks(c)) {
        let one = img.sample(*v);
        assert_eq!(
            got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            one.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            "direction {v:?}"
        );
    }
}

#[test]
fn downsampling_averages_blocks() {
    let img = column_image(6, 4).downsample(2).unwrap();
    assert_eq!((img.width(), img.height()), (3, 2));
    assert_eq!(img.data(), &[0.5, 2.5, 4.5, 0.5, 2.5, 4.5]);
}

#[test]
fn image_errors_say_what_was_expected() {
    let e = EquirectImage::new(4, 2, 1, vec![0.0; 7]).unwrap_err();
    assert!(e.to_string().contains("[2, 4, 1]"), "{e}");
    let e = EquirectImage::new(2, 2, 1, vec![0.0, f32::NAN, 0.0, 0.0]).unwrap_err();
    assert!(e.to_string().contains("NaN"), "{e}");
    let e = EquirectImage::decode(b"not an image", Path::new("x.png")).unwrap_err();
    assert!(e.to_string().contains("PNG or JPEG"), "{e}");
}

#[test]
fn rotations_are_orthonormal_reproducible_and_uniform() {
    let mut mean = [0.0f64; 3];
    let n = 4000;
    for i in 0..n {
        let r = Rotation::random(&mut SplitMix64::for_stream(3, 0, i));
        let r2 = Rotation::random(&mut SplitMix64::for_stream(3, 0, i));
        assert_eq!(r, r2);
        for a in 0..3 {
            for b in 0..3 {
                let dot: f64 = (0..3).map(|k| r.m[a][k] * r.m[b][k]).sum();
                let want = if a == b { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-12);
            }
        }
        let det = r.m[0][0] * (r.m[1][1] * r.m[2][2] - r.m[1][2] * r.m[2][1])
            - r.m[0][1] * (r.m[1][0] * r.m[2][2] - r.m[1][2] * r.m[2][0])
            + r.m[0][2] * (r.m[1][0] * r.m[2][1] - r.m[1][1] * r.m[2][0]);
        assert!((det - 1.0).abs() < 1e-12);
        let z = r.apply([0.0, 0.0, 1.0]);
        for k in 0..3 {
            mean[k] += z[k] / n as f64;
        }
    }
    // The image of the pole is uniform on the sphere: its mean is ~0 (σ ≈ 1/√(3n) ≈ 0.009).
    for m in mean {
        assert!(m.abs() < 0.04, "{mean:?}");
    }
}

fn write_npy(path: &Path, shape: &[usize], values: &[f32]) {
    let arr = ndarray::ArrayD::from_shape_vec(shape.to_vec(), values.to_vec()).unwrap();
    ndarray_npy::write_npy(path, &arr).unwrap();
}

#[test]
fn npy_maps_load_in_every_layout_and_refuse_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.npy");
    write_npy(&p, &[48], &[1.0; 48]);
    let m = HealpixMaps::open(&p, false).unwrap();
    assert_eq!((m.nside(), m.channels(), m.samples()), (2, 1, 1));
    assert_eq!(m.grid().ordering(), Ordering::Ring);
    write_npy(&p, &[3, 48], &vec![1.0; 144]);
    let m = HealpixMaps::open(&p, true).unwrap();
    assert_eq!((m.channels(), m.grid().ordering()), (3, Ordering::Nested));
    write_npy(
        &p,
        &[2, 3, 12],
        &(0..72).map(|v| v as f32).collect::<Vec<_>>(),
    );
    let m = HealpixMaps::open(&p, false).unwrap();
    assert_eq!((m.nside(), m.channels(), m.samples()), (1, 3, 2));
    assert_eq!(m.map(1, 2)[0], 60.0);

    write_npy(&p, &[50], &[1.0; 50]);
    let e = HealpixMaps::open(&p, false).unwrap_err().to_string();
    assert!(e.contains("50 pixels") && e.contains("12·nside²"), "{e}");
    let mut v = vec![0.0; 48];
    v[7] = f32::INFINITY;
    write_npy(&p, &[48], &v);
    let e = HealpixMaps::open(&p, false).unwrap_err().to_string();
    assert!(e.contains("pixel 7") && e.contains("inf"), "{e}");
    write_npy(&p, &[1, 1, 1, 48], &[1.0; 48]);
    let e = HealpixMaps::open(&p, false).unwrap_err().to_string();
    assert!(e.contains("[N], [C, N] or [T, C, N]"), "{e}");
    let q = dir.path().join("m.txt");
    std::fs::write(&q, "1 2 3").unwrap();
    let e = HealpixMaps::open(&q, false).unwrap_err().to_string();
    assert!(e.contains("unknown map format"), "{e}");
}

#[test]
fn fits_maps_round_trip_in_healpy_layout() {
    let dir = tempfile::tempdir().unwrap();
    for (nside, ordering) in [(16u32, Ordering::Ring), (2, Ordering::Nested)] {
        let n = 12 * (nside * nside) as usize;
        let maps: Vec<Vec<f32>> = (0..3)
            .map(|c| (0..n).map(|p| (p * 3 + c) as f32 * 0.5).collect())
            .collect();
        let path = dir.path().join(format!("m{nside}.fits"));
        write_healpix_fits(&path, ordering, &maps).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() % 2880, 0);
        let back = read_healpix_fits(&path).unwrap();
        assert_eq!((back.nside(), back.channels()), (nside, 3));
        assert_eq!(back.grid().ordering(), ordering);
        for (c, m) in maps.iter().enumerate() {
            assert_eq!(back.map(0, c), &m[..]);
        }
    }
    // A truncated table is an error, not a short map.
    let path = dir.path().join("m16.fits");
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.fits");
    std::fs::write(&cut, &bytes[..bytes.len() - 2880 * 3]).unwrap();
    let e = read_healpix_fits(&cut).unwrap_err().to_string();
    assert!(e.contains("truncated"), "{e}");
    std::fs::write(&cut, b"SIMPLE  = nope").unwrap();
    assert!(read_healpix_fits(&cut).is_err());
}

#[test]
fn unrotated_maps_on_the_model_grid_are_the_maps_in_nested_order() {
    let nside = 4;
    let grid = HealpixGrid::ring(nside).unwrap();
    let n = grid.npix() as usize;
    let values: Vec<f32> = (0..2 * n).map(|v| v as f32).collect();
    let maps = HealpixMaps::new(Ordering::Ring, nside, 2, values).unwrap();
    let data = SphereDataset::new(SphereSource::maps(maps), nside).unwrap();
    let x = data.render(0, &Rotation::IDENTITY).unwrap().values;
    let nested = HealpixGrid::nested(nside).unwrap();
    for p in 0..n {
        let ring = nested.to_ring(p as u64).unwrap() as f32;
        assert_eq!(x[p * 2], ring);
        assert_eq!(x[p * 2 + 1], n as f32 + ring);
    }
    assert_eq!(data.peak(), (2 * n - 1) as f64);
    let mut y = x.clone();
    data.normalise(&mut y);
    let mean0: f32 = y.iter().step_by(2).sum::<f32>() / n as f32;
    assert!(mean0.abs() < 1e-4);
    data.denormalise(&mut y);
    for (a, b) in x.iter().zip(&y) {
        assert!((a - b).abs() < 1e-3);
    }
}

#[test]
fn bundled_blue_marble_shows_the_earth() {
    let source = SphereSource::open("bluemarble", false).unwrap();
    let data = SphereDataset::new(source, 8).unwrap();
    let x = data.render(0, &Rotation::IDENTITY).unwrap().values;
    // Blue Marble: oceans are dark blue, so blue is the brightest channel on average,
    // and the Sahara (lat 23, lon 10) is brighter than the Pacific (lat 0, lon -140).
    let grid = data.grid();
    let px = |lat: f64, lon: f64| {
        let p = grid
            .ang2pix(
                (90.0 - lat).to_radians(),
                lon.rem_euclid(360.0).to_radians(),
            )
            .unwrap() as usize;
        x[p * 3] + x[p * 3 + 1] + x[p * 3 + 2]
    };
    assert!(px(23.0, 10.0) > px(0.0, -140.0) + 0.3);
    let e = SphereSource::open("/no/such/file.npy", false).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
}
