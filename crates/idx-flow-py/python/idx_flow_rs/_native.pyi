"""Typed signatures of the native module (Rust, pyo3); use the wrappers in
``idx_flow_rs`` instead, which take scalars and any array shape."""

from typing import Any, Dict, Optional, Tuple

import numpy as np
from numpy.typing import NDArray

__version__: str

def knn_graph(
    nside_in: int, nside_out: int, k: int, nest: bool, idx_flow_order: bool
) -> Tuple[NDArray[np.int64], NDArray[np.float64]]: ...
def healpy_pix2ang_ring(nside: int) -> Tuple[NDArray[np.float64], NDArray[np.float64]]: ...
def children_graph(
    nside_in: int, nside_out: int
) -> Tuple[NDArray[np.int64], NDArray[np.float64]]: ...
def parent_graph(
    nside_in: int, nside_out: int
) -> Tuple[NDArray[np.int64], NDArray[np.float64]]: ...
def stencil_graph(nside: int, nest: bool) -> Tuple[NDArray[np.int64], NDArray[np.float64]]: ...
def weights(
    distances: NDArray[np.float64], k: int, method_name: str, sigma_factor: float, epsilon: float
) -> NDArray[np.float64]: ...
def resolution(nside: int) -> Dict[str, Any]: ...
def pix2ang(
    nside: int, ipix: NDArray[np.int64], nest: bool
) -> Tuple[NDArray[np.float64], NDArray[np.float64]]: ...
def ang2pix(
    nside: int, theta: NDArray[np.float64], phi: NDArray[np.float64], nest: bool
) -> NDArray[np.int64]: ...
def neighbours(nside: int, ipix: NDArray[np.int64], nest: bool) -> NDArray[np.int64]: ...
def convert(nside: int, ipix: NDArray[np.int64], to_nest: bool) -> NDArray[np.int64]: ...

# The fused gather kernels (C-contiguous float32 values, int64 graphs; used by
# ``idx_flow_rs.torch``).
def reverse_graph(
    indices: NDArray[np.int64], n_in: int
) -> Tuple[NDArray[np.int64], NDArray[np.int64]]: ...
def gather_contract(
    x: NDArray[np.float32],
    indices: NDArray[np.int64],
    edge_weights: Optional[NDArray[np.float32]],
    kernel: NDArray[np.float32],
    bias: Optional[NDArray[np.float32]],
) -> NDArray[np.float32]: ...
def gather_contract_grad_input(
    dy: NDArray[np.float32],
    rev_offsets: NDArray[np.int64],
    rev_edges: NDArray[np.int64],
    edge_weights: Optional[NDArray[np.float32]],
    kernel: NDArray[np.float32],
) -> NDArray[np.float32]: ...
def gather_contract_grad_kernel(
    x: NDArray[np.float32],
    indices: NDArray[np.int64],
    edge_weights: Optional[NDArray[np.float32]],
    dy: NDArray[np.float32],
) -> NDArray[np.float32]: ...
def gather_sum(
    x: NDArray[np.float32], indices: NDArray[np.int64], weights: NDArray[np.float32]
) -> NDArray[np.float32]: ...
def gather_sum_grad_input(
    dy: NDArray[np.float32],
    rev_offsets: NDArray[np.int64],
    rev_edges: NDArray[np.int64],
    weights: NDArray[np.float32],
) -> NDArray[np.float32]: ...

# The large result buffers kept for reuse (``idx_flow_rs.torch.empty_cache``).
def empty_cache() -> int: ...
def cached_bytes() -> int: ...
