//! The HEALPix autoencoder.

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use idx_flow_core::StateDict;
use idx_flow_core::state_dict::{load_state_dict, state_dict};
use idx_flow_train::models::{AutoencoderConfig, GraphKind};

fn small(graph: GraphKind) -> AutoencoderConfig {
    AutoencoderConfig::new()
        .with_nside(8)
        .with_widths(vec![4, 6])
        .with_latent_channels(3)
        .with_graph(graph)
}

#[test]
fn every_graph_kind_reconstructs_the_input_shape() {
    let device = Device::default();
    for graph in [GraphKind::Children, GraphKind::Knn, GraphKind::Stencil] {
        let config = small(graph);
        let model = config.init(&device).unwrap();
        let x = Tensor::<3>::random([2, 768, 3], Distribution::Normal(0.0, 1.0), &device);
        assert_eq!(model.encode(x.clone()).dims(), [2, 48, 3], "{graph:?}");
        assert_eq!(model.forward(x).dims(), [2, 768, 3], "{graph:?}");
        assert_eq!(config.latent_shape(), [48, 3]);
        assert_eq!(config.compression_ratio(), 16.0 * 3.0 / 3.0);
    }
    let model = small(GraphKind::Children).init(&device).unwrap();
    let e = model
        .try_forward(Tensor::<3>::zeros([2, 700, 3], &device))
        .unwrap_err();
    assert!(e.to_string().contains("[B, 768, 3]"), "{e}");
}

#[test]
fn configs_that_cannot_work_are_refused() {
    let device = Device::default();
    let e = small(GraphKind::Children)
        .with_nside(12)
        .init(&device)
        .unwrap_err();
    assert!(e.to_string().contains("power of two"), "{e}");
    let e = small(GraphKind::Children)
        .with_nside(2)
        .init(&device)
        .unwrap_err();
    assert!(e.to_string().contains("needs nside"), "{e}");
    let e = small(GraphKind::Children)
        .with_latent_channels(0)
        .init(&device)
        .unwrap_err();
    assert!(e.to_string().contains("at least 1"), "{e}");
    let e = "hexagons".parse::<GraphKind>().unwrap_err();
    assert!(e.to_string().contains("children, knn or stencil"), "{e}");
}

#[test]
fn parameters_have_the_same_ids_in_every_build_and_weights_round_trip() {
    let device = Device::default();
    let config = small(GraphKind::Stencil);
    let a = config.init(&device).unwrap();
    let b = config.init(&device).unwrap();
    // Trainable parameters (what the optimiser state is keyed by) are numbered
    // in visiting order (batch-norm running statistics keep burn's own ids).
    let ids = |m: &idx_flow_train::models::HealpixAutoencoder| {
        burn::module::list_param_ids(m)
            .into_iter()
            .map(|id| id.val())
            .filter(|id| (0x1df0_0000..0x1df1_0000).contains(id))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&a), ids(&b));
    // Stencil config: 2 levels x (refine + down) x (kernel, bias, bn weight, bn bias) + ...
    assert!(ids(&a).len() >= 16, "{:?}", ids(&a));

    // b takes a's weights: the outputs agree exactly.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    state_dict(&a).unwrap().save(&path).unwrap();
    let b = load_state_dict(b, &StateDict::load(&path).unwrap()).unwrap();
    let x = Tensor::<3>::random([2, 768, 3], Distribution::Normal(0.0, 1.0), &device);
    let (ya, yb) = (a.valid().forward(x.clone()), b.valid().forward(x));
    assert_eq!(
        ya.into_data().iter::<f32>().collect::<Vec<_>>(),
        yb.into_data().iter::<f32>().collect::<Vec<_>>()
    );
}
