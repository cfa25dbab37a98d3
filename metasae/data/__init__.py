"""Dataset registry: real datasets (official files, checksummed, read from a local folder) and embedded
ones (generated offline, deterministic), all as `ImageDataset` float images in [0, 1]."""

from metasae.data.convert import to_input_spec
from metasae.data.refs import DatasetRef, parse_ref
from metasae.data.registry import list_datasets, load_dataset
from metasae.data.types import ImageDataset, InputSpec

__all__ = [
    "DatasetRef",
    "ImageDataset",
    "InputSpec",
    "list_datasets",
    "load_dataset",
    "parse_ref",
    "to_input_spec",
]
