"""Streamed safetensors: loadable by safetensors itself, checksum of the file, atomic, strict about layout."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from metasae.errors import MetasaeError
from metasae.io import sha256_file
from metasae.tensor_stream import stream_tensors

TENSORS = {
    "labels": torch.arange(5),
    "mask": torch.tensor([True, False, True]),
    "half": torch.linspace(0, 1, 6, dtype=torch.bfloat16).view(2, 3),
    "acts": torch.randn(7, 3),
}


def _layout(tensors: dict[str, torch.Tensor]) -> dict:
    return {name: (t.dtype, tuple(t.shape)) for name, t in tensors.items()}


def test_streamed_file_loads_with_safetensors_and_its_checksum_is_the_files(tmp_path):
    path = tmp_path / "t.safetensors"
    with stream_tensors(path, _layout(TENSORS)) as stream:
        for name in ("labels", "mask", "half"):
            stream.write(name, TENSORS[name])
        for start in range(0, 7, 3):  # row blocks of 3, 3, 1
            stream.write("acts", TENSORS["acts"][start : start + 3])
    loaded = load_file(str(path))
    assert loaded.keys() == TENSORS.keys()
    for name, tensor in TENSORS.items():
        assert torch.equal(loaded[name], tensor), name
    assert stream.sha256 == sha256_file(path)


def test_missing_rows_leave_no_file(tmp_path):
    path = tmp_path / "t.safetensors"
    with (
        pytest.raises(MetasaeError, match="bytes missing"),
        stream_tensors(path, {"a": (torch.float32, (4, 2))}) as s,
    ):
        s.write("a", torch.zeros(3, 2))
    assert not path.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "block", "message"),
    [
        ("b", torch.zeros(2), "expected 'a'"),
        ("a", torch.zeros(5, dtype=torch.float32), "more data"),
        ("a", torch.zeros(2, dtype=torch.int64), "is torch.float32"),
        ("c", torch.zeros(2, 4), "rows of 'c' have shape"),
    ],
)
def test_blocks_out_of_layout_are_refused(tmp_path, name, block, message):
    layout = {"a": (torch.float32, (4,)), "b": (torch.float32, (2,))}
    if name == "c":
        layout = {"c": (torch.float32, (4, 2))}
    with (
        pytest.raises(MetasaeError, match=message),
        stream_tensors(tmp_path / "t.safetensors", layout) as stream,
    ):
        stream.write(name, block)
    assert list(tmp_path.iterdir()) == []
