"""A reader for the IDX format of MNIST and its relatives (big-endian header, then a dense array)."""

from __future__ import annotations

import numpy as np

from metasae.errors import MetasaeError

_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def parse_idx(data: bytes, source: str) -> np.ndarray:
    """Decode IDX bytes into an array (native byte order); a bad header or length names `source`."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise MetasaeError(f"{source}: not an IDX file (bad magic number)")
    dtype, ndim = _DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise MetasaeError(f"{source}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise MetasaeError(
            f"{source}: IDX size {len(data)} bytes does not match its header {shape} "
            f"({expected} bytes); the file is truncated or corrupt"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))
