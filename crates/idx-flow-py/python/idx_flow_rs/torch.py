"""idx_flow's spatial layers on idx-flow's fused CPU kernels.

``SpatialConv``, ``SpatialTransposeConv`` and ``SpatialUpsampling`` take
idx_flow 0.2.1's constructor arguments and hold the same parameters and
buffers under the same names, so a model swaps the import and nothing else::

    # from idx_flow import SpatialConv
    from idx_flow_rs.torch import SpatialConv

    indices, distances = compute_connection_indices(64, 32, 4)
    conv = SpatialConv(output_points=12 * 32**2, connection_indices=indices, filters=64)
    y = conv(torch.randn(8, 12 * 64**2, 32))          # [8, 12288, 64]

On contiguous float32 CPU tensors the forward and backward run in Rust
(gather and contraction fused, tiled, on all cores, no ``[B, N, k, C]``
intermediate), reading the tensors' memory in place through numpy. Other
dtypes and devices (a GPU, bfloat16) fall back to idx_flow's own torch
expression, so a model runs everywhere and is fast where the kernels apply.

The kernels are ``torch.library`` custom operators (``idx_flow_rs::gather_contract``,
``idx_flow_rs::gather_sum`` and their gradients) with registered autograd
formulas and fake (meta) implementations: ``torch.compile`` and
``torch.library.opcheck`` see them as single operators. Sums run in a fixed
order: results are bitwise the same from run to run, for any thread count.

Large results (4 MiB and more: a ``[8, 49152, 32]`` input gradient is 50 MB)
are not given back to the system when freed but kept, and the next result of
the same size reuses the memory: a fresh mapping of that size costs page
faults on every training step (on a 2-core AMD EPYC, 14–16 ms to fill 50 MB
and 5–7 ms to unmap it). At most 8 buffers and ``IDX_FLOW_RS_CACHE_MB``
(default 2048; 0 keeps nothing) are kept; :func:`empty_cache` gives them
back, :func:`cached_bytes` tells how much is kept.

``state_dict`` keys equal idx_flow's (``kernel``, ``bias_param``,
``connection_indices``, ``kernel_weights``; ``interpolation_weights``).
Like idx_flow's, the learnable parameters are created by the first forward
(when the input channels are known); unlike idx_flow's, a module not yet run
also creates them when it loads a state dict that holds them.
"""

from typing import Optional, Tuple

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from . import _native

__all__ = [
    "SpatialConv",
    "SpatialTransposeConv",
    "SpatialUpsampling",
    "gather_contract",
    "gather_sum",
    "empty_cache",
    "cached_bytes",
]

_INIT_METHODS = (
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "orthogonal",
    "normal",
    "uniform",
    "zeros",
)


def _array(t: Tensor, name: str) -> np.ndarray:
    """``t`` as a numpy array over the same memory (a copy only where ``t``
    is not contiguous)."""
    if t.device.type != "cpu":
        raise ValueError(f"{name} is on {t.device}, expected a CPU tensor")
    return t.detach().contiguous().numpy()


def _floats(t: Tensor, name: str) -> np.ndarray:
    if t.dtype != torch.float32:
        raise ValueError(f"{name} has dtype {t.dtype}, expected torch.float32")
    return _array(t, name)


def _ints(t: Tensor, name: str) -> np.ndarray:
    if t.dtype != torch.int64:
        raise ValueError(f"{name} has dtype {t.dtype}, expected torch.int64")
    return _array(t, name)


def _optional(t: Optional[Tensor], name: str) -> Optional[np.ndarray]:
    return None if t is None else _floats(t, name)


def empty_cache() -> int:
    """Gives the large result buffers kept for reuse back to the system;
    returns their bytes. Results still in use are not touched."""
    return _native.empty_cache()


def cached_bytes() -> int:
    """The bytes of large result buffers kept for reuse now."""
    return _native.cached_bytes()


# ------------------------------------------------------------ gather-contract


@torch.library.custom_op("idx_flow_rs::gather_contract", mutates_args=())
def gather_contract(
    x: Tensor,
    indices: Tensor,
    rev_offsets: Tensor,
    rev_edges: Tensor,
    edge_weights: Optional[Tensor],
    kernel: Tensor,
    bias: Optional[Tensor],
) -> Tensor:
    """``Y[b,p,f] = bias[f] + Σ_j Σ_c w[p,j]·X[b, idx[p,j], c]·K[j,c,f]``.

    ``x`` ``[B, N_in, C]`` float32, ``indices`` ``[N_out, k]`` int64,
    ``rev_offsets`` ``[N_in + 1]`` and ``rev_edges`` ``[N_out·k]`` int64 (the
    reverse graph, :func:`reverse_graph`; read by the backward),
    ``edge_weights`` ``[N_out, k]`` or None, ``kernel`` ``[k, C, F]``,
    ``bias`` ``[F]`` or None → ``[B, N_out, F]``. CPU tensors only.
    """
    y = _native.gather_contract(
        _floats(x, "x"),
        _ints(indices, "indices"),
        _optional(edge_weights, "edge_weights"),
        _floats(kernel, "kernel"),
        _optional(bias, "bias"),
    )
    return torch.from_numpy(y)


