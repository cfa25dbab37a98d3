import json

import pytest
import torch

from metasae.errors import MetasaeError
from metasae.io import (
    atomic_path,
    load_checkpoint,
    provenance,
    read_json,
    save_checkpoint,
    sha256_file,
    staged_dir,
    write_json,
)
from metasae.seeds import derive_seed, generator


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_replaces_old_file_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_path(target) as tmp:
        tmp.write_text("new")
        assert target.read_text() == "old"
    assert target.read_text() == "new"


def test_checkpoint_roundtrip(tmp_path):
    tensors = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    save_checkpoint(tmp_path, "m.safetensors", tensors, {"a": 1})
    loaded, cfg = load_checkpoint(tmp_path, "m.safetensors", producer="test")
    assert cfg == {"a": 1, "sha256": {"m.safetensors": sha256_file(tmp_path / "m.safetensors")}}
    assert torch.equal(loaded["w"], tensors["w"])


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    save_checkpoint(tmp_path, "m.safetensors", {"w": torch.ones(100)}, {})
    path = tmp_path / "m.safetensors"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(MetasaeError, match="m.safetensors: bytes differ .* rerun `metasae test`"):
        load_checkpoint(tmp_path, "m.safetensors", producer="test")


def test_flipped_bytes_in_weights_are_refused(tmp_path):
    save_checkpoint(tmp_path, "m.safetensors", {"w": torch.ones(1000)}, {})
    path = tmp_path / "m.safetensors"
    data = bytearray(path.read_bytes())
    middle = slice(len(data) // 2, len(data) // 2 + 64)
    data[middle] = bytes(b ^ 0xFF for b in data[middle])
    path.write_bytes(bytes(data))
    with pytest.raises(MetasaeError, match="m.safetensors: bytes differ"):
        load_checkpoint(tmp_path, "m.safetensors", producer="test")


def test_weights_without_a_recorded_sha256_are_refused(tmp_path):
    save_checkpoint(tmp_path, "m.safetensors", {"w": torch.ones(10)}, {}, record_sha256=False)
    with pytest.raises(MetasaeError, match="no sha256 recorded"):
        load_checkpoint(tmp_path, "m.safetensors", producer="test")


def test_corrupt_json_names_the_file(tmp_path):
    (tmp_path / "cfg.json").write_text("{not json")
    with pytest.raises(MetasaeError, match="cfg.json: corrupt JSON"):
        read_json(tmp_path / "cfg.json")


def test_write_json_is_sorted_and_handles_tensors(tmp_path):
    write_json(tmp_path / "x.json", {"b": torch.tensor([1, 2]), "a": 1})
    text = (tmp_path / "x.json").read_text()
    assert json.loads(text) == {"a": 1, "b": [1, 2]}
    assert text.index('"a"') < text.index('"b"')


def test_provenance_records_versions_and_commit():
    p = provenance({"k": 1}, seed=3)
    assert p["seed"] == 3 and p["config"] == {"k": 1}
    assert p["torch_version"] and p["git_commit"]


def test_derived_seeds_differ_by_part_and_repeat_exactly():
    assert derive_seed(0, "depth", 1) == derive_seed(0, "depth", 1)
    assert derive_seed(0, "depth", 1) != derive_seed(0, "depth", 2)
    assert derive_seed(0, "depth", 1) != derive_seed(1, "depth", 1)
    assert torch.equal(torch.rand(3, generator=generator(5, "x")), torch.rand(3, generator=generator(5, "x")))


def test_staged_dir_publishes_all_or_nothing(tmp_path):
    out = tmp_path / "depth2"
    with staged_dir(out, "summary.json") as d:
        (d / "latents.parquet").write_text("v1")
        (d / "figures").mkdir()
        (d / "figures" / "a.png").write_text("v1")
        (d / "summary.json").write_text("v1")
    assert sorted(p.name for p in out.iterdir()) == ["figures", "latents.parquet", "summary.json"]
    with pytest.raises(RuntimeError), staged_dir(out, "summary.json") as d:  # a failing second run
        (d / "latents.parquet").write_text("v2")
        raise RuntimeError("boom")
    assert (out / "latents.parquet").read_text() == "v1" and (out / "summary.json").read_text() == "v1"
    assert not (tmp_path / ".depth2.partial").exists()
    with staged_dir(out, "summary.json") as d:  # a run that writes fewer files replaces the folder
        (d / "summary.json").write_text("v3")
    assert [p.name for p in out.iterdir()] == ["summary.json"]


def test_staged_dir_keeps_a_resumable_partial_on_interrupt_and_shared_entries(tmp_path):
    out = tmp_path / "probes"
    out.mkdir()
    (out / "probes.csv").write_text("other stage")
    with pytest.raises(KeyboardInterrupt), staged_dir(out, "ksparse.json", resumable=True) as d:
        (d / "checkpoint").mkdir()
        raise KeyboardInterrupt
    assert (tmp_path / ".probes.partial" / "checkpoint").is_dir()
    with staged_dir(out, "ksparse.json", resumable=True, shared=True) as d:
        assert (d / "checkpoint").is_dir()  # resumed
        (d / "checkpoint").rmdir()
        (d / "ksparse.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == ["ksparse.json", "probes.csv"]
