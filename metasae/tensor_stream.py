"""A safetensors file written as its data is produced, with its sha256 computed on the way.

Why: an activation cache is as large as the forward pass that makes it is cheap. Serialising it at the end
and then re-reading it for its checksum costs more than a third of a small model's forward pass; streaming
each batch to disk and into the hash from a background thread overlaps that work with the next batch. The
shapes are known up front (one row per image), so the header can be written first. Any safetensors reader
loads the result: header = JSON {name: {dtype, shape, data_offsets}}, data contiguous in header order.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import struct
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch

from metasae.errors import MetasaeError
from metasae.io import atomic_path

DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


class TensorStreamWriter:
    """Append each tensor's data in `layout` order (whole tensors or consecutive row blocks); `sha256` is the
    file's checksum once the `stream` block has ended. Writes run on one background thread, in order."""

    def __init__(self, handle, layout: dict[str, tuple[torch.dtype, tuple[int, ...]]]) -> None:
        self._handle = handle
        self._sizes = {
            name: math.prod(shape) * torch.empty((), dtype=dtype).element_size()
            for name, (dtype, shape) in layout.items()
        }
        self._dtypes = {name: dtype for name, (dtype, _) in layout.items()}
        self._rows = {name: tuple(shape[1:]) for name, (_, shape) in layout.items()}
        header, start = {}, 0
        for name, (dtype, shape) in layout.items():
            if dtype not in DTYPES:
                raise MetasaeError(f"tensor {name!r}: dtype {dtype} has no safetensors name")
            header[name] = {
                "dtype": DTYPES[dtype],
                "shape": list(shape),
                "data_offsets": [start, start + self._sizes[name]],
            }
            start += self._sizes[name]
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)  # pad to 8 bytes, as safetensors' own writer does
        self._hash = hashlib.sha256()
        self._order = list(layout)
        self._written = dict.fromkeys(layout, 0)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tensor-stream")
        self._pending: list[Future] = []
        self._submit(struct.pack("<Q", len(text)) + text)
        self.sha256: str | None = None

    def _submit(self, data) -> None:
        def run() -> None:
            self._handle.write(data)
            self._hash.update(data)

        done = [f for f in self._pending if f.done()]
        for future in done:
            future.result()  # a failed write surfaces at the next block, not only at the end
        self._pending = [f for f in self._pending if f not in done] + [self._pool.submit(run)]

    def write(self, name: str, block: torch.Tensor) -> None:
        """Append `block` (the next rows of tensor `name`). It must stay unchanged until the stream closes."""
        current = next((n for n in self._order if self._written[n] < self._sizes[n]), None)
        if name != current:
            raise MetasaeError(
                f"tensor stream: got {name!r}, expected {current!r} (tensors are written in layout order)"
            )
        if block.dtype != self._dtypes[name]:
            raise MetasaeError(
                f"tensor stream: {name!r} is {self._dtypes[name]}, got a block of {block.dtype}"
            )
        if self._rows[name] and tuple(block.shape[1:]) != self._rows[name]:
            raise MetasaeError(
                f"tensor stream: rows of {name!r} have shape {list(self._rows[name])}, "
                f"got a block of {list(block.shape)}"
            )
        data = block.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
        if self._written[name] + data.nbytes > self._sizes[name]:
            raise MetasaeError(f"tensor stream: more data for {name!r} than its declared shape holds")
        self._written[name] += data.nbytes
        self._submit(memoryview(data))

    def finish(self) -> str:
        self._pool.shutdown(wait=True)
        for future in self._pending:
            future.result()  # re-raises a failed write
        missing = {n: self._sizes[n] - w for n, w in self._written.items() if w < self._sizes[n]}
        if missing:
            raise MetasaeError(
                f"tensor stream: bytes missing for {missing} (fewer rows written than declared)"
            )
        self.sha256 = self._hash.hexdigest()
        return self.sha256

    def abandon(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def stream_tensors(
    path: str | Path, layout: dict[str, tuple[torch.dtype, tuple[int, ...]]]
) -> Iterator[TensorStreamWriter]:
    """Atomically write `path`: it appears, complete, only if the block ends without error and every declared
    byte was written."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        writer = TensorStreamWriter(handle, layout)
        try:
            yield writer
        except BaseException:
            writer.abandon()
            raise
        writer.finish()