@gather_contract.register_fake
def _gather_contract_fake(x, indices, rev_offsets, rev_edges, edge_weights, kernel, bias):
    return x.new_empty((x.shape[0], indices.shape[0], kernel.shape[2]))


@torch.library.custom_op("idx_flow_rs::gather_contract_grad_input", mutates_args=())
def gather_contract_grad_input(
    dy: Tensor,
    rev_offsets: Tensor,
    rev_edges: Tensor,
    edge_weights: Optional[Tensor],
    kernel: Tensor,
) -> Tensor:
    """The input gradient of :func:`gather_contract` → ``[B, N_in, C]``."""
    dx = _native.gather_contract_grad_input(
        _floats(dy, "grad_output"),
        _ints(rev_offsets, "rev_offsets"),
        _ints(rev_edges, "rev_edges"),
        _optional(edge_weights, "edge_weights"),
        _floats(kernel, "kernel"),
    )
    return torch.from_numpy(dx)


@gather_contract_grad_input.register_fake
def _gather_contract_grad_input_fake(dy, rev_offsets, rev_edges, edge_weights, kernel):
    return dy.new_empty((dy.shape[0], rev_offsets.shape[0] - 1, kernel.shape[1]))


@torch.library.custom_op("idx_flow_rs::gather_contract_grad_kernel", mutates_args=())
def gather_contract_grad_kernel(
    x: Tensor, indices: Tensor, edge_weights: Optional[Tensor], dy: Tensor
) -> Tensor:
    """The kernel gradient of :func:`gather_contract` → ``[k, C, F]``."""
    dk = _native.gather_contract_grad_kernel(
        _floats(x, "x"),
        _ints(indices, "indices"),
        _optional(edge_weights, "edge_weights"),
        _floats(dy, "grad_output"),
    )
    return torch.from_numpy(dk)


@gather_contract_grad_kernel.register_fake
def _gather_contract_grad_kernel_fake(x, indices, edge_weights, dy):
    return x.new_empty((indices.shape[1], x.shape[2], dy.shape[2]))


def _no_edge_weight_grad(needs: bool, op: str) -> None:
    if needs:
        raise RuntimeError(
            f"{op}: gradients with respect to the edge weights are not computed "
            "(idx_flow keeps them as fixed buffers); detach them or use the "
            "torch expression for learnable weights"
        )


def _gather_contract_setup(ctx, inputs, output):
    x, indices, rev_offsets, rev_edges, edge_weights, kernel, bias = inputs
    ctx.save_for_backward(x, indices, rev_offsets, rev_edges, edge_weights, kernel)
    ctx.has_bias = bias is not None


def _gather_contract_backward(ctx, grad):
    x, indices, rev_offsets, rev_edges, edge_weights, kernel = ctx.saved_tensors
    needs = ctx.needs_input_grad
    _no_edge_weight_grad(needs[4], "gather_contract")
    grad_x = grad_kernel = grad_bias = None
    if needs[0]:
        grad_x = gather_contract_grad_input(grad, rev_offsets, rev_edges, edge_weights, kernel)
    if needs[5]:
        grad_kernel = gather_contract_grad_kernel(x, indices, edge_weights, grad)
    if ctx.has_bias and needs[6]:
        grad_bias = grad.sum(dim=(0, 1))
    return grad_x, None, None, None, None, grad_kernel, grad_bias


gather_contract.register_autograd(
    _gather_contract_backward, setup_context=_gather_contract_setup
)


# ----------------------------------------------------------------- gather-sum


@torch.library.custom_op("idx_flow_rs::gather_sum", mutates_args=())
def gather_sum(
    x: Tensor, indices: Tensor, rev_offsets: Tensor, rev_edges: Tensor, weights: Tensor
) -> Tensor:
    """``Y[b,p,c] = Σ_j w[p,j]·X[b, idx[p,j], c]``: ``x`` ``[B, N_in, C]``,
    ``indices`` and ``weights`` ``[N_out, k]``, the reverse graph (read by
    the backward) → ``[B, N_out, C]``. CPU tensors only."""
    y = _native.gather_sum(
        _floats(x, "x"), _ints(indices, "indices"), _floats(weights, "weights")
    )
    return torch.from_numpy(y)


