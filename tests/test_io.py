import errno
import hashlib
import json
import os
import time
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError

from metasae import io
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


FULL = "Error while serializing: I/O error: No space left on device (os error 28)"  # safetensors' own words


def test_a_library_write_error_names_the_output_not_the_temp_file(tmp_path, monkeypatch):
    """safetensors' SafetensorError and an OSError without a file name (pyarrow's) become one OSError naming
    the file asked for; the hidden temp file goes."""

    def full(*_args, **_kwargs):
        raise SafetensorError(FULL)

    monkeypatch.setattr(io, "save_file", full)
    with pytest.raises(OSError) as info:
        io.save_tensors(tmp_path / "sae.safetensors", {"w": torch.zeros(3)})
    assert (info.value.errno, info.value.filename) == (errno.ENOSPC, str(tmp_path / "sae.safetensors"))
    with pytest.raises(OSError) as info, atomic_path(tmp_path / "lineage.parquet"):
        raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")
    assert info.value.filename == str(tmp_path / "lineage.parquet")
    assert list(tmp_path.iterdir()) == []


def test_an_input_read_error_inside_a_write_keeps_its_own_name(tmp_path):
    with pytest.raises(FileNotFoundError) as info, atomic_path(tmp_path / "out.csv"):
        open(tmp_path / "missing-input.csv")  # noqa: SIM115
    assert info.value.filename == str(tmp_path / "missing-input.csv")


def test_a_write_error_in_a_stage_names_the_output_folder_and_removes_the_partial(tmp_path, monkeypatch):
    monkeypatch.setattr(io, "save_file", lambda *_a, **_k: (_ for _ in ()).throw(SafetensorError(FULL)))
    out = tmp_path / "depth1"
    with pytest.raises(OSError) as info, staged_dir(out, "metrics.json", resumable=True) as d:
        io.save_tensors(d / "sae.safetensors", {"w": torch.zeros(3)})
    assert info.value.filename == str(out / "sae.safetensors") and ".partial" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_a_failing_publish_names_the_output_and_leaves_no_partial(tmp_path, monkeypatch):
    """A read-only output folder fails the moves out of the partial folder: that is inside the clean-up."""
    out = tmp_path / "depth1"
    real_replace = os.replace

    def read_only(src, dst):
        if Path(dst).parent == out:
            raise PermissionError(errno.EACCES, "Permission denied", str(src), str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(io.os, "replace", read_only)
    with pytest.raises(PermissionError) as info, staged_dir(out, "metrics.json") as d:
        write_json(d / "codes.json", {})
        write_json(d / "metrics.json", {})
    assert info.value.filename == str(out / "codes.json"), info.value
    assert not (tmp_path / ".depth1.partial").exists()


def test_a_resumable_partial_is_reused_only_by_the_same_run(tmp_path):
    out = tmp_path / "depth1"
    partial = tmp_path / ".depth1.partial"
    with pytest.raises(KeyboardInterrupt), staged_dir(out, "m.json", resumable=True, resume_key="a") as d:
        (d / "checkpoint").mkdir()
        raise KeyboardInterrupt
    assert (partial / "checkpoint").is_dir()
    with pytest.raises(KeyboardInterrupt), staged_dir(out, "m.json", resumable=True, resume_key="b") as d:
        assert not (d / "checkpoint").exists()  # another run's: cleared
        (d / "checkpoint").mkdir()
        raise KeyboardInterrupt
    partial.joinpath(io.RESUME_KEY_FILE).unlink()  # a partial folder without a key: cleared
    with staged_dir(out, "m.json", resumable=True, resume_key="b") as d:
        assert not (d / "checkpoint").exists()
        (d / "m.json").write_text("{}")
    assert [p.name for p in out.iterdir()] == ["m.json"] and not partial.exists()


def test_a_resumable_stage_keys_its_partial_by_its_arguments(tmp_path):
    @io.stage_output("m.json", resumable=True)
    def stage(width: int, out_dir: Path) -> None:
        if (out_dir / "checkpoint").is_dir():
            (out_dir / "m.json").write_text(f"resumed {width}")
            return
        (out_dir / "checkpoint").mkdir()
        raise KeyboardInterrupt

    out = tmp_path / "depth1"
    with pytest.raises(KeyboardInterrupt):
        stage(8, out)
    with pytest.raises(KeyboardInterrupt):
        stage(16, out)  # other settings: starts afresh
    stage(16, out)
    assert (out / "m.json").read_text() == "resumed 16"


def test_publishing_syncs_files_and_folders_to_disk(tmp_path, monkeypatch):
    synced: list[str] = []
    real = io.fsync
    monkeypatch.setattr(io, "fsync", lambda p: (synced.append(Path(p).name), real(p))[1])
    out = tmp_path / "depth1"
    with staged_dir(out, "metrics.json") as d:
        (d / "codes.bin").write_bytes(b"x")  # written without atomic_path: synced when published
        write_json(d / "metrics.json", {})
    assert "codes.bin" in synced and synced.count("depth1") == 2 and synced[-1] == tmp_path.name


def test_remembered_digest_rehashes_a_file_rewritten_in_place_even_within_one_clock_tick(
    tmp_path, monkeypatch
):
    path = tmp_path / "codes.bin"
    path.write_bytes(b"a" * 64)
    calls = []
    real = io.file_digest
    monkeypatch.setattr(io, "file_digest", lambda *a, **k: calls.append(a) or real(*a, **k))
    young = io.remembered_digest(path)
    path.write_bytes(b"b" * 64)  # same size and inode, likely the same mtime tick: hashed again (racy)
    assert io.remembered_digest(path) != young
    old = time.time() - 60
    os.utime(path, (old, old))
    first = io.remembered_digest(path)
    n_calls = len(calls)
    assert io.remembered_digest(path) == first and len(calls) == n_calls  # remembered
    path.write_bytes(b"c" * 64)
    os.utime(path, (old + 1, old + 1))  # rewritten: a new mtime, a new digest
    assert io.remembered_digest(path) == hashlib.sha256(b"c" * 64).hexdigest()
