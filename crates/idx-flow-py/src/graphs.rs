//! Connection graphs and their weights, as idx_flow 0.2.1 computes them.

use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use idx_flow_healpix::graphs::{ConnectionGraph, WeightMethod, get_weights, resolution_info};

use crate::{grid, nside_of, py_err};

/// `[rows, k]` arrays of a graph: indices (int64) and distances (km, float64).
type GraphArrays<'py> = (Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f64>>);

fn graph_arrays<'py>(py: Python<'py>, graph: &ConnectionGraph) -> PyResult<GraphArrays<'py>> {
    let (rows, k) = (graph.n_out(), graph.k());
    let indices = PyArray1::from_slice(py, graph.indices()).reshape([rows, k])?;
    let km = PyArray1::from_vec(py, graph.distances_km()).reshape([rows, k])?;
    Ok((indices, km))
}

/// Builds a graph with the GIL released and returns its arrays.
fn built<'py>(
    py: Python<'py>,
    build: impl FnOnce() -> idx_flow_healpix::Result<ConnectionGraph> + Send,
) -> PyResult<GraphArrays<'py>> {
    let graph = py.detach(build).map_err(py_err)?;
    graph_arrays(py, &graph)
}

/// The k nearest input pixels of every output pixel, nearest first: with
/// `idx_flow_order` (RING grids only) chosen and ordered exactly as
/// idx_flow's `hp_distance` does, else our own order (ties by input index,
/// `nest` allowed). Indices and great-circle distances in km.
#[pyfunction]
pub fn knn_graph<'py>(
    py: Python<'py>,
    nside_in: i64,
    nside_out: i64,
    k: usize,
    nest: bool,
    idx_flow_order: bool,
) -> PyResult<GraphArrays<'py>> {
    if idx_flow_order {
        if nest {
            return Err(PyValueError::new_err(
                "idx_flow's order is defined on RING grids: pass nest=False",
            ));
        }
        let (ni, no) = (nside_of(nside_in)?, nside_of(nside_out)?);
        built(py, || ConnectionGraph::knn_idx_flow(ni, no, k))
    } else {
        let (input, output) = (grid(nside_in, nest)?, grid(nside_out, nest)?);
        built(py, || ConnectionGraph::knn(input, output, k))
    }
}

/// healpy's RING pixel centres, in its order of operations (for tests).
#[pyfunction]
pub fn healpy_pix2ang_ring<'py>(
    py: Python<'py>,
    nside: i64,
) -> PyResult<crate::geometry::Angles<'py>> {
    let nside = grid(nside, false)?.nside() as u64;
    let (theta, phi): (Vec<f64>, Vec<f64>) = py.detach(|| {
        (0..12 * nside * nside)
            .map(|p| idx_flow_healpix::graphs::healpy_pix2ang_ring(nside, p))
            .unzip()
    });
    Ok((PyArray1::from_vec(py, theta), PyArray1::from_vec(py, phi)))
}

/// The `4^m` NESTED children of every output pixel (`nside_in = nside_out·2^m`).
#[pyfunction]
pub fn children_graph<'py>(
    py: Python<'py>,
    nside_in: i64,
    nside_out: i64,
) -> PyResult<GraphArrays<'py>> {
    let (input, output) = (grid(nside_in, true)?, grid(nside_out, true)?);
    built(py, || ConnectionGraph::children(input, output))
}

/// The NESTED parent of every output pixel (`nside_out = nside_in·2^m`).
#[pyfunction]
pub fn parent_graph<'py>(
    py: Python<'py>,
    nside_in: i64,
    nside_out: i64,
) -> PyResult<GraphArrays<'py>> {
    let (input, output) = (grid(nside_in, true)?, grid(nside_out, true)?);
    built(py, || ConnectionGraph::parent(input, output))
}

/// The 3×3 stencil of every pixel of a grid (itself and its 8 neighbours;
/// where a pixel has 7, its own index again).
#[pyfunction]
pub fn stencil_graph<'py>(py: Python<'py>, nside: i64, nest: bool) -> PyResult<GraphArrays<'py>> {
    let grid = grid(nside, nest)?;
    built(py, || ConnectionGraph::stencil(grid))
}

/// idx_flow's `get_weights` on flat distances of rows of `k`.
#[pyfunction]
pub fn weights<'py>(
    py: Python<'py>,
    distances: PyReadonlyArray1<'py, f64>,
    k: usize,
    method_name: &str,
    sigma_factor: f64,
    epsilon: f64,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let method: WeightMethod = method_name.parse().map_err(py_err)?;
    let d = distances.as_slice()?;
    let w = py
        .detach(|| get_weights(d, k, method, sigma_factor, epsilon))
        .map_err(py_err)?;
    Ok(PyArray1::from_vec(py, w))
}

/// idx_flow's `get_healpix_resolution_info` as a dict.
#[pyfunction]
pub fn resolution<'py>(py: Python<'py>, nside: i64) -> PyResult<Bound<'py, PyDict>> {
    let info = resolution_info(nside_of(nside)?).map_err(py_err)?;
    let d = PyDict::new(py);
    d.set_item("nside", info.nside)?;
    d.set_item("npix", info.npix)?;
    d.set_item("resolution_deg", info.resolution_deg)?;
    d.set_item("resolution_km", info.resolution_km)?;
    d.set_item("area_sr", info.area_sr)?;
    d.set_item("area_km2", info.area_km2)?;
    Ok(d)
}
