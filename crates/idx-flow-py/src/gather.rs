//! The fused CPU gather kernels (`idx-flow-gather`) on numpy arrays: the
//! forward and backward of idx_flow's `SpatialConv`, `SpatialTransposeConv`
//! (gather-contract) and `SpatialUpsampling` (gather-sum), for the torch
//! operators in `idx_flow_rs.torch`.
//!
//! Arrays come in C-contiguous (float32 values, int64 graphs) and are read
//! in place; results are new arrays that own the kernels' buffers (no copy).
//! Every argument is checked (shapes, index ranges, the reverse graph's form)
//! before a kernel runs, and the GIL is released while it runs.

use numpy::{
    PyArray1, PyArray3, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyReadonlyArray3,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use idx_flow_gather::{
    GatherError, GatherSizes, ReverseGraph, contract_forward, contract_grad_input,
    contract_grad_kernel, sum_forward, sum_grad_input,
};

fn gather_err(e: GatherError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// A mismatch between two arguments' dimensions, as a `ValueError`.
fn mismatch(what: &str, got: usize, expected: usize, from: &str) -> PyErr {
    PyValueError::new_err(format!("{what} is {got}, expected {expected} ({from})"))
}

fn dims3<T: numpy::Element>(a: &PyReadonlyArray3<'_, T>) -> [usize; 3] {
    let s = a.shape();
    [s[0], s[1], s[2]]
}

fn dims2<T: numpy::Element>(a: &PyReadonlyArray2<'_, T>) -> [usize; 2] {
    let s = a.shape();
    [s[0], s[1]]
}

/// `values` as a new array of `shape`, owning the buffer.
fn array3<'py>(
    py: Python<'py>,
    values: Vec<f32>,
    shape: [usize; 3],
) -> PyResult<Bound<'py, PyArray3<f32>>> {
    PyArray1::from_vec(py, values).reshape(shape)
}

/// The optional `[N_out, k]` edge weights as a slice, checked against the graph.
fn edge_weights<'a>(
    w: &'a Option<PyReadonlyArray2<'_, f32>>,
    n_out: usize,
    k: usize,
) -> PyResult<Option<&'a [f32]>> {
    match w {
        None => Ok(None),
        Some(w) => {
            let [rows, cols] = dims2(w);
            if (rows, cols) != (n_out, k) {
                return Err(PyValueError::new_err(format!(
                    "edge weights have shape [{rows}, {cols}], expected the graph's [N_out, k] = [{n_out}, {k}]"
                )));
            }
            Ok(Some(w.as_slice()?))
        }
    }
}

/// A reverse graph's `(offsets, edges)` arrays.
type ReverseArrays<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>);

/// The reverse graph of an `[N_out, k]` index array on `n_in` input pixels:
/// `(offsets [n_in + 1], edges [N_out·k])`, which the input gradients read.
#[pyfunction]
pub fn reverse_graph<'py>(
    py: Python<'py>,
    indices: PyReadonlyArray2<'py, i64>,
    n_in: usize,
) -> PyResult<ReverseArrays<'py>> {
    let [_, k] = dims2(&indices);
    let idx = indices.as_slice()?;
    let reverse = py
        .detach(|| ReverseGraph::checked(idx, n_in, k))
        .map_err(gather_err)?;
    Ok((
        PyArray1::from_vec(py, reverse.offsets),
        PyArray1::from_vec(py, reverse.edges),
    ))
}

/// `Y[b,p,f] = bias[f] + Σ_j Σ_c w[p,j]·X[b, idx[p,j], c]·K[j,c,f]`:
/// `x` `[B, N_in, C]`, `indices` `[N_out, k]`, `edge_weights` `[N_out, k]` or
/// None, `kernel` `[k, C, F]`, `bias` `[F]` or None → `[B, N_out, F]`.
#[pyfunction]
pub fn gather_contract<'py>(
    py: Python<'py>,
    x: PyReadonlyArray3<'py, f32>,
    indices: PyReadonlyArray2<'py, i64>,
    edge_weights: Option<PyReadonlyArray2<'py, f32>>,
    kernel: PyReadonlyArray3<'py, f32>,
    bias: Option<PyReadonlyArray1<'py, f32>>,
) -> PyResult<Bound<'py, PyArray3<f32>>> {
    let [batch, n_in, channels] = dims3(&x);
    let [n_out, k] = dims2(&indices);
    let [kk, kc, f] = dims3(&kernel);
    if kk != k {
        return Err(mismatch(
            "the kernel's first dimension",
            kk,
            k,
            "the graph's k",
        ));
    }
    if kc != channels {
        return Err(mismatch(
            "the kernel's second dimension",
            kc,
            channels,
            "the input's channels",
        ));
    }
    let s = GatherSizes {
        batch,
        n_in,
        channels,
        n_out,
        k,
    };
    let (x, idx, kernel) = (x.as_slice()?, indices.as_slice()?, kernel.as_slice()?);
    let w = self::edge_weights(&edge_weights, n_out, k)?;
    let bias = bias.as_ref().map(|b| b.as_slice()).transpose()?;
    let y = py
        .detach(|| contract_forward(x, idx, w, kernel, bias, s, f))
        .map_err(gather_err)?;
    array3(py, y, [batch, n_out, f])
}

