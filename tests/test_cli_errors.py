"""Issue 24 (low): ``confroute evaluate`` ends every user error in one line, never a traceback."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from confroute.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cli-errors")
    texts = ["good film", "bad film", "great plot", "awful plot"] * 10
    labels = [1, 0, 1, 0] * 10
    path = d / "m.pkl"
    path.write_bytes(pickle.dumps(make_pipeline(CountVectorizer(), LogisticRegression()).fit(texts, labels)))
    return path


def _dev(path: Path, texts: list[str], encoding: str = "utf-8") -> Path:
    path.write_bytes(("sentence\tlabel\n" + "".join(f"{t}\t{i % 2}\n" for i, t in enumerate(texts))).encode(encoding))
    return path


def _evaluate(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["evaluate", *argv, "--progress", "off", "--allow-pickle", "--no-plots", "--thresholds", "0.7"])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_a_text_field_over_131072_characters_is_read(model, tmp_path, capsys):
    dev = _dev(tmp_path / "dev.tsv", ["good film " * 20_000] + ["bad film", "great plot", "awful plot"] * 6)
    rc, _, err = _evaluate(capsys, f"sklearn:{model}", f"sklearn:{model}", str(dev), "--out", str(tmp_path / "o"))
    assert rc == 0, err
    from confroute import load_texts

    texts, _ = load_texts(dev)
    assert len(texts[0]) == 200_000


def test_a_text_file_given_as_joblib_is_one_clear_line(model, tmp_path, capsys):
    pytest.importorskip("joblib")
    text = tmp_path / "model.joblib"
    text.write_text("this is not a model\n")
    dev = _dev(tmp_path / "dev.tsv", ["good film", "bad film"])
    rc, _, err = _evaluate(capsys, f"joblib:{text}", f"sklearn:{model}", str(dev), "--out", str(tmp_path / "o"))
    assert rc == 2
    assert err.startswith(f"confroute evaluate: error: primary model: cannot load {text} with joblib")
    assert err.count("\n") == 1


def test_an_out_that_cannot_be_created_is_refused_before_the_models_run(model, tmp_path, capsys):
    dev = _dev(tmp_path / "dev.tsv", ["good film", "bad film"])
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    rc, out, err = _evaluate(capsys, f"sklearn:{model}", f"sklearn:{model}", str(dev), "--out", str(blocker / "out"))
    assert rc == 2 and out == ""  # nothing ran (no measurement printed)
    assert f"--out {blocker / 'out'} cannot be created: {blocker} is not a directory" in err


def test_a_decode_error_names_the_file(model, tmp_path, capsys):
    dev = _dev(tmp_path / "dev.tsv", ["café noir", "bad film"], encoding="latin-1")
    rc, _, err = _evaluate(capsys, f"sklearn:{model}", f"sklearn:{model}", str(dev), "--out", str(tmp_path / "o"))
    assert rc == 2 and str(dev) in err and "utf-8" in err and err.count("\n") == 1


def test_sigint_exits_130_with_one_line(tmp_path):
    sys.path.insert(0, str(ROOT / "tests"))
    from _sigint_model import SelfInterrupting

    (tmp_path / "stop.pkl").write_bytes(pickle.dumps(SelfInterrupting()))
    dev = _dev(tmp_path / "dev.tsv", ["good film", "bad film"])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")])}
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from confroute.cli import main; sys.exit(main())", "evaluate",
         f"sklearn:{tmp_path / 'stop.pkl'}", f"sklearn:{tmp_path / 'stop.pkl'}", str(dev), "--allow-pickle",
         "--progress", "off", "--no-plots", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr == "confroute: interrupted\n"
