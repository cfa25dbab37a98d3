"""Dataset registry: references, conversions, embedded generators, real loaders on real / synthetic files."""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from metasae.cli import main
from metasae.data import (
    InputSpec,
    dsprites_gen,
    dsprites_grid,
    glyphs,
    list_datasets,
    load_dataset,
    mnist_like,
    parse_ref,
    patches,
    to_input_spec,
)
from metasae.data.cifar import parse_records
from metasae.data.dsprites import git_blob_sha1, read_rows
from metasae.data.idx import parse_idx
from metasae.data.refs import DatasetRef, slice_bounds
from metasae.errors import MetasaeError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data beside the checkout
needs_shared_mnist = pytest.mark.skipif(
    not (SHARED / "MNIST" / "raw").is_dir(), reason=f"real MNIST test split not present at {SHARED}"
)


def sha(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


def idx_bytes(arr: np.ndarray) -> bytes:
    code = {np.uint8: 0x08, np.int32: 0x0C}[arr.dtype.type]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


# --- references -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ref, expected",
    [
        ("mnist:test[:8000]", DatasetRef("mnist", "test", None, 8000)),
        ("mnist:test[8000:]", DatasetRef("mnist", "test", 8000, None)),
        ("digits:train", DatasetRef("digits", "train", None, None)),
        ("glyphs", DatasetRef("glyphs", "train", None, None)),
        ("dsprites_gen:sample[4000:5000]", DatasetRef("dsprites_gen", "sample", 4000, 5000)),
        ("emnist_letters[3:7]", DatasetRef("emnist_letters", "train", 3, 7)),
    ],
)
def test_parse_ref_good(ref, expected):
    assert parse_ref(ref) == expected


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "MNIST",
        "mnist:",
        "mnist:test[",
        "mnist:test[1]",
        "mnist:test[-5:]",
        "mnist:test[:8000]x",
        "mnist test",
        "mnist:test:val",
        "1mnist",
        "mnist;rm",
    ],
)
def test_parse_ref_bad_gives_one_line_with_grammar(ref):
    with pytest.raises(MetasaeError, match=r"expected name\[:split\]") as err:
        parse_ref(ref)
    assert "\n" not in str(err.value)


@given(
    st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
    st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True),
    st.one_of(st.none(), st.integers(0, 10**6)),
    st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_canonical_ref_round_trips(name, split, start, stop):
    ref = DatasetRef(name, split, start, stop)
    assert parse_ref(str(ref)) == ref


def test_slice_bounds_rejects_empty_and_out_of_range():
    assert slice_bounds(parse_ref("x:test[8000:]"), 10000) == (8000, 10000)
    for bad in ("x:test[:10001]", "x:test[5:5]", "x:test[7:3]", "x:test[10000:]"):
        with pytest.raises(MetasaeError, match="out of range"):
            slice_bounds(parse_ref(bad), 10000)


# --- input-spec conversion ----------------------------------------------------------------------------------


def test_one_to_three_channels_repeats():
    x = torch.rand(2, 1, 5, 5)
    y = to_input_spec(x, InputSpec(3, 5, 5))
    assert y.shape == (2, 3, 5, 5) and all(torch.equal(y[:, c], x[:, 0]) for c in range(3))


def test_three_to_one_channel_is_bt601_luma():
    x = torch.zeros(3, 3, 1, 1)
    x[0, 0], x[1, 1], x[2, 2] = 1.0, 1.0, 1.0  # pure red, green, blue
    y = to_input_spec(x, InputSpec(1, 1, 1)).flatten()
    assert torch.allclose(y, torch.tensor([0.299, 0.587, 0.114]))


@given(st.integers(1, 3), st.integers(4, 40), st.integers(4, 40))
@settings(max_examples=25, deadline=None)
def test_grey_survives_three_channel_round_trip_and_resize_keeps_range(n, h, w):
    x = torch.rand(n, 1, 12, 12, generator=torch.Generator().manual_seed(n * h * w))
    back = to_input_spec(to_input_spec(x, InputSpec(3, 12, 12)), InputSpec(1, 12, 12))
    assert torch.allclose(back, x, atol=1e-6)
    y = to_input_spec(x, InputSpec(1, h, w))
    assert y.shape == (n, 1, h, w) and y.min() >= 0 and y.max() <= 1


