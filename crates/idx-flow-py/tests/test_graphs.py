"""Connection graphs against idx_flow 0.2.1's stored outputs (and idx_flow
itself where it is installed): every case of the fixture manifest."""

from __future__ import annotations

import numpy as np
import pytest

import idx_flow_rs

METHODS = ["inverse_square", "gaussian", "exponential", "tricube"]
KM_TOL = 1e-9


def combos(manifest):
    return [tuple(c) for c in manifest["index_combos"]]


def assert_same_graph(indices, km, ref_indices, ref_km, tag):
    assert indices.dtype == np.int64 and km.dtype == np.float64
    assert indices.shape == ref_indices.shape == km.shape, tag
    np.testing.assert_allclose(km, ref_km, rtol=0, atol=KM_TOL, err_msg=tag)
    # Index sets agree up to ties: every reference neighbour strictly nearer
    # than the row's k-th distance is one of ours.
    kth = ref_km[:, -1:]
    strict = ref_km < kth - KM_TOL
    for row in np.nonzero(strict.any(axis=1))[0]:
        want = set(ref_indices[row][strict[row]])
        assert want <= set(indices[row]), f"{tag} row {row}"


def test_every_manifest_graph_equals_idx_flows(manifest, graphs):
    checked = 0
    for ni, no, k in combos(manifest):
        tag = f"in{ni}.out{no}.k{k}"
        if f"{tag}.indices" not in graphs:
            continue
        out = idx_flow_rs.compute_connection_indices(ni, no, k, return_weights=True)
        assert len(out) == 3
        indices, km, _ = out
        assert_same_graph(indices, km, graphs[f"{tag}.indices"], graphs[f"{tag}.distances_km"], tag)
        # Exactly idx_flow's indices, ties included.
        np.testing.assert_array_equal(indices, graphs[f"{tag}.indices"], err_msg=tag)
        # Our own order: the same distances, tied neighbours by input index.
        fast_i, fast_km = idx_flow_rs.hp_distance(ni, no, k, exact_order=False)
        assert_same_graph(fast_i, fast_km, graphs[f"{tag}.indices"], graphs[f"{tag}.distances_km"], tag)
        idx2, km2 = idx_flow_rs.compute_connection_indices(ni, no, k)
        np.testing.assert_array_equal(idx2, indices)
        np.testing.assert_array_equal(km2, km)
        checked += 1
    assert checked > 0, "the manifest names no graph the file holds"


def test_weights_of_every_method_equal_idx_flows(manifest, graphs):
    checked = 0
    for ni, no, k in combos(manifest):
        tag = f"in{ni}.out{no}.k{k}"
        for method in METHODS:
            name = f"{tag}.weights.{method}"
            if name not in graphs:
                continue
            w = idx_flow_rs.get_weights(graphs[f"{tag}.distances_km"], method=method)
            np.testing.assert_allclose(w, graphs[name], rtol=0, atol=1e-9, err_msg=name)
            np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
            checked += 1
    assert checked > 0


def test_resolution_info():
    info = idx_flow_rs.get_healpix_resolution_info(256)
    assert info["npix"] == 786_432 and info["nside"] == 256
    assert abs(info["resolution_deg"] - np.degrees(np.sqrt(4 * np.pi / 786_432))) < 1e-12
    assert set(info) == {"nside", "npix", "resolution_deg", "resolution_km", "area_sr", "area_km2"}


def test_hierarchy_and_stencil_graphs():
    idx, km = idx_flow_rs.children_indices(8, 4)
    assert idx.shape == (192, 4) and km.shape == (192, 4)
    np.testing.assert_array_equal(idx, np.arange(768).reshape(192, 4))
    idx, _ = idx_flow_rs.children_indices(8, 2)
    np.testing.assert_array_equal(idx, np.arange(768).reshape(48, 16))
    idx, _ = idx_flow_rs.parent_indices(4, 8)
    np.testing.assert_array_equal(idx[:, 0], np.arange(768) // 4)
    idx, _ = idx_flow_rs.stencil_indices(4)
    assert idx.shape == (192, 9)
    np.testing.assert_array_equal(idx[:, 0], np.arange(192))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: idx_flow_rs.hp_distance(0, 4, 4), "nside_in must be a positive integer"),
        (lambda: idx_flow_rs.stencil_indices(6, nest=True), "nside"),
        (lambda: idx_flow_rs.hp_distance(8, 4, 0), "k must be a positive integer"),
        (lambda: idx_flow_rs.get_weights(np.ones((3, 2)), method="cubic"), "unknown method"),
        (lambda: idx_flow_rs.get_weights(np.ones(3)), "expected an array [N, k]"),
        (lambda: idx_flow_rs.children_indices(8, 16), "children"),
        (lambda: idx_flow_rs._native.knn_graph(8, 4, 4, True, True), "RING grids"),
    ],
)
def test_bad_arguments_are_clear_value_errors(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert message in str(err.value)


def test_against_idx_flow_itself_when_installed():
    utils = pytest.importorskip("idx_flow.utils")
    ref_i, ref_km, ref_w = utils.compute_connection_indices(64, 32, 4, return_weights=True)
    i, km, w = idx_flow_rs.compute_connection_indices(64, 32, 4, return_weights=True)
    np.testing.assert_array_equal(i, ref_i)
    assert_same_graph(i, km, ref_i, ref_km, "64->32 k4")
    np.testing.assert_allclose(w, ref_w, atol=1e-9)


def test_pixel_centres_are_healpys_bit_for_bit(manifest, geometry):
    for nside in manifest["geometry_nsides"]:
        theta, phi = idx_flow_rs._native.healpy_pix2ang_ring(nside)
        # healpy's own arithmetic, as idx_flow's graphs use it: equal bits.
        np.testing.assert_array_equal(theta, geometry[f"nside{nside}.ring.theta"])
        np.testing.assert_array_equal(phi, geometry[f"nside{nside}.ring.phi"])