@gather_sum.register_fake
def _gather_sum_fake(x, indices, rev_offsets, rev_edges, weights):
    return x.new_empty((x.shape[0], indices.shape[0], x.shape[2]))


@torch.library.custom_op("idx_flow_rs::gather_sum_grad_input", mutates_args=())
def gather_sum_grad_input(
    dy: Tensor, rev_offsets: Tensor, rev_edges: Tensor, weights: Tensor
) -> Tensor:
    """The input gradient of :func:`gather_sum` → ``[B, N_in, C]``."""
    dx = _native.gather_sum_grad_input(
        _floats(dy, "grad_output"),
        _ints(rev_offsets, "rev_offsets"),
        _ints(rev_edges, "rev_edges"),
        _floats(weights, "weights"),
    )
    return torch.from_numpy(dx)


@gather_sum_grad_input.register_fake
def _gather_sum_grad_input_fake(dy, rev_offsets, rev_edges, weights):
    return dy.new_empty((dy.shape[0], rev_offsets.shape[0] - 1, dy.shape[2]))


def _gather_sum_setup(ctx, inputs, output):
    _, _, rev_offsets, rev_edges, weights = inputs
    ctx.save_for_backward(rev_offsets, rev_edges, weights)


def _gather_sum_backward(ctx, grad):
    rev_offsets, rev_edges, weights = ctx.saved_tensors
    _no_edge_weight_grad(ctx.needs_input_grad[4], "gather_sum")
    grad_x = None
    if ctx.needs_input_grad[0]:
        grad_x = gather_sum_grad_input(grad, rev_offsets, rev_edges, weights)
    return grad_x, None, None, None, None


gather_sum.register_autograd(_gather_sum_backward, setup_context=_gather_sum_setup)


def reverse_graph(indices: Tensor, n_in: int) -> Tuple[Tensor, Tensor]:
    """The reverse of an ``[N_out, k]`` graph on ``n_in`` input pixels:
    ``(offsets [n_in + 1], edges [N_out·k])`` int64, the edges that read each
    input pixel. Raises ``ValueError`` naming an index outside ``0..n_in``."""
    offsets, edges = _native.reverse_graph(_ints(indices, "indices"), int(n_in))
    return torch.from_numpy(offsets), torch.from_numpy(edges)


# -------------------------------------------------------------------- modules


def _initializer(method: str, gain: float):
    """idx_flow's ``get_initializer`` (the same torch.nn.init calls, so the
    same seed gives the same weights)."""
    init = nn.init
    table = {
        "xavier_uniform": lambda t: init.xavier_uniform_(t, gain=gain),
        "xavier_normal": lambda t: init.xavier_normal_(t, gain=gain),
        "kaiming_uniform": lambda t: init.kaiming_uniform_(
            t, a=0, mode="fan_in", nonlinearity="leaky_relu"
        ),
        "kaiming_normal": lambda t: init.kaiming_normal_(
            t, a=0, mode="fan_in", nonlinearity="leaky_relu"
        ),
        "orthogonal": lambda t: init.orthogonal_(t, gain=gain),
        "normal": lambda t: init.normal_(t, mean=0.0, std=0.02),
        "uniform": lambda t: init.uniform_(t, a=0.0, b=1.0),
        "zeros": init.zeros_,
    }
    if method not in table:
        raise ValueError(
            f"Unknown initialization method: '{method}'. "
            f"Choose from: {', '.join(_INIT_METHODS)}"
        )
    return table[method]


def _graph(connection_indices: NDArray) -> Tensor:
    indices = np.asarray(connection_indices)
    if indices.ndim != 2:
        raise ValueError(
            f"connection_indices has shape {indices.shape}, expected [output_points, kernel_size]"
        )
    return torch.from_numpy(indices.astype(np.int64))


