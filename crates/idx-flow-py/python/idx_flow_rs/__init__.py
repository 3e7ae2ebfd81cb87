"""idx_flow's HEALPix connection graphs and healpy's pixel functions, in Rust.

Drop-in replacements with idx_flow 0.2.1's signatures and return types::

    from idx_flow_rs import compute_connection_indices   # instead of idx_flow.utils
    indices, distances_km, weights = compute_connection_indices(
        512, 256, 9, return_weights=True)

and healpy-compatible ``pix2ang``, ``ang2pix``, ``get_all_neighbours``,
``ring2nest`` and ``nest2ring``. Arrays in and out are numpy arrays; the work
runs in Rust with the GIL released.
"""

from __future__ import annotations

from typing import Any, Dict, Literal, Optional, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _native

__version__: str = _native.__version__

WeightingMethod = Literal["inverse_square", "gaussian", "exponential", "tricube"]

__all__ = [
    "hp_distance",
    "get_weights",
    "compute_connection_indices",
    "get_healpix_resolution_info",
    "children_indices",
    "parent_indices",
    "stencil_indices",
    "pix2ang",
    "ang2pix",
    "get_all_neighbours",
    "ring2nest",
    "nest2ring",
]


def _positive(name: str, value: Any) -> int:
    v = int(value)
    if v != value or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return v


# ---------------------------------------------------------------- idx_flow


def hp_distance(
    nside_in: int, nside_out: int, k: int, exact_order: bool = True
) -> Tuple[NDArray[np.int64], NDArray[np.float64]]:
    """The ``k`` nearest input pixels of every output pixel (RING order on
    both grids), as ``idx_flow.utils.hp_distance``: ``indices`` int64
    ``[N_out, k]`` and great-circle ``distances_km`` float64 ``[N_out, k]``,
    nearest first.

    With ``exact_order`` (the default) the indices equal idx_flow's, ties
    included: neighbours at equal distances are chosen and ordered as its
    scikit-learn BallTree does. ``exact_order=False`` is several times
    faster and gives the same distances, but orders tied neighbours by input
    index (and may pick another of several equidistant k-th neighbours)."""
    return _native.knn_graph(
        _positive("nside_in", nside_in),
        _positive("nside_out", nside_out),
        _positive("k", k),
        False,
        bool(exact_order),
    )


def get_weights(
    distances: ArrayLike,
    method: WeightingMethod = "inverse_square",
    sigma_factor: float = 0.5,
    epsilon: float = 1e-10,
) -> NDArray[np.float64]:
    """Normalised interpolation weights of distances ``[N, k]``, as
    ``idx_flow.utils.get_weights``: every row sums to one."""
    d = np.ascontiguousarray(distances, dtype=np.float64)
    if d.ndim != 2 or d.shape[1] == 0:
        raise ValueError(f"distances: expected an array [N, k] with k >= 1, got shape {d.shape}")
    w = _native.weights(d.reshape(-1), d.shape[1], str(method), float(sigma_factor), float(epsilon))
    return w.reshape(d.shape)


def compute_connection_indices(
    nside_in: int,
    nside_out: int,
    k: int,
    return_weights: bool = False,
    weight_method: WeightingMethod = "inverse_square",
    exact_order: bool = True,
) -> Union[
    Tuple[NDArray[np.int64], NDArray[np.float64]],
    Tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]],
]:
    """``(indices, distances_km)``, and the weights with ``return_weights``,
    as ``idx_flow.utils.compute_connection_indices`` (``exact_order``: see
    :func:`hp_distance`)."""
    indices, distances = hp_distance(nside_in, nside_out, k, exact_order=exact_order)
    if return_weights:
        return indices, distances, get_weights(distances, method=weight_method)
    return indices, distances


def get_healpix_resolution_info(nside: int) -> Dict[str, Any]:
    """``nside``, ``npix``, ``resolution_deg``, ``resolution_km``, ``area_sr``
    and ``area_km2``, as ``idx_flow.utils.get_healpix_resolution_info``."""
    return _native.resolution(_positive("nside", nside))


# ---------------------------------------------------------------- our graphs


def children_indices(
    nside_in: int, nside_out: int
) -> Tuple[NDArray[np.int64], NDArray[np.float64]]:
    """The ``4**m`` NESTED children of every output pixel (``nside_in =
    nside_out * 2**m``): indices ``[N_out, 4**m]``, slot ``s`` the child
    ``4**m * p + s``, and distances in km."""
    return _native.children_graph(_positive("nside_in", nside_in), _positive("nside_out", nside_out))


