"""``confroute evaluate --calibration cross-fit:K`` (the default without a calibration file) and
``--calibration none`` on toy scikit-learn models: the CLI's figures are the library's."""

from __future__ import annotations

import csv
import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from test_cli_evaluate import NEG, POS, _toy, _write_tsv

from confroute.cli import main
from confroute.cli.evaluate import CLIError, parse_calibration
from confroute.core.types import Predictions
from confroute.integrations.io import load_texts
from confroute.selection.crossfit import cross_fit_thresholds


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli-crossfit")
    x, y = _toy(600, 0)
    cheap = make_pipeline(CountVectorizer(vocabulary=POS[:3] + NEG[:3]), LogisticRegression(C=0.3)).fit(x, y)
    big = make_pipeline(TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression(C=20.0)).fit(x, y)
    paths = {"cheap": d / "cheap.pkl", "big": d / "big.pkl", "dir": d}
    paths["cheap"].write_bytes(pickle.dumps(cheap))
    paths["big"].write_bytes(pickle.dumps(big))
    paths["dev"] = _write_tsv(d / "dev.tsv", *_toy(800, 1))
    paths["train"] = _write_tsv(d / "train.tsv", x, y)
    return paths


def _run(toy: dict[str, Path], out: Path, *extra: str) -> int:
    return main(["evaluate", f"sklearn:{toy['cheap']}", f"sklearn:{toy['big']}", str(toy["dev"]),
                 "--cost", "per-sample:1,5", "--out", str(out), "--no-plots", "--progress", "off",
                 "--allow-pickle", *extra])  # the toy models are pickles this test wrote itself


def test_parse_calibration():
    assert parse_calibration(None).kind == "cross-fit" and parse_calibration(None).folds == 5
    assert parse_calibration("cross-fit").folds == 5 and parse_calibration("crossfit:3").folds == 3
    assert parse_calibration("none").kind == "none"
    assert parse_calibration("a:b.tsv").path == "a:b.tsv"
    for bad in ("cross-fit:1", "cross-fit:x"):
        with pytest.raises(CLIError, match="cross-fit:K with K >= 2"):
            parse_calibration(bad)


