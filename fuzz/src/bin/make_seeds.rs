//! Writes the seed corpus (`fuzz/seeds/<target>/`): small valid files of
//! every format, made by the library's own writers. Run from `fuzz/`:
//! `cargo +nightly run --bin make_seeds`. (The FITS seeds also hold one file
//! written by healpy, committed as it is.)

use std::path::Path;
use std::sync::Arc;

use burn::tensor::Device;
use idx_flow_core::state_dict::state_dict;
use idx_flow_fuzz::join_two;
use idx_flow_fuzz::models::{adamw, one_step, tiny_autoencoder};
use idx_flow_healpix::geometry::{HealpixGrid, Ordering};
use idx_flow_healpix::graphs::ConnectionGraph;
use idx_flow_healpix::io::SafetensorsWriter;
use idx_flow_train::data::fits::write_healpix_fits;
use idx_flow_train::data::npy::NpyWriter;
use idx_flow_train::train::TrainConfig;
use idx_flow_train::train::checkpoint::{CHECKPOINT_FILES, CheckpointState, write_checkpoint};
use idx_flow_train::train::optimizer_state::save_optimizer;

fn seed(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("seeds").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn written(write: impl FnOnce(&Path)) -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("idx-flow-seeds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("file");
    write(&path);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    bytes
}

/// A `.npy` file by hand, for the dtypes our writer does not write.
fn npy(descr: &str, shape: &str, body: &[u8]) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(body);
    out
}

