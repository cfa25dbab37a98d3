"""`metasae A ... --then B ...`: the workflow's chains of depths run as several commands in one process."""

from __future__ import annotations

import pytest

from metasae.cli import main, split_commands


def test_split_commands():
    assert split_commands(["--threads", "1", "a", "-x", "--then", "b", "--then", "c", "y"]) == [
        ["--threads", "1", "a", "-x"],
        ["b"],
        ["c", "y"],
    ]
    assert split_commands(["a"]) == [["a"]]


def test_commands_run_in_order_and_the_first_failure_stops_the_chain(tmp_path, capsys):
    assert main(["datasets", "--then", "datasets"]) == 0
    out, err = capsys.readouterr()
    listing = out[: len(out) // 2]
    assert out == listing * 2 and listing
    assert "command 1 of 2: datasets" in err and "command 2 of 2: datasets" in err
    missing = ["analyse", "--depth-dir", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]
    assert main(["datasets", "--then", *missing, "--then", "datasets"]) == 2
    out, err = capsys.readouterr()
    assert out == listing  # the third command did not run
    assert "nope/metrics.json: file not found" in err and "command 3 of 3" not in err


def test_every_command_is_parsed_before_the_first_runs(capsys):
    with pytest.raises(SystemExit):
        main(["datasets", "--then", "analyse", "--no-such-flag"])
    assert capsys.readouterr().out == ""


def test_an_eval_cache_goes_with_a_trained_depth_1_only(tmp_path, capsys):
    spec = '{"architecture": "topk", "width": 4, "k": 1, "epochs": 1}'
    base = ["train-sae", "--spec", spec, "--out", str(tmp_path / "out"), "--eval-acts", str(tmp_path / "e")]
    for source in (
        ["--parent", str(tmp_path / "p"), "--mode", "activations", "--depth", "2"],
        ["--acts", str(tmp_path / "a"), "--apply", str(tmp_path / "s")],
    ):
        assert main([*base, *source]) == 2
        assert "--eval-acts goes with --acts" in capsys.readouterr().err