def test_default_is_cross_fit_and_matches_the_library(toy, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(toy, out, "--target-relative-accuracy", "0.97", "--seed", "3") == 0
    printed = capsys.readouterr().out
    assert "no --calibration given, so temperature scaling and thresholds are cross-fitted on DATA itself" in printed
    assert "chosen on DATA by cross-fitting (5 folds), then refitted on all of DATA" in printed
    assert "on calibration data" not in printed and "on all of DATA (target" in printed
    doc = json.loads((out / "results.json").read_text())
    assert doc["calibration_mode"]["mode"] == "cross-fit" and doc["calibration_mode"]["seed"] == 3
    # The same cross-fit through the library, from the same predictions.
    texts, y = load_texts(toy["dev"], text_column="sentence", label_column="label")
    cheap, big = (pickle.loads(toy[k].read_bytes()) for k in ("cheap", "big"))
    pp = Predictions.from_probs(cheap.predict_proba(texts))
    fb = big.predict_proba(texts).argmax(axis=1)
    cf = cross_fit_thresholds(y, pp, fb, target_relative_accuracy=0.97, cost_model=[1, 5], random_state=3)
    (choice,) = doc["choices"]
    assert choice["threshold"] == pytest.approx(cf.final.threshold)
    assert choice["cross_fit"]["coverage"] == pytest.approx(cf.coverage)
    assert choice["cross_fit"]["system_accuracy"] == pytest.approx(cf.system_accuracy)
    assert choice["on_data"]["coverage"] == pytest.approx(cf.coverage)
    assert choice["on_data"]["savings"] == pytest.approx(cf.savings)
    assert doc["calibration_mode"]["temperatures"] == pytest.approx([f.temperature for f in cf.folds])
    assert doc["temperature"] == pytest.approx(cf.final_temperature)
    # The table's ECE is the pooled out-of-fold one.
    assert doc["summary"]["ece"] == pytest.approx(cf.ece_after)
    assert doc["summary"]["ece_before_calibration"] == pytest.approx(cf.ece_before)
    if cf.usable:
        assert f"answer: route at threshold {cf.final.threshold:.4g}" in printed
    else:
        assert "no usable threshold:" in printed


def test_unreachable_target_prints_what_would_be_needed(toy, tmp_path, capsys):
    assert _run(toy, tmp_path / "o", "--calibration", "cross-fit:4", "--target-relative-accuracy", "0.999") == 0
    printed = capsys.readouterr().out
    assert "no usable threshold: No threshold meets system / fallback accuracy >= 0.999" in printed
    assert "labelled inputs would certify it" in printed or "loosen the target" in printed.lower()


def test_none_chooses_on_data_and_says_so(toy, tmp_path, capsys):
    assert _run(toy, tmp_path / "o", "--calibration", "none", "--target-accuracy", "0.9", "--delta", "none") == 0
    printed = capsys.readouterr().out
    assert "chosen on DATA itself (optimistic: --calibration none)" in printed
    assert "on calibration data" not in printed and "cross-fitted" not in printed
    doc = json.loads((tmp_path / "o" / "results.json").read_text())
    assert doc["temperature"] is None and doc["summary"]["ece_before_calibration"] is None


def test_training_data_as_calibration_gets_a_note(toy, tmp_path, capsys):
    assert _run(toy, tmp_path / "o", "--calibration", str(toy["train"])) == 0
    printed = capsys.readouterr().out
    # The big model memorised train; the cheap one is only a little better there, so no note
    # unless the primary is clearly more accurate on the calibration split than on DATA.
    cheap = pickle.loads(toy["cheap"].read_bytes())
    tx, ty = load_texts(toy["train"], text_column="sentence", label_column="label")
    dx, dy = load_texts(toy["dev"], text_column="sentence", label_column="label")
    gap = np.mean(cheap.predict(tx) == ty) - np.mean(cheap.predict(dx) == dy)
    assert ("the models' training data" in printed) == (gap > 0.03)


def test_training_data_note_when_primary_memorised(toy, tmp_path, capsys):
    x, y = _toy(600, 0)
    memo = make_pipeline(TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression(C=50.0)).fit(x, y)
    path = toy["dir"] / "memo.pkl"
    path.write_bytes(pickle.dumps(memo))
    rc = main(["evaluate", f"sklearn:{path}", f"sklearn:{toy['big']}", str(toy["dev"]), "--calibration",
               str(toy["train"]), "--out", str(tmp_path / "o"), "--no-plots", "--progress", "off", "--allow-pickle"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "note: PRIMARY is right on" in printed and "--calibration cross-fit:5" in printed


def test_sweep_csv_writes_inf(toy, tmp_path, capsys):
    assert _run(toy, tmp_path / "o", "--thresholds", "all") == 0
    capsys.readouterr()
    for name in ("sweep.csv", "table.csv"):
        with open(tmp_path / "o" / name, newline="") as fh:
            first = next(csv.DictReader(fh))
        assert first["threshold"] == "inf" and float(first["threshold"]) == math.inf
        assert first["coverage"] == "0.0"
    pd = pytest.importorskip("pandas")
    df = pd.read_csv(tmp_path / "o" / "sweep.csv")
    assert np.isinf(df["threshold"].iloc[0]) and df["threshold"].iloc[1:].between(0, 1).all()


def test_cross_fit_coverage_target_matches_the_library(toy, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(toy, out, "--target-coverage", "0.6", "--calibration", "cross-fit:4") == 0
    capsys.readouterr()
    texts, y = load_texts(toy["dev"], text_column="sentence", label_column="label")
    cheap, big = (pickle.loads(toy[k].read_bytes()) for k in ("cheap", "big"))
    pp = Predictions.from_probs(cheap.predict_proba(texts))
    fb = big.predict_proba(texts).argmax(axis=1)
    cf = cross_fit_thresholds(y, pp, fb, target_coverage=0.6, cost_model=[1, 5], n_folds=4, random_state=0)
    (choice,) = json.loads((out / "results.json").read_text())["choices"]
    assert choice["objective"] == "coverage" and choice["threshold"] == pytest.approx(cf.final.threshold)
    assert choice["cross_fit"]["coverage"] == pytest.approx(cf.coverage)
