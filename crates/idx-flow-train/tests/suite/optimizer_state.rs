//! The optimiser state of a checkpoint is read back only when it fits the
//! model: records that burn-optim 0.22.1 would panic on, or that belong to
//! another model, are refused with the tensor or scalar named.

use std::path::Path;

use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use burn_pack::{Reader, Scalar, Writer};
use idx_flow_train::models::{AutoencoderConfig, HealpixAutoencoder};
use idx_flow_train::train::optimizer_state::{load_optimizer, save_optimizer};

/// The fuzz harness's model (fuzz/src/lib.rs): nside 4 → 2, widths [4],
/// latent 2 channels, seed 7, so that its findings load against it.
fn model(widths: Vec<usize>, device: &Device) -> HealpixAutoencoder {
    idx_flow_core::init::with_seed(7, || {
        AutoencoderConfig::new()
            .with_nside(4)
            .with_widths(widths)
            .with_latent_channels(2)
            .init(device)
    })
    .unwrap()
}

fn stepped(model: HealpixAutoencoder, device: &Device) -> ModuleOptimizer {
    let mut optim = AdamWConfig::new().init();
    let values: Vec<f32> = (0..192 * 3).map(|i| (i as f32 * 0.37).sin()).collect();
    let x = Tensor::<3>::from_data(TensorData::new(values, [1, 192, 3]), device);
    let loss = (model.forward(x.clone()) - x).square().mean();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let _ = optim.step(1e-3, model, grads);
    optim
}

fn refused(path: &Path, model: &HealpixAutoencoder) -> String {
    match load_optimizer(AdamWConfig::new().init(), path, model) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e.to_string(),
    }
}

/// Rewrites a saved record through `edit` (its tensors and scalars).
fn rewritten(
    bytes: &[u8],
    edit: impl FnOnce(&mut Vec<burn_pack::Tensor>, &mut Vec<(String, Scalar)>),
) -> Vec<u8> {
    let reader = Reader::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes.to_vec())).unwrap();
    let mut scalars: Vec<(String, Scalar)> = reader
        .scalars()
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let metadata = reader.metadata().clone();
    let mut tensors = reader.into_tensors().unwrap();
    edit(&mut tensors, &mut scalars);
    let mut writer = Writer::new(tensors);
    for (k, v) in &scalars {
        writer = writer.with_scalar(k, *v);
    }
    for (k, v) in &metadata {
        writer = writer.with_metadata(k, v);
    }
    writer.into_bytes().unwrap().to_vec()
}

/// Every tensor of a record (name, shape, bytes) and its scalars, in name order.
fn contents(bytes: &[u8]) -> Vec<(String, Vec<usize>, Vec<u8>)> {
    let reader = Reader::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes.to_vec())).unwrap();
    let mut out: Vec<_> = reader
        .scalars()
        .iter()
        .map(|(k, v)| (k.clone(), vec![], format!("{v:?}").into_bytes()))
        .collect();
    for t in reader.into_tensors().unwrap() {
        let shape = t.shape.as_slice().to_vec();
        let name = t.name.clone();
        out.push((name, shape, t.into_bytes().unwrap().to_vec()));
    }
    out.sort();
    out
}

#[test]
fn a_state_loads_into_its_own_model_and_not_into_another() {
    let device = Device::default().autodiff();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("optimizer.bpk");
    save_optimizer(&stepped(model(vec![4], &device), &device), &path).unwrap();

    let own = model(vec![4], &device);
    let loaded = load_optimizer(AdamWConfig::new().init(), &path, &own).unwrap();
    // burn-optim keeps the state in a HashMap, so the tensors' order in the
    // file varies; compare them by name.
    let written = contents(&std::fs::read(&path).unwrap());
    let read_back = contents(&loaded.into_bytes().unwrap());
    assert!(!written.is_empty());
    assert!(
        written == read_back,
        "the state read back differs from the state written"
    );

    let wider = model(vec![8], &device);
    let msg = refused(&path, &wider);
    assert!(
        msg.contains("not an optimiser state for this model"),
        "{msg}"
    );
    assert!(msg.contains("expected F32 of shape"), "{msg}");
}

#[test]
fn records_burn_optim_would_panic_on_are_refused_by_name() {
    let device = Device::default().autodiff();
    let own = model(vec![4], &device);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("optimizer.bpk");
    save_optimizer(&stepped(model(vec![4], &device), &device), &path).unwrap();
    let good = std::fs::read(&path).unwrap();

    let mut first = String::new();
    let no_id = rewritten(&good, |tensors, _| {
        tensors[0].param_id = None;
        first = tensors[0].name.clone();
    });
    std::fs::write(&path, no_id).unwrap();
    let msg = refused(&path, &own);
    assert!(
        msg.contains(&format!("tensor '{first}' carries no parameter id")),
        "{msg}"
    );

    let mut rank_key = String::new();
    let rank_99 = rewritten(&good, |_, scalars| {
        let (key, value) = scalars
            .iter_mut()
            .find(|(k, _)| k.ends_with(".__rank"))
            .expect("a recorded rank");
        *value = Scalar::UInt(99);
        rank_key = key.clone();
    });
    std::fs::write(&path, rank_99).unwrap();
    let msg = refused(&path, &own);
    assert!(
        msg.contains(&format!("'{rank_key}' records rank 99, expected")),
        "{msg}"
    );

    let stranger = rewritten(&good, |tensors, _| {
        let t = &mut tensors[0];
        let field = t.name.split_once('.').unwrap().1.to_owned();
        t.param_id = Some(u64::MAX);
        t.name = format!("{}.{field}", u64::MAX);
    });
    std::fs::write(&path, stranger).unwrap();
    let msg = refused(&path, &own);
    assert!(msg.contains("which the model does not have"), "{msg}");
}

/// The two inputs on which the fuzzer made burn-optim panic (fuzz/findings):
/// a tensor without a parameter id, and a rank-0 record of a rank-1 tensor.
#[test]
fn the_fuzz_findings_are_errors() {
    let device = Device::default().autodiff();
    let own = model(vec![4], &device);
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes, expected) in [
        (
            "without_id.bpk",
            &include_bytes!("data/optimizer-without-param-id.bpk")[..],
            "carries no parameter id",
        ),
        (
            "rank.bpk",
            &include_bytes!("data/optimizer-rank-mismatch.bpk")[..],
            "records rank 0, expected 1",
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let msg = refused(&path, &own);
        assert!(msg.contains(expected), "{name}: {msg}");
    }
}