def test_resize_of_constant_image_is_constant_and_same_spec_is_identity():
    x = torch.full((1, 3, 32, 32), 0.25)
    assert torch.allclose(to_input_spec(x, InputSpec(3, 28, 28)), torch.full((1, 3, 28, 28), 0.25))
    assert to_input_spec(x, InputSpec(3, 32, 32)) is x


@pytest.mark.parametrize(
    "shape, spec",
    [((1, 2, 4, 4), InputSpec(3, 4, 4)), ((1, 3, 4, 4), InputSpec(4, 4, 4)), ((3, 4, 4), InputSpec(3, 4, 4))],
)
def test_unsupported_conversions_are_errors(shape, spec):
    with pytest.raises(MetasaeError, match="images"):
        to_input_spec(torch.zeros(shape), spec)


# --- registry and embedded datasets -------------------------------------------------------------------------


def test_registry_lists_every_dataset_with_its_kind():
    listed = list_datasets()
    real = {
        "mnist",
        "fashion_mnist",
        "kmnist",
        "qmnist",
        "emnist_balanced",
        "emnist_letters",
        "emnist_digits",
        "cifar10",
        "cifar100",
        "dsprites",
    }
    embedded = {"digits", "glyphs", "patches", "dsprites_gen"}
    assert set(listed) == real | embedded
    assert all(listed[n].startswith("[real]") for n in real)
    assert all(listed[n].startswith("[embedded]") for n in embedded)


def test_cli_lists_datasets(capsys):
    assert main(["datasets"]) == 0
    assert "glyphs" in capsys.readouterr().out


@pytest.mark.parametrize(
    "ref, shape, n_labels",
    [
        ("digits:test[:50]", (50, 1, 28, 28), 10),
        ("glyphs:test[:94]", (94, 1, 28, 28), 47),
        ("patches:test[:16]", (16, 3, 32, 32), 8),
        ("dsprites_gen:sample[:64]", (64, 1, 64, 64), 3),
    ],
)
def test_embedded_shapes_dtypes_ranges(ref, shape, n_labels):
    d = load_dataset(ref)
    assert d.images.shape == shape and d.images.dtype == torch.float32
    assert d.labels.dtype == torch.int64 and d.index.dtype == torch.int64 and len(d.index) == shape[0]
    assert d.images.min() >= 0 and d.images.max() <= 1 and d.images.std() > 0.05
    assert len(d.label_names) == n_labels and int(d.labels.max()) < n_labels
    assert not d.is_real and d.description.startswith("embedded") and d.ref == str(parse_ref(ref))
    assert d.spec == InputSpec(*shape[1:])


def test_embedded_generation_is_deterministic_across_fresh_generations():
    first = {r: sha(load_dataset(r).images) for r in ("glyphs:test", "patches:test")}
    glyphs._generate.cache_clear()
    glyphs._base.cache_clear()
    patches._generate.cache_clear()
    patches._photos.cache_clear()
    assert first == {r: sha(load_dataset(r).images) for r in ("glyphs:test", "patches:test")}
    assert sha(dsprites_gen.render(torch.arange(50))) == sha(dsprites_gen.render(torch.arange(50)))


def test_bundled_files_read_as_scikit_learn_loads_them():
    """The embedded digits and patches read scikit-learn's files without importing it: the same arrays."""
    from sklearn.datasets import load_digits, load_sample_images

    from metasae.data.sklearn_files import digits_arrays, sample_image

    images, labels = digits_arrays()
    reference = load_digits()
    assert np.array_equal(images, reference.images) and np.array_equal(labels, reference.target)
    photos = load_sample_images()
    for name, image in zip(photos.filenames, photos.images, strict=True):
        assert np.array_equal(sample_image(Path(name).stem), image)


