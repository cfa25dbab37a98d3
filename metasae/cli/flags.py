"""Flag helpers shared by the subcommands: JSON blocks, the seed/device pair, a spec with flags on top."""

from __future__ import annotations

import argparse

from metasae import settings


def json_object(text: str) -> dict:
    """A JSON object flag (the workflow passes config blocks whole); bad JSON is a one-line error."""
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def add_common_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="run seed (recorded in every artefact)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, ...")


def merged_spec(a: argparse.Namespace) -> dict:
    """--spec with any setting flag given on top of it (a schedule flag updates --spec's schedule)."""
    given = settings.flags_to_dict(a)
    if isinstance(given.get("width"), dict) and isinstance(a.spec.get("width"), dict):
        given["width"] = {**a.spec["width"], **given["width"]}
    return {**a.spec, **given}
