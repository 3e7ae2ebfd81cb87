//! The native part of the Python package `idx_flow_rs` (PyPI: idx-flow-rs):
//! HEALPix connection graphs and pixel functions on numpy arrays, and the
//! fused gather kernels behind `idx_flow_rs.torch`. The
//! Python layer (`python/idx_flow_rs/`) gives them idx_flow 0.2.1's and
//! healpy's signatures (scalars, shapes, keyword defaults); the functions
//! here take flat contiguous arrays and release the GIL while they work.

mod gather;
mod geometry;
mod graphs;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;

use idx_flow_healpix::Error;
use idx_flow_healpix::geometry::{HealpixGrid, Ordering};

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
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