class _GraphModule(nn.Module):
    """A module over a ``connection_indices`` buffer, with its reverse graph
    as buffers that ``state_dict`` leaves out (``_rev_offsets``,
    ``_rev_edges``): built once, for the input pixels the graph reads, and
    again when a state dict loads new indices."""

    def _set_graph(self, indices: Tensor) -> None:
        self.register_buffer("connection_indices", indices)
        self._rebuild_reverse()

    def _rebuild_reverse(self) -> None:
        indices = self.connection_indices.cpu()
        if indices.numel() and int(indices.min()) < 0:
            raise ValueError(
                f"connection_indices holds {int(indices.min())}, expected pixel indices >= 0"
            )
        n_in = int(indices.max()) + 1 if indices.numel() else 0
        offsets, edges = reverse_graph(indices, n_in)
        device = self.connection_indices.device
        self.register_buffer("_rev_offsets", offsets.to(device), persistent=False)
        self.register_buffer("_rev_edges", edges.to(device), persistent=False)

    def _reverse_for(self, input_points: int) -> Tuple[Tensor, Tensor]:
        """The reverse graph over ``input_points`` input pixels (pixels past
        the largest index are read by no edge: their offsets repeat the
        last). Fewer pixels than the graph reads fail in the kernel, naming
        the index."""
        offsets = self._rev_offsets
        extra = input_points + 1 - offsets.shape[0]
        if extra > 0:
            offsets = torch.cat([offsets, offsets[-1:].expand(extra)])
        return offsets, self._rev_edges

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if prefix + "connection_indices" in state_dict:
            self._rebuild_reverse()


def _fast(*tensors: Optional[Tensor]) -> bool:
    """Whether the Rust kernels apply: float CPU tensors in float32."""
    return all(
        t is None or (t.device.type == "cpu" and t.dtype == torch.float32) for t in tensors
    )


class SpatialConv(_GraphModule):
    """idx_flow's ``SpatialConv`` on the fused kernels: ``[B, N_in, C]`` →
    ``[B, N_out, filters]``,
    ``Y[b,p,f] = Σ_k Σ_c w[p,k]·X[b, idx[p,k], c]·kernel[k,c,f] + bias_param[f]``.

    Arguments, defaults, parameters (``kernel`` ``[k, C, F]``, ``bias_param``
    ``[F]``, created by the first forward) and buffers
    (``connection_indices``, ``kernel_weights`` ``[N_out, k, 1]`` or None)
    as idx_flow 0.2.1's.

    >>> import torch
    >>> from idx_flow_rs import compute_connection_indices
    >>> from idx_flow_rs.torch import SpatialConv
    >>> indices, _ = compute_connection_indices(8, 4, 4)
    >>> conv = SpatialConv(output_points=12 * 4**2, connection_indices=indices, filters=16)
    >>> conv(torch.randn(2, 12 * 8**2, 3)).shape
    torch.Size([2, 192, 16])
    """

    def __init__(
        self,
        output_points: int,
        connection_indices: NDArray[np.int64],
        kernel_weights: Optional[NDArray[np.float64]] = None,
        filters: int = 32,
        bias: bool = True,
        weight_init: str = "xavier_uniform",
        weight_init_gain: float = 1.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        indices = _graph(connection_indices)
        _initializer(weight_init, weight_init_gain)  # an unknown name fails here, not at the first forward
        self.output_points = output_points
        self.filters = filters
        self.kernel_size = indices.shape[1]
        self.use_bias = bias
        self.weight_init = weight_init
        self.weight_init_gain = weight_init_gain
        self.bias_init = bias_init
        self._set_graph(indices)
        if kernel_weights is not None:
            w = np.asarray(kernel_weights)
            if w.shape != tuple(indices.shape):
                raise ValueError(
                    f"kernel_weights has shape {w.shape}, expected connection_indices' {tuple(indices.shape)}"
                )
            self.register_buffer(
                "kernel_weights", torch.from_numpy(w.astype(np.float32)).unsqueeze(-1)
            )
        else:
            self.register_buffer("kernel_weights", None)
        self.kernel: Optional[nn.Parameter] = None
        self.bias_param: Optional[nn.Parameter] = None
        self._initialized = False

    def _initialize_parameters(self, in_channels: int) -> None:
        self.kernel = nn.Parameter(torch.empty(self.kernel_size, in_channels, self.filters))
        _initializer(self.weight_init, self.weight_init_gain)(self.kernel)
        if self.use_bias:
            self.bias_param = nn.Parameter(torch.full((self.filters,), self.bias_init))
        self._initialized = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A module not yet run has no parameters to load into: create them
        # with the stored kernel's channel count first.
        kernel = state_dict.get(prefix + "kernel")
        if not self._initialized and kernel is not None and kernel.dim() == 3:
            self._initialize_parameters(kernel.shape[1])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``[B, N_in, C]`` → ``[B, output_points, filters]``."""
        if x.dim() != 3:
            raise ValueError(f"input has shape {tuple(x.shape)}, expected [B, N_in, C]")
        _, input_points, in_channels = x.shape
        if not self._initialized:
            self._initialize_parameters(in_channels)
            self.kernel = nn.Parameter(self.kernel.to(x.device))
            if self.bias_param is not None:
                self.bias_param = nn.Parameter(self.bias_param.to(x.device))
        weights = self.kernel_weights
        if _fast(x, self.kernel, self.bias_param, weights):
            rev_offsets, rev_edges = self._reverse_for(input_points)
            return gather_contract(
                x,
                self.connection_indices,
                rev_offsets,
                rev_edges,
                None if weights is None else weights.squeeze(-1),
                self.kernel,
                self.bias_param,
            )
        # idx_flow's own expression, for other dtypes and devices.
        neighbors = x[:, self.connection_indices, :]
        if weights is not None:
            neighbors = neighbors * weights
        output = torch.einsum("bpkc,kcf->bpf", neighbors, self.kernel)
        if self.bias_param is not None:
            output = output + self.bias_param
        return output

    def extra_repr(self) -> str:
        return (
            f"output_points={self.output_points}, "
            f"kernel_size={self.kernel_size}, "
            f"filters={self.filters}, "
            f"bias={self.use_bias}, "
            f"weight_init='{self.weight_init}'"
        )


class SpatialTransposeConv(SpatialConv):
    """idx_flow's ``SpatialTransposeConv`` (upsampling: the graph maps each
    pixel of the finer output grid to ``k`` pixels of the coarser input) on
    the fused kernels; arguments, parameters and buffers as
    :class:`SpatialConv`'s, which computes the same expression."""


