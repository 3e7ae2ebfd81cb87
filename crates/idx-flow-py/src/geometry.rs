//! healpy's pixel functions on flat arrays: centres, the pixel of a
//! direction, neighbours, and RING ↔ NESTED.

use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use idx_flow_healpix::geometry::{HealpixGrid, Ordering};
use idx_flow_healpix::{Error, Result};

use crate::{grid, py_err};

/// `(theta, phi)` arrays in radians.
pub(crate) type Angles<'py> = (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>);

/// `p` as a pixel of `grid`, or an error naming it and the valid range
/// (negative indices included, which healpy refuses too).
fn pixel(grid: &HealpixGrid, p: i64) -> Result<u64> {
    match u64::try_from(p) {
        Ok(pix) => {
            grid.check_pixel(pix)?;
            Ok(pix)
        }
        Err(_) => Err(Error::arg(
            "ipix",
            format!(
                "pixel {p} is out of range for nside {} (expected 0..{})",
                grid.nside(),
                grid.npix()
            ),
        )),
    }
}

/// Pixel centres `(theta, phi)` in radians.
#[pyfunction]
pub fn pix2ang<'py>(
    py: Python<'py>,
    nside: i64,
    ipix: PyReadonlyArray1<'py, i64>,
    nest: bool,
) -> PyResult<Angles<'py>> {
    let grid = grid(nside, nest)?;
    let pix = ipix.as_slice()?;
    let (theta, phi) = py
        .detach(|| -> Result<(Vec<f64>, Vec<f64>)> {
            let mut theta = Vec::with_capacity(pix.len());
            let mut phi = Vec::with_capacity(pix.len());
            for &p in pix {
                let (t, f) = grid.pix2ang(pixel(&grid, p)?)?;
                theta.push(t);
                phi.push(f);
            }
            Ok((theta, phi))
        })
        .map_err(py_err)?;
    Ok((PyArray1::from_vec(py, theta), PyArray1::from_vec(py, phi)))
}

/// The pixel of each direction `(theta, phi)` in radians.
#[pyfunction]
pub fn ang2pix<'py>(
    py: Python<'py>,
    nside: i64,
    theta: PyReadonlyArray1<'py, f64>,
    phi: PyReadonlyArray1<'py, f64>,
    nest: bool,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let grid = grid(nside, nest)?;
    let (theta, phi) = (theta.as_slice()?, phi.as_slice()?);
    if theta.len() != phi.len() {
        return Err(PyValueError::new_err(format!(
            "theta and phi hold {} and {} values, expected the same number",
            theta.len(),
            phi.len()
        )));
    }
    let pix = py
        .detach(|| -> Result<Vec<i64>> {
            theta
                .iter()
                .zip(phi)
                .map(|(&t, &f)| grid.ang2pix(t, f).map(|p| p as i64))
                .collect()
        })
        .map_err(py_err)?;
    Ok(PyArray1::from_vec(py, pix))
}

/// The 8 neighbours of each pixel, `[8, N]` in healpy's order SW, W, NW, N,
/// NE, E, SE, S, with -1 where a pixel has no neighbour in a direction.
#[pyfunction]
pub fn neighbours<'py>(
    py: Python<'py>,
    nside: i64,
    ipix: PyReadonlyArray1<'py, i64>,
    nest: bool,
) -> PyResult<Bound<'py, PyArray2<i64>>> {
    let grid = grid(nside, nest)?;
    let pix = ipix.as_slice()?;
    let n = pix.len();
    let out = py
        .detach(|| -> Result<Vec<i64>> {
            let mut out = vec![-1i64; 8 * n];
            for (j, &p) in pix.iter().enumerate() {
                for (slot, nb) in grid.neighbours(pixel(&grid, p)?)?.iter().enumerate() {
                    if let Some(q) = nb {
                        out[slot * n + j] = *q as i64;
                    }
                }
            }
            Ok(out)
        })
        .map_err(py_err)?;
    PyArray1::from_vec(py, out).reshape([8, n])
}

/// RING → NESTED (`to_nest`) or NESTED → RING indices.
#[pyfunction]
pub fn convert<'py>(
    py: Python<'py>,
    nside: i64,
    ipix: PyReadonlyArray1<'py, i64>,
    to_nest: bool,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let from = grid(nside, !to_nest)?;
    let target = if to_nest {
        Ordering::Nested
    } else {
        Ordering::Ring
    };
    let pix = ipix.as_slice()?;
    let out = py
        .detach(|| -> Result<Vec<i64>> {
            pix.iter()
                .map(|&p| Ok(from.convert(pixel(&from, p)?, target)? as i64))
                .collect()
        })
        .map_err(py_err)?;
    Ok(PyArray1::from_vec(py, out))
}
