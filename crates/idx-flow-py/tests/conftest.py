"""The repository's reference fixtures (outputs of healpy 1.20.1 and idx_flow
0.2.1), read with numpy alone. The folder is ``IDX_FLOW_FIXTURES`` when set,
else the repository's ``fixtures/``; every case comes from its manifest."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

DTYPES = {"F64": np.float64, "F32": np.float32, "I64": np.int64, "I32": np.int32}


def fixtures_dir() -> Path:
    env = os.environ.get("IDX_FLOW_FIXTURES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "fixtures"


def read_safetensors(path: Path) -> Dict[str, np.ndarray]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        start, end = entry["data_offsets"]
        out[name] = np.frombuffer(data[start:end], dtype=DTYPES[entry["dtype"]]).reshape(
            entry["shape"]
        )
    return out


@pytest.fixture(scope="session")
def manifest() -> dict:
    return json.loads((fixtures_dir() / "manifest.json").read_text())


@pytest.fixture(scope="session")
def graphs() -> Dict[str, np.ndarray]:
    return read_safetensors(fixtures_dir() / "connection_indices.safetensors")


@pytest.fixture(scope="session")
def geometry() -> Dict[str, np.ndarray]:
    return read_safetensors(fixtures_dir() / "healpix_geometry.safetensors")