class SpatialUpsampling(_GraphModule):
    """idx_flow's ``SpatialUpsampling`` on the fused kernels: ``[B, N_in, C]``
    → ``[B, N_out, C]``, each output pixel the normalised distance-weighted
    sum of its ``k`` input pixels (``interpolation`` "linear", "idw" or
    "gaussian"; no parameters). Buffers ``connection_indices`` and
    ``interpolation_weights`` ``[N_out, k, 1]``, computed as idx_flow does.
    """

    def __init__(
        self,
        output_points: int,
        connection_indices: NDArray[np.int64],
        distances: NDArray[np.float64],
        interpolation: str = "linear",
        kernel_radius: Optional[float] = None,
    ) -> None:
        super().__init__()
        indices = _graph(connection_indices)
        distances = np.asarray(distances, dtype=np.float64)
        if distances.shape != tuple(indices.shape):
            raise ValueError(
                f"distances has shape {distances.shape}, expected connection_indices' {tuple(indices.shape)}"
            )
        self.output_points = output_points
        self.kernel_size = indices.shape[1]
        self.interpolation = interpolation
        self.kernel_radius = kernel_radius if kernel_radius else float(np.max(distances))
        self._set_graph(indices)
        weights = self._compute_weights(distances)
        weights = weights / (np.sum(weights, axis=-1, keepdims=True) + 1e-10)
        self.register_buffer(
            "interpolation_weights",
            torch.from_numpy(weights.astype(np.float32)).unsqueeze(-1),
        )

    def _compute_weights(self, distances: NDArray[np.float64]) -> NDArray[np.float64]:
        # idx_flow's arithmetic, operation for operation (float64 numpy).
        if self.interpolation == "linear":
            return np.maximum(0.0, 1.0 - distances / self.kernel_radius)
        if self.interpolation == "idw":
            return 1.0 / (np.power(distances + 1e-10, 2))
        if self.interpolation == "gaussian":
            return np.exp(-0.5 * np.square(distances / self.kernel_radius))
        raise ValueError(
            f"Unsupported interpolation method: '{self.interpolation}'. "
            f"Choose from: 'linear', 'idw', 'gaussian'"
        )

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``[B, N_in, C]`` → ``[B, output_points, C]``."""
        if x.dim() != 3:
            raise ValueError(f"input has shape {tuple(x.shape)}, expected [B, N_in, C]")
        weights = self.interpolation_weights
        if _fast(x, weights):
            rev_offsets, rev_edges = self._reverse_for(x.shape[1])
            return gather_sum(
                x, self.connection_indices, rev_offsets, rev_edges, weights.squeeze(-1)
            )
        neighbors = x[:, self.connection_indices, :]
        return torch.sum(neighbors * weights, dim=2)

    def extra_repr(self) -> str:
        return (
            f"output_points={self.output_points}, "
            f"kernel_size={self.kernel_size}, "
            f"interpolation='{self.interpolation}', "
            f"kernel_radius={self.kernel_radius:.2f}"
        )