def test_missing_bundled_file_is_a_clear_error():
    from metasae.data.sklearn_files import sklearn_file

    with pytest.raises(MetasaeError, match="no bundled file datasets/data/none.csv"):
        sklearn_file("datasets/data/none.csv")


def test_class_balance():
    for ref, per_class in (
        ("glyphs:train", 60),
        ("glyphs:test", 20),
        ("patches:train", 250),
        ("patches:test", 60),
    ):
        counts = torch.bincount(load_dataset(ref).labels)
        assert counts.tolist() == [per_class] * len(counts), ref
    train, test = load_dataset("digits:train").labels, load_dataset("digits:test").labels
    assert len(train) + len(test) == 1797
    frac = torch.bincount(test) / (torch.bincount(test) + torch.bincount(train))
    assert ((frac - 0.2).abs() < 0.02).all()


def test_glyph_test_split_differs_from_train():
    a, b = load_dataset("glyphs:train[:47]").images, load_dataset("glyphs:test[:47]").images
    assert not torch.equal(a, b)


def test_patch_splits_come_from_disjoint_regions():
    h, w = patches._photos().shape[2:]
    for label in range(len(patches.LABEL_NAMES)):
        top, left, rh, rw = patches._region(label, "train", h, w)
        t_top, t_left, t_rh, t_rw = patches._region(label, "test", h, w)
        assert top == t_top and left + rw == t_left and min(rw, t_rw) >= patches.PATCH


def test_slices_keep_index_and_pixels():
    full = load_dataset("digits:test")
    part = load_dataset("digits:test[10:20]")
    assert part.index.tolist() == list(range(10, 20))
    assert torch.equal(part.images, full.images[10:20]) and torch.equal(part.labels, full.labels[10:20])


def test_unknown_split_and_name_are_errors():
    with pytest.raises(MetasaeError, match="allowed: grid, sample"):
        load_dataset("dsprites_gen")
    with pytest.raises(MetasaeError, match="unknown dataset 'nope'"):
        load_dataset("nope:train")


# --- dSprites grid and the procedural replica ---------------------------------------------------------------


@given(st.integers(0, 2), st.integers(0, 5), st.integers(0, 39), st.integers(0, 31), st.integers(0, 31))
def test_grid_index_formula(shape, scale, orient, x, y):
    idx = shape * 245760 + scale * 40960 + orient * 1024 + x * 32 + y
    classes = torch.tensor([[shape, scale, orient, x, y]])
    assert dsprites_grid.index_of(classes).item() == idx
    assert dsprites_grid.classes_of(torch.tensor([idx])).tolist() == classes.tolist()


def test_dsprites_gen_splits_and_factors():
    a = load_dataset("dsprites_gen:sample[:4000]")
    b = load_dataset("dsprites_gen:sample[4000:5000]")
    assert len(set(a.index.tolist())) == 4000 and not set(a.index.tolist()) & set(b.index.tolist())
    assert a.index.min() >= 0 and a.index.max() < 737280
    rebuilt = dsprites_grid.index_of(torch.stack([a.factors[f] for f in dsprites_grid.FACTORS], 1))
    assert torch.equal(rebuilt, a.index) and torch.equal(a.labels, a.factors["shape"])
    assert torch.allclose(a.factors["scale_value"], 0.5 + 0.1 * a.factors["scale"].double())
    assert set(a.images.unique().tolist()) == {0.0, 1.0}
    assert (a.images.flatten(1).var(dim=1) > 0).all()  # every sprite drawn, none fills the canvas
    assert torch.bincount(a.labels).min() > 1200  # a random subsample covers all shapes
    g = load_dataset("dsprites_gen:grid[245760:245770]")
    assert g.index.tolist() == list(range(245760, 245770)) and (g.labels == 1).all()
    same = torch.nonzero(a.index == a.index[7]).item()
    assert torch.equal(dsprites_gen.render(a.index[7:8]), a.images[same : same + 1])