/// The input gradient of [`gather_contract`]: `dy` `[B, N_out, F]`, the
/// reverse graph (`rev_offsets` `[N_in + 1]`, `rev_edges` `[N_out·k]`),
/// `edge_weights` `[N_out, k]` or None, `kernel` `[k, C, F]` → `[B, N_in, C]`.
#[pyfunction]
pub fn gather_contract_grad_input<'py>(
    py: Python<'py>,
    dy: PyReadonlyArray3<'py, f32>,
    rev_offsets: PyReadonlyArray1<'py, i64>,
    rev_edges: PyReadonlyArray1<'py, i64>,
    edge_weights: Option<PyReadonlyArray2<'py, f32>>,
    kernel: PyReadonlyArray3<'py, f32>,
) -> PyResult<Bound<'py, PyArray3<f32>>> {
    let [batch, n_out, f] = dims3(&dy);
    let [k, channels, kf] = dims3(&kernel);
    if kf != f {
        return Err(mismatch(
            "the kernel's last dimension",
            kf,
            f,
            "the gradient's features",
        ));
    }
    let n_in = rev_offsets.len().checked_sub(1).ok_or_else(|| {
        PyValueError::new_err("reverse-graph offsets are empty, expected [N_in + 1] values")
    })?;
    let s = GatherSizes {
        batch,
        n_in,
        channels,
        n_out,
        k,
    };
    let (dy, offsets, edges, kernel) = (
        dy.as_slice()?,
        rev_offsets.as_slice()?,
        rev_edges.as_slice()?,
        kernel.as_slice()?,
    );
    let w = self::edge_weights(&edge_weights, n_out, k)?;
    let dx = py
        .detach(|| contract_grad_input(dy, offsets, edges, w, kernel, s, f))
        .map_err(gather_err)?;
    array3(py, dx, [batch, n_in, channels])
}

/// The kernel gradient of [`gather_contract`]: `x` `[B, N_in, C]`, `indices`
/// `[N_out, k]`, `edge_weights` or None, `dy` `[B, N_out, F]` → `[k, C, F]`.
#[pyfunction]
pub fn gather_contract_grad_kernel<'py>(
    py: Python<'py>,
    x: PyReadonlyArray3<'py, f32>,
    indices: PyReadonlyArray2<'py, i64>,
    edge_weights: Option<PyReadonlyArray2<'py, f32>>,
    dy: PyReadonlyArray3<'py, f32>,
) -> PyResult<Bound<'py, PyArray3<f32>>> {
    let [batch, n_in, channels] = dims3(&x);
    let [n_out, k] = dims2(&indices);
    let [db, dn, f] = dims3(&dy);
    if (db, dn) != (batch, n_out) {
        return Err(PyValueError::new_err(format!(
            "the gradient has shape [{db}, {dn}, {f}], expected [B, N_out, F] with B = {batch}, N_out = {n_out}"
        )));
    }
    let s = GatherSizes {
        batch,
        n_in,
        channels,
        n_out,
        k,
    };
    let (x, idx, dy) = (x.as_slice()?, indices.as_slice()?, dy.as_slice()?);
    let w = self::edge_weights(&edge_weights, n_out, k)?;
    let dk = py
        .detach(|| contract_grad_kernel(x, idx, w, dy, s, f))
        .map_err(gather_err)?;
    array3(py, dk, [k, channels, f])
}

/// `Y[b,p,c] = Σ_j w[p,j]·X[b, idx[p,j], c]`: `x` `[B, N_in, C]`, `indices`
/// and `weights` `[N_out, k]` → `[B, N_out, C]`.
#[pyfunction]
pub fn gather_sum<'py>(
    py: Python<'py>,
    x: PyReadonlyArray3<'py, f32>,
    indices: PyReadonlyArray2<'py, i64>,
    weights: PyReadonlyArray2<'py, f32>,
) -> PyResult<Bound<'py, PyArray3<f32>>> {
    let [batch, n_in, channels] = dims3(&x);
    let [n_out, k] = dims2(&indices);
    let s = GatherSizes {
        batch,
        n_in,
        channels,
        n_out,
        k,
    };
    let weights = Some(weights);
    let w = self::edge_weights(&weights, n_out, k)?.unwrap_or_default();
    let (x, idx) = (x.as_slice()?, indices.as_slice()?);
    let y = py
        .detach(|| sum_forward(x, idx, w, s))
        .map_err(gather_err)?;
    array3(py, y, [batch, n_out, channels])
}

/// The input gradient of [`gather_sum`]: `dy` `[B, N_out, C]`, the reverse
/// graph, `weights` `[N_out, k]` → `[B, N_in, C]`.
#[pyfunction]
pub fn gather_sum_grad_input<'py>(
    py: Python<'py>,
    dy: PyReadonlyArray3<'py, f32>,
    rev_offsets: PyReadonlyArray1<'py, i64>,
    rev_edges: PyReadonlyArray1<'py, i64>,
    weights: PyReadonlyArray2<'py, f32>,
) -> PyResult<Bound<'py, PyArray3<f32>>> {
    let [batch, n_out, channels] = dims3(&dy);
    let [wn, k] = dims2(&weights);
    if wn != n_out {
        return Err(mismatch(
            "the weights' first dimension",
            wn,
            n_out,
            "the gradient's N_out",
        ));
    }
    let n_in = rev_offsets.len().checked_sub(1).ok_or_else(|| {
        PyValueError::new_err("reverse-graph offsets are empty, expected [N_in + 1] values")
    })?;
    let s = GatherSizes {
        batch,
        n_in,
        channels,
        n_out,
        k,
    };
    let (dy, offsets, edges, w) = (
        dy.as_slice()?,
        rev_offsets.as_slice()?,
        rev_edges.as_slice()?,
        weights.as_slice()?,
    );
    let dx = py
        .detach(|| sum_grad_input(dy, offsets, edges, w, s))
        .map_err(gather_err)?;
    array3(py, dx, [batch, n_in, channels])
}
