import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from metasae.codes import load_codes, save_codes
from metasae.errors import MetasaeError


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 20), m=st.integers(1, 30), density=st.floats(0, 1), seed=st.integers(0, 1000))
def test_codes_roundtrip_exactly(tmp_path_factory, n, m, density, seed):
    g = torch.Generator().manual_seed(seed)
    dense = torch.rand(n, m, generator=g) * (torch.rand(n, m, generator=g) < density)
    path = tmp_path_factory.mktemp("codes") / "codes.safetensors"
    save_codes(path, dense)
    back = load_codes(path)
    assert back.shape == (n, m)
    assert torch.equal(back.to_dense(), dense)


def test_out_of_range_indices_are_rejected(tmp_path):
    from metasae.io import save_tensors

    save_tensors(
        tmp_path / "c.safetensors",
        {"indices": torch.tensor([[0], [5]]), "values": torch.ones(1), "shape": torch.tensor([1, 3])},
    )
    with pytest.raises(MetasaeError, match="out of range"):
        load_codes(tmp_path / "c.safetensors")