fn main() {
    // npy: float32 [T, C, N] by our writer; float64 [N], int16 [C, N], float16 [N] by hand.
    seed(
        "npy",
        "f32_t2_c1_nside2.npy",
        &written(|p| {
            let mut w = NpyWriter::create(p, &[2, 1, 48]).unwrap();
            w.append(&(0..96).map(|v| v as f32 * 0.25).collect::<Vec<_>>())
                .unwrap();
            w.finish().unwrap();
        }),
    );
    let f64s: Vec<u8> = (0..12).flat_map(|v| (v as f64).to_le_bytes()).collect();
    seed("npy", "f64_nside1.npy", &npy("<f8", "(12,)", &f64s));
    let i16s: Vec<u8> = (0..96)
        .flat_map(|v| (v as i16 - 40).to_le_bytes())
        .collect();
    seed("npy", "i16_c2_nside2.npy", &npy("<i2", "(2, 48)", &i16s));
    let f16s: Vec<u8> = (0..12)
        .flat_map(|v| half_bits(v as f32 * 0.5).to_le_bytes())
        .collect();
    seed("npy", "f16_nside1.npy", &npy("<f2", "(12,)", &f16s));

    // FITS by our writer (healpy's layout); healpy's own file is committed beside them.
    let maps: Vec<Vec<f32>> = (0..2)
        .map(|c| (0..48).map(|p| (p + c) as f32).collect())
        .collect();
    seed(
        "fits",
        "ring_nside2_c2.fits",
        &written(|p| write_healpix_fits(p, Ordering::Ring, &maps).unwrap()),
    );
    seed(
        "fits",
        "nested_nside1.fits",
        &written(|p| write_healpix_fits(p, Ordering::Nested, &[vec![1.5; 12]]).unwrap()),
    );

    // Images: 8-bit RGB PNG, 16-bit grey PNG, JPEG.
    let rgb = image::RgbImage::from_fn(16, 8, |x, y| image::Rgb([x as u8 * 16, y as u8 * 32, 99]));
    let mut png = Vec::new();
    rgb.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    seed("image", "rgb8.png", &png);
    let grey = image::ImageBuffer::<image::Luma<u16>, _>::from_fn(8, 4, |x, y| {
        image::Luma([(x * 8000 + y * 100) as u16])
    });
    let mut png16 = Vec::new();
    grey.write_to(
        &mut std::io::Cursor::new(&mut png16),
        image::ImageFormat::Png,
    )
    .unwrap();
    seed("image", "grey16.png", &png16);
    let mut jpeg = Vec::new();
    rgb.write_to(
        &mut std::io::Cursor::new(&mut jpeg),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    seed("image", "rgb.jpg", &jpeg);

    // safetensors with each dtype we read, and metadata.
    let mut w = SafetensorsWriter::new();
    w.add_f32("a", &[2, 3], &[0.5; 6]).unwrap();
    w.add_f64("b", &[4], &[1.0, 2.0, 3.0, 4.0]).unwrap();
    w.add_i64("c", &[2, 2], &[1, -2, 3, 4]).unwrap();
    w.set_metadata("nside", "2");
    seed(
        "safetensors",
        "three_dtypes.safetensors",
        &w.to_bytes().unwrap(),
    );

    // Graphs nside 2 → 1 (the grids the target also tries), both formats.
    let input = HealpixGrid::nested(2).unwrap();
    let output = HealpixGrid::nested(1).unwrap();
    let graph = ConnectionGraph::children(input, output).unwrap();
    let mut npz = vec![0u8];
    npz.extend(written(|p| {
        let p = p.with_extension("npz");
        graph.save(&p).unwrap();
        std::fs::rename(&p, p.with_extension("")).unwrap();
    }));
    seed("graph_file", "children_2_1.npz", &npz);
    let mut st = vec![1u8];
    st.extend(written(|p| {
        let p = p.with_extension("safetensors");
        graph.save(&p).unwrap();
        std::fs::rename(&p, p.with_extension("")).unwrap();
    }));
    seed("graph_file", "children_2_1.safetensors", &st);

    // Configs: the default, and a partial one as a user writes it.
    let config = TrainConfig::new();
    seed(
        "train_config",
        "default.json",
        serde_json::to_string_pretty(&config).unwrap().as_bytes(),
    );
    seed(
        "train_config",
        "partial.json",
        br#"{"steps": 200, "batch": 4, "model": {"widths": [8, 16], "graph": "knn", "knn_k": 4}}"#,
    );

    // A checkpoint's state (genuine checksums), and with its checksum file.
    let dir = std::env::temp_dir().join(format!("idx-flow-seeds-ckpt-{}", std::process::id()));
    let state = CheckpointState {
        step: 3,
        losses: vec![0.5, 0.25, 0.125],
        train_seconds: 1.5,
        config: serde_json::to_value(&config).unwrap(),
    };
    let ckpt = write_checkpoint(&dir, &state, |f| {
        std::fs::write(f.model(), b"weights").unwrap();
        std::fs::write(f.optimizer(), b"moments").unwrap();
        Ok(())
    })
    .unwrap();
    let state_json = std::fs::read(ckpt.join(CHECKPOINT_FILES[0])).unwrap();
    let checksums = std::fs::read(ckpt.join("checksums.json")).unwrap();
    seed("checkpoint", "state_only", &join_two(&state_json, b""));
    seed(
        "checkpoint",
        "state_and_checksums",
        &join_two(&state_json, &checksums),
    );
    std::fs::remove_dir_all(&dir).unwrap();

    // Weights of the tiny autoencoder, and its AdamW state after one step.
    let device = Device::default();
    seed(
        "state_dict",
        "tiny_autoencoder.safetensors",
        &written(|p| {
            state_dict(&tiny_autoencoder(&device))
                .unwrap()
                .save(p)
                .unwrap()
        }),
    );
    let ad = Device::default().autodiff();
    let (_, optim) = one_step(adamw(), tiny_autoencoder(&ad), &ad);
    seed(
        "optimizer",
        "adamw_one_step.bpk",
        &written(|p| save_optimizer(&optim, p).unwrap()),
    );

    // zarr v3 [2, 1, 48] float32, one sample per chunk: metadata + first chunk.
    for (name, compressed) in [("plain", false), ("gzip", true)] {
        let dir = std::env::temp_dir().join(format!("idx-flow-seeds-zarr-{}", std::process::id()));
        let store = Arc::new(zarrs::filesystem::FilesystemStore::new(&dir).unwrap());
        let mut builder = zarrs::array::ArrayBuilder::new(
            vec![2, 1, 48],
            vec![1, 1, 48],
            zarrs::array::data_type::float32(),
            0.0f32,
        );
        if compressed {
            builder.bytes_to_bytes_codecs(vec![Arc::new(
                zarrs::array::codec::GzipCodec::new(5).unwrap(),
            )]);
        }
        let array = builder.build(store, "/").unwrap();
        array.store_metadata().unwrap();
        let values: Vec<f32> = (0..96).map(|v| v as f32 * 0.5).collect();
        array
            .store_array_subset(&[0..2, 0..1, 0..48], &values)
            .unwrap();
        let meta = std::fs::read(dir.join("zarr.json")).unwrap();
        let chunk = std::fs::read(dir.join("c/0/0/0")).unwrap();
        seed("zarr", name, &join_two(&meta, &chunk));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// float16 bits of `v` (exact for the small multiples of 0.5 used here).
fn half_bits(v: f32) -> u16 {
    let bits = v.to_bits();
    if v == 0.0 {
        return 0;
    }
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    let mant = ((bits >> 13) & 0x3ff) as u16;
    sign | ((exp as u16) << 10) | mant
}
