//! The native part of the Python package `idx_flow_rs` (PyPI: idx-flow-rs):
//! HEALPix connection graphs and pixel functions on numpy arrays, and the
//! fused gather kernels behind `idx_flow_rs.torch`. The
//! Python layer (`python/idx_flow_rs/`) gives them idx_flow 0.2.1's and
//! healpy's signatures (scalars, shapes, keyword defaults); the functions
//! here take flat contiguous arrays and release the GIL while they work.

mod gather;
mod geometry;
mod graphs;
mod recycle;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;

use idx_flow_healpix::Error;
use idx_flow_healpix::geometry::{HealpixGrid, Ordering};

/// Large results are kept for reuse: see [`recycle`].
#[global_allocator]
static ALLOCATOR: recycle::RecyclingAllocator = recycle::RecyclingAllocator;

/// Our errors as Python's: files as `OSError`, everything else a user can
/// get wrong (sizes, names, pixels) as `ValueError`, with our message.
fn py_err(e: Error) -> PyErr {
    match e {
        Error::Io { .. } => PyOSError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

fn nside_of(nside: i64) -> PyResult<u32> {
    u32::try_from(nside).map_err(|_| {
        PyValueError::new_err(format!(
            "invalid nside {nside}: expected a power of two between 1 and 2^29"
        ))
    })
}

/// The grid of `nside` in NESTED (`nest`) or RING order.
fn grid(nside: i64, nest: bool) -> PyResult<HealpixGrid> {
    let ordering = if nest {
        Ordering::Nested
    } else {
        Ordering::Ring
    };
    HealpixGrid::new(nside_of(nside)?, ordering).map_err(py_err)
}

/// Frees the large result buffers kept for reuse; returns the bytes given back.
#[pyfunction]
fn empty_cache() -> usize {
    recycle::empty()
}

/// The bytes of large result buffers kept for reuse now.
#[pyfunction]
fn cached_bytes() -> usize {
    recycle::kept_bytes()
}

/// The limit on the bytes kept for reuse, from `IDX_FLOW_RS_CACHE_MB`.
fn cache_limit_from_env() -> PyResult<usize> {
    let Some(value) = std::env::var_os("IDX_FLOW_RS_CACHE_MB") else {
        return Ok(recycle::DEFAULT_LIMIT_MB << 20);
    };
    let text = value.to_string_lossy();
    text.trim()
        .parse::<usize>()
        .ok()
        .and_then(|mb| mb.checked_mul(1 << 20))
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "IDX_FLOW_RS_CACHE_MB is {text:?}, expected a whole number of MiB (0 keeps nothing)"
            ))
        })
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(graphs::knn_graph, m)?)?;
    m.add_function(wrap_pyfunction!(graphs::healpy_pix2ang_ring, m)?)?;
    m.add_function(wrap_pyfunction!(graphs::children_graph, m)?)?;
    m.add_function(wrap_pyfunction!(graphs::parent_graph, m)?)?;
    m.add_function(wrap_pyfunction!(graphs::stencil_graph, m)?)?;
    m.add_function(wrap_pyfunction!(graphs::weights, m)?)?;
    m.add_function(wrap_pyfunction!(graphs::resolution, m)?)?;
    m.add_function(wrap_pyfunction!(geometry::pix2ang, m)?)?;
    m.add_function(wrap_pyfunction!(geometry::ang2pix, m)?)?;
    m.add_function(wrap_pyfunction!(geometry::neighbours, m)?)?;
    m.add_function(wrap_pyfunction!(geometry::convert, m)?)?;
    m.add_function(wrap_pyfunction!(gather::reverse_graph, m)?)?;
    m.add_function(wrap_pyfunction!(gather::gather_contract, m)?)?;
    m.add_function(wrap_pyfunction!(gather::gather_contract_grad_input, m)?)?;
    m.add_function(wrap_pyfunction!(gather::gather_contract_grad_kernel, m)?)?;
    m.add_function(wrap_pyfunction!(gather::gather_sum, m)?)?;
    m.add_function(wrap_pyfunction!(gather::gather_sum_grad_input, m)?)?;
    m.add_function(wrap_pyfunction!(empty_cache, m)?)?;
    m.add_function(wrap_pyfunction!(cached_bytes, m)?)?;
    recycle::set_limit(cache_limit_from_env()?);
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