def parent_indices(
    nside_in: int, nside_out: int
) -> Tuple[NDArray[np.int64], NDArray[np.float64]]:
    """The NESTED parent of every output pixel (``nside_out = nside_in *
    2**m``): indices ``[N_out, 1]`` and distances in km."""
    return _native.parent_graph(_positive("nside_in", nside_in), _positive("nside_out", nside_out))


def stencil_indices(
    nside: int, nest: bool = True
) -> Tuple[NDArray[np.int64], NDArray[np.float64]]:
    """The 3x3 stencil of every pixel: itself, then its neighbours in
    healpy's order (a missing neighbour repeats the pixel): ``[N, 9]``."""
    return _native.stencil_graph(_positive("nside", nside), bool(nest))


# ---------------------------------------------------------------- healpy


def _pixels(ipix: ArrayLike) -> Tuple[NDArray[np.int64], Tuple[int, ...]]:
    p = np.asarray(ipix)
    if p.dtype.kind not in "iu":
        if p.size and not np.all(np.equal(np.mod(p, 1), 0)):
            raise ValueError(f"pixel indices must be integers, got dtype {p.dtype}")
    return np.ascontiguousarray(p, dtype=np.int64).reshape(-1), p.shape


def _shaped(a: NDArray[Any], shape: Tuple[int, ...]) -> Any:
    # A 0-d result comes back as a numpy scalar, as healpy returns it.
    return a.reshape(shape)[()]


def pix2ang(
    nside: int, ipix: ArrayLike, nest: bool = False, lonlat: bool = False
) -> Tuple[Any, Any]:
    """Pixel centres as ``(theta, phi)`` in radians, or ``(lon, lat)`` in
    degrees with ``lonlat``, as ``healpy.pix2ang``."""
    flat, shape = _pixels(ipix)
    theta, phi = _native.pix2ang(_positive("nside", nside), flat, bool(nest))
    if lonlat:
        return _shaped(np.degrees(phi), shape), _shaped(90.0 - np.degrees(theta), shape)
    return _shaped(theta, shape), _shaped(phi, shape)


def ang2pix(
    nside: int, theta: ArrayLike, phi: ArrayLike, nest: bool = False, lonlat: bool = False
) -> Any:
    """The pixel of each direction, as ``healpy.ang2pix``: ``theta``,
    ``phi`` in radians, or longitude and latitude in degrees with
    ``lonlat``; broadcast against each other."""
    t, f = np.broadcast_arrays(np.asarray(theta, dtype=np.float64), np.asarray(phi, dtype=np.float64))
    if lonlat:
        t, f = np.radians(90.0 - f), np.radians(t)
    shape = t.shape
    pix = _native.ang2pix(
        _positive("nside", nside),
        np.ascontiguousarray(t).reshape(-1),
        np.ascontiguousarray(f).reshape(-1),
        bool(nest),
    )
    return _shaped(pix, shape)


def get_all_neighbours(
    nside: int,
    theta: ArrayLike,
    phi: Optional[ArrayLike] = None,
    nest: bool = False,
    lonlat: bool = False,
) -> Any:
    """The 8 neighbours (SW, W, NW, N, NE, E, SE, S; -1 where there is
    none) of pixels ``theta`` (when ``phi`` is None) or of the pixels
    containing the directions, as ``healpy.get_all_neighbours``: shape
    ``(8,) + input shape``."""
    if phi is None:
        flat, shape = _pixels(theta)
    else:
        pix = np.asarray(ang2pix(nside, theta, phi, nest=nest, lonlat=lonlat))
        flat, shape = pix.reshape(-1), pix.shape
    out = _native.neighbours(_positive("nside", nside), flat, bool(nest))
    return out.reshape((8,) + shape)


def ring2nest(nside: int, ipix: ArrayLike) -> Any:
    """RING indices to NESTED, as ``healpy.ring2nest``."""
    flat, shape = _pixels(ipix)
    return _shaped(_native.convert(_positive("nside", nside), flat, True), shape)


def nest2ring(nside: int, ipix: ArrayLike) -> Any:
    """NESTED indices to RING, as ``healpy.nest2ring``."""
    flat, shape = _pixels(ipix)
    return _shaped(_native.convert(_positive("nside", nside), flat, False), shape)