def test_square_area_matches_hand_computation():
    # scale 1 square at orientation 0: side 2 * 0.16 * 64 = 20.48 px, so 20 or 21 pixel centres per side
    idx = torch.tensor([0 * 245760 + 5 * 40960 + 0 * 1024 + 16 * 32 + 16])
    area = dsprites_gen.render(idx).sum().item()
    assert 20 * 20 <= area <= 21 * 21
    small = dsprites_gen.render(idx - 5 * 40960).sum().item()  # scale 0.5: side 10.24 px
    assert 10 * 10 <= small <= 11 * 11


# --- real-data readers on synthetic files -------------------------------------------------------------------


def test_parse_idx_hand_built_and_truncated():
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(parse_idx(idx_bytes(arr), "x"), arr)
    labels = np.array([[7, 1], [3, 2]], dtype=np.int32)
    assert parse_idx(idx_bytes(labels), "y").tolist() == [[7, 1], [3, 2]]
    with pytest.raises(MetasaeError, match="truncated"):
        parse_idx(idx_bytes(arr)[:-1], "x")
    with pytest.raises(MetasaeError, match="magic"):
        parse_idx(b"\x01\x02\x08\x01", "x")


def test_missing_dataset_error_names_paths_and_fetch(tmp_path):
    with pytest.raises(MetasaeError) as err:
        load_dataset("fashion_mnist:test", data_dir=tmp_path)
    msg = str(err.value)
    assert "'fashion_mnist'" in msg and str(tmp_path / "FashionMNIST" / "raw") in msg
    assert "metasae fetch-data --dataset fashion_mnist" in msg and "\n" not in msg


def test_corrupt_file_is_a_checksum_error(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros((2, 28, 28), np.uint8))))
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(2, np.uint8))))
    with pytest.raises(MetasaeError, match="checksum mismatch"):
        load_dataset("mnist:test", data_dir=tmp_path)


def test_emnist_loose_files_transpose_and_letter_names(tmp_path):
    raw = tmp_path / "EMNIST" / "raw"
    raw.mkdir(parents=True)
    img = np.zeros((2, 28, 28), np.uint8)
    img[:, 0, 5] = 255  # stored column-major: a mark at row 0, column 5 belongs at row 5, column 0
    (raw / "emnist-letters-test-images-idx3-ubyte").write_bytes(idx_bytes(img))
    (raw / "emnist-letters-test-labels-idx1-ubyte").write_bytes(idx_bytes(np.array([1, 26], np.uint8)))
    d = load_dataset("emnist_letters:test", data_dir=tmp_path)
    assert d.images[0, 0, 5, 0] == 1.0 and d.images[0, 0, 0, 5] == 0.0
    assert [d.label_names[i] for i in d.labels] == ["a", "z"] and "format-checked only" in d.description
    with pytest.raises(MetasaeError, match="split 'train' is missing.*splits present: test"):
        load_dataset("emnist_letters:train", data_dir=tmp_path)
    names = mnist_like.DATASETS["emnist_balanced"].label_names
    assert len(names) == 47 and names[9] == "9" and names[10] == "A" and names[36:] == tuple("abdefghnqrt")


def test_emnist_zip_is_checked_against_official_md5(tmp_path):
    raw = tmp_path / "EMNIST" / "raw"
    raw.mkdir(parents=True)
    with zipfile.ZipFile(raw / "gzip.zip", "w") as zf:
        zf.writestr("gzip/emnist-digits-test-images-idx3-ubyte.gz", gzip.compress(b"x"))
    with pytest.raises(MetasaeError, match="gzip.zip: checksum mismatch"):
        load_dataset("emnist_digits:test", data_dir=tmp_path)


def _cifar_record(label: int, fill: int, label_bytes: int = 1) -> bytes:
    return bytes([0] * (label_bytes - 1) + [label]) + bytes([fill]) * 1024 + bytes([0]) * 2048


