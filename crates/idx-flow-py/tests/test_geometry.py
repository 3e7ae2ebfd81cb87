"""healpy's pixel functions against healpy 1.20.1's stored outputs (and
healpy itself where it is installed), for every nside of the manifest."""

from __future__ import annotations

import numpy as np
import pytest

import idx_flow_rs


def nsides(manifest):
    return list(manifest["geometry_nsides"])


def test_centres_in_both_orderings(manifest, geometry):
    for nside in nsides(manifest):
        npix = 12 * nside * nside
        for order, nest in (("ring", False), ("nest", True)):
            theta, phi = idx_flow_rs.pix2ang(nside, np.arange(npix), nest=nest)
            np.testing.assert_allclose(theta, geometry[f"nside{nside}.{order}.theta"], atol=1e-12)
            np.testing.assert_allclose(phi, geometry[f"nside{nside}.{order}.phi"], atol=1e-12)


def test_pixels_of_directions(manifest, geometry):
    for nside in nsides(manifest):
        theta = geometry[f"nside{nside}.query.theta"]
        phi = geometry[f"nside{nside}.query.phi"]
        for order, nest in (("ring", False), ("nest", True)):
            got = idx_flow_rs.ang2pix(nside, theta, phi, nest=nest)
            np.testing.assert_array_equal(got, geometry[f"nside{nside}.query.{order}_pix"])


def test_neighbours_in_healpys_layout(manifest, geometry):
    for nside in nsides(manifest):
        npix = 12 * nside * nside
        for order, nest in (("ring", False), ("nest", True)):
            got = idx_flow_rs.get_all_neighbours(nside, np.arange(npix), nest=nest)
            assert got.shape == (8, npix)
            # The fixture stores [N, 8].
            np.testing.assert_array_equal(got.T, geometry[f"nside{nside}.{order}.neighbours"])


def test_ring_nest_round_trip(manifest, geometry):
    for nside in nsides(manifest):
        npix = 12 * nside * nside
        nest = idx_flow_rs.ring2nest(nside, np.arange(npix))
        np.testing.assert_array_equal(nest, geometry[f"nside{nside}.ring2nest"])
        np.testing.assert_array_equal(idx_flow_rs.nest2ring(nside, nest), np.arange(npix))


def test_scalars_shapes_and_lonlat_as_healpy():
    p = idx_flow_rs.ang2pix(16, 0.3, 1.2)
    assert np.ndim(p) == 0 and isinstance(p, np.integer)
    theta, phi = idx_flow_rs.pix2ang(16, p)
    assert np.ndim(theta) == 0
    assert idx_flow_rs.ang2pix(16, theta, phi) == p
    grid = np.arange(12).reshape(3, 4)
    assert idx_flow_rs.ring2nest(4, grid).shape == (3, 4)
    assert idx_flow_rs.get_all_neighbours(4, grid).shape == (8, 3, 4)
    assert idx_flow_rs.get_all_neighbours(4, 5).shape == (8,)
    lon, lat = idx_flow_rs.pix2ang(8, [0, 100], lonlat=True)
    np.testing.assert_array_equal(idx_flow_rs.ang2pix(8, lon, lat, lonlat=True), [0, 100])
    # Directions broadcast against each other.
    assert idx_flow_rs.ang2pix(8, [0.1, 0.2, 0.3], 1.0).shape == (3,)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: idx_flow_rs.pix2ang(4, 192), "pixel 192 is out of range"),
        (lambda: idx_flow_rs.ring2nest(4, -1), "out of range"),
        (lambda: idx_flow_rs.nest2ring(4, -1), "pixel -1 is out of range for nside 4"),
        (lambda: idx_flow_rs.ang2pix(4, 4.0, 0.0), "invalid direction"),
        (lambda: idx_flow_rs.pix2ang(3, 0, nest=True), "nside"),
        (lambda: idx_flow_rs.pix2ang(4, 1.5), "integers"),
    ],
)
def test_bad_input_is_a_clear_value_error(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert message in str(err.value)


def test_against_healpy_itself_when_installed():
    hp = pytest.importorskip("healpy")
    rng = np.random.default_rng(3)
    theta = np.arccos(rng.uniform(-1, 1, 5000))
    phi = rng.uniform(0, 2 * np.pi, 5000)
    for nest in (False, True):
        np.testing.assert_array_equal(
            idx_flow_rs.ang2pix(128, theta, phi, nest=nest), hp.ang2pix(128, theta, phi, nest=nest)
        )
        pix = np.arange(12 * 32 * 32)
        np.testing.assert_array_equal(
            idx_flow_rs.get_all_neighbours(32, pix, nest=nest),
            hp.get_all_neighbours(32, pix, nest=nest),
        )