def test_cifar_binary_records_and_split_errors(tmp_path):
    images, labels = parse_records(_cifar_record(3, 255) + _cifar_record(9, 0), 1, "t")
    assert labels.tolist() == [3, 9] and images.shape == (2, 3, 32, 32)
    assert images[0, 0].min() == 255 and images[0, 1:].max() == 0  # first plane is red
    _, fine = parse_records(_cifar_record(42, 1, label_bytes=2), 2, "t")
    assert fine.tolist() == [42]
    with pytest.raises(MetasaeError, match="whole number"):
        parse_records(b"\x00" * 100, 1, "t")
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    (folder / "test_batch.bin").write_bytes(_cifar_record(3, 255) * 4)
    d = load_dataset("cifar10:test[1:3]", data_dir=tmp_path)
    assert (
        d.index.tolist() == [1, 2]
        and d.label_names[d.labels[0]] == "cat"
        and d.images.shape == (2, 3, 32, 32)
    )
    with pytest.raises(MetasaeError, match="split 'train' is missing.*data_batch_1.bin"):
        load_dataset("cifar10:train", data_dir=tmp_path)
    with tarfile.open(tmp_path / "cifar-100-binary.tar.gz", "w:gz") as tar:
        tar.addfile(tarfile.TarInfo("cifar-100-binary/test.bin"), io.BytesIO(b""))
    with pytest.raises(MetasaeError, match="checksum mismatch"):
        load_dataset("cifar100:test", data_dir=tmp_path)


def test_dsprites_reader_streams_only_requested_rows(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 2, (9000, 4, 4), dtype=np.uint8)
    np.savez_compressed(tmp_path / "x.npz", imgs=imgs)
    rows = torch.tensor([8999, 3, 4096, 5, 0, 8191, 8192])
    assert np.array_equal(read_rows(tmp_path / "x.npz", rows), imgs[rows.numpy()])


def test_dsprites_integrity_uses_git_blob_id(tmp_path):
    (tmp_path / "hello").write_bytes(b"hello\n")
    assert (
        git_blob_sha1(tmp_path / "hello") == "ce013625030ba8dba906f756967f9e9ca394464a"
    )  # `git hash-object`
    (tmp_path / "dsprites").mkdir()
    np.savez_compressed(
        tmp_path / "dsprites" / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
        imgs=np.zeros((1, 64, 64), np.uint8),
    )
    with pytest.raises(MetasaeError, match="git blob sha1"):
        load_dataset("dsprites:grid[:1]", data_dir=tmp_path)


# --- the real MNIST test split on this machine --------------------------------------------------------------


@pytest.mark.real_data
@needs_shared_mnist
def test_real_mnist_test_split():
    d = load_dataset("mnist:test[:100]", data_dir=SHARED)
    assert d.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert d.is_real and "md5-verified" in d.description and d.images.shape == (100, 1, 28, 28)
    assert d.images.min() == 0 and d.images.max() == 1
    tail = load_dataset("mnist:test[8000:]", data_dir=SHARED)
    assert tail.index.tolist() == list(range(8000, 10000))
    full = load_dataset("mnist:test", data_dir=SHARED)
    assert torch.bincount(full.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert torch.equal(full.images[8000:], tail.images)


@pytest.mark.real_data
@needs_shared_mnist
def test_real_mnist_missing_train_split_is_named(tmp_path):
    raw = tmp_path / "MNIST" / "raw"  # a copy that holds only the test split
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (raw / name).symlink_to((SHARED / "MNIST" / "raw" / name).resolve())
    with pytest.raises(
        MetasaeError, match=r"split 'train' is missing.*train-images-idx3-ubyte.*splits present: test"
    ):
        load_dataset("mnist:train", data_dir=tmp_path)


@pytest.mark.real_data
@needs_shared_mnist
def test_real_mnist_train_and_fashion_splits():
    train = load_dataset("mnist:train[:10]", data_dir=SHARED)
    assert train.is_real and train.images.shape == (10, 1, 28, 28)
    fashion = load_dataset("fashion_mnist:test[:10]", data_dir=SHARED)
    assert fashion.is_real and len(fashion.label_names) == 10
