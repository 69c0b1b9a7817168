"""``confroute evaluate``: spec parsing, errors that name the problem, and numbers that match the
library; plus one run on a slice of SST-2 dev with the shared models (skipped without ../shared)."""

from __future__ import annotations

import csv
import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from _helpers import SHARED, shared_models_reason
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from confroute.cli.evaluate import CLIError, parse_backend, parse_cost, parse_thresholds
from confroute.calibration.calibrators import TemperatureScaler
from confroute.cli import main
from confroute.evaluation.evaluate import evaluate


POS = ["good", "great", "lovely", "fine", "superb", "witty"]
NEG = ["bad", "dull", "awful", "poor", "boring", "flat"]
NEUTRAL = ["film", "plot", "actor", "scene", "story", "the", "a", "movie", "script", "music"]


def _toy(n: int, seed: int) -> tuple[list[str], list[int]]:
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        y = int(rng.random() < 0.5)
        k = int(rng.integers(1, 3))
        words = list(rng.choice(POS if y else NEG, k)) + list(rng.choice(POS + NEG, int(rng.integers(0, 2))))
        words += list(rng.choice(NEUTRAL, int(rng.integers(2, 6))))
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(y if rng.random() > 0.05 else 1 - y)
    return texts, labels


def _write_tsv(path: Path, texts: list[str], labels: list, text_col: str = "sentence", label_col: str = "label") -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(f"{text_col}\t{label_col}\n")
        fh.writelines(f"{t}\t{y}\n" for t, y in zip(texts, labels))
    return path


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli-eval")
    train_x, train_y = _toy(600, 0)
    # Cheap: counts of a handful of words only; big: every word and pair, tf-idf weighted.
    cheap = make_pipeline(CountVectorizer(vocabulary=POS[:3] + NEG[:3]), LogisticRegression(C=0.3)).fit(train_x, train_y)
    big = make_pipeline(TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression(C=20.0)).fit(train_x, train_y)
    named = make_pipeline(CountVectorizer(), LogisticRegression()).fit(
        train_x, np.where(np.array(train_y) == 1, "pos", "neg"))
    paths = {"dir": d}
    for name, model in (("cheap", cheap), ("big", big), ("named", named)):
        paths[name] = d / f"{name}.pkl"
        paths[name].write_bytes(pickle.dumps(model))
    paths["dev"] = _write_tsv(d / "dev.tsv", *_toy(300, 1))
    paths["cal"] = _write_tsv(d / "cal.tsv", *_toy(300, 2))
    return paths


def _run(argv: list[str]) -> int:
    # The toy models are pickles this test wrote itself: trusted, so --allow-pickle.
    return main(["evaluate", *argv, "--progress", "off", "--allow-pickle"])


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# --------------------------------------------------------------------------- parsing
def test_parse_thresholds_forms():
    assert parse_thresholds("0.8") == [0.8]
    assert parse_thresholds("0.9, 0.5,0.9") == [0.5, 0.9]
    assert parse_thresholds("0.5:0.99:0.01")[:3] == [0.5, 0.51, 0.52]
    assert len(parse_thresholds("0.5:0.99:0.01")) == 50 and parse_thresholds("0.5:0.99:0.01")[-1] == 0.99
    assert parse_thresholds("0.1:0.3:0.1,0.95") == [0.1, 0.2, 0.3, 0.95]
    assert parse_thresholds("ALL") is None


@pytest.mark.parametrize("spec, message", [
    ("0.5:0.4:0.1", "stop >= start"),
    ("0.5:0.9", "start:stop:step"),
    ("abc", "'abc' is not a number"),
    ("1.5", "lie in [0, 1]"),
    ("", "at least one"),
    ("0:1:0", "step > 0"),
])
def test_parse_thresholds_errors(spec, message):
    with pytest.raises(CLIError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_thresholds(spec)


def test_parse_cost_forms_and_errors():
    assert parse_cost("per-sample:0.001,0.005").prices == (0.001, 0.005)
    h = parse_cost("hourly:0.5@100,1.5@10")
    assert h.prices == (0.5, 1.5) and h.throughputs == (100.0, 10.0)
    assert parse_cost("measured:0.5,0.5").prices == (0.5, 0.5)
    assert parse_cost(None) is None and parse_cost("none") is None
    for bad, msg in [("per-sample:1", "two prices"), ("hourly:0.5,1.5", "PRICE@THROUGHPUT"),
                     ("hourly:0.5@0,1@1", "throughputs > 0"), ("gpu:1,2", "use per-sample"),
                     ("measured:1", "two hourly prices")]:
        with pytest.raises(CLIError, match=msg):
            parse_cost(bad)


def test_parse_backend():
    assert parse_backend("hf:org/model").backend == "hf"
    assert parse_backend("deepsparse:zoo:nlp/x").path == "zoo:nlp/x"
    assert parse_backend("pickle:m.pkl").backend == "sklearn"
    with pytest.raises(CLIError, match=r"BACKEND:PATH with BACKEND one of \['deepsparse', 'hf', 'joblib'"):
        parse_backend("models/dense")
    with pytest.raises(CLIError, match="BACKEND:PATH"):
        parse_backend("tensorflow:model")


def test_help_reads_well(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for needle in ("PRIMARY", "FALLBACK", "DATA", "deepsparse:DIR", "0.5:0.99:0.01", "measured",
                   "--calibration", "--target-relative-accuracy", "--threads", "--batch-size", "--max-length"):
        assert needle in text


# --------------------------------------------------------------------------- runs on tiny models
def test_numbers_match_the_library(toy, tmp_path, capsys):
    out = tmp_path / "out"
    rc = _run([f"sklearn:{toy['cheap']}", f"sklearn:{toy['big']}", str(toy["dev"]),
               "--calibration", str(toy["cal"]), "--calibration-limit", "200", "--cost", "per-sample:0.001,0.005",
               "--thresholds", "0.5:0.9:0.1,0.97", "--target-relative-accuracy", "0.95", "--delta", "0.05",
               "--out", str(out), "--no-plots"])
    assert rc == 0
    printed = capsys.readouterr().out

    # The same figures computed directly with the library.
    cheap, big = pickle.loads(toy["cheap"].read_bytes()), pickle.loads(toy["big"].read_bytes())
    from confroute import SklearnPredictor, load_texts

    x, y = load_texts(toy["dev"])
    xc, yc = load_texts(toy["cal"], limit=200)
    p, f = SklearnPredictor(cheap).predict(x), SklearnPredictor(big).predict(x)
    scaler = TemperatureScaler().fit(SklearnPredictor(cheap).predict(xc).log_scores(), yc)
    ref = evaluate(labels=y, primary=p, fallback=f, calibrator=scaler, cost_model=[0.001, 0.005])

    rows = _read_csv(out / "table.csv")
    assert [float(r["threshold"]) for r in rows] == [0.5, 0.6, 0.7, 0.8, 0.9, 0.97]
    for r in rows:
        point = ref.at(float(r["threshold"]))
        assert int(r["n_accepted"]) == point.n_accepted
        assert float(r["system_accuracy"]) == pytest.approx(point.system_accuracy)
        assert float(r["savings"]) == pytest.approx(point.savings)
        cov = point.coverage
        assert float(r["cost_per_input"]) == pytest.approx(0.001 + (1 - cov) * 0.005)
    # Coverage falls as the threshold rises and the cheap model is weaker than the big one.
    covs = [float(r["coverage"]) for r in rows]
    assert covs == sorted(covs, reverse=True) and covs[0] > covs[-1]
    doc = json.loads((out / "results.json").read_text())
    acc = doc["summary"]["stage_accuracy"]
    assert acc["primary"] == pytest.approx(ref.stage_accuracy["primary"])
    assert acc["primary"] < acc["fallback"]
    assert doc["temperature"] == pytest.approx(scaler.temperature_)
    # Every distinct score is in the full sweep (plus the accept-nothing row).
    assert len(_read_csv(out / "sweep.csv")) == ref.n_thresholds
    # The threshold was chosen on the calibration split, for 0.95 x the fallback's accuracy there,
    # as choose_thresholds chooses it: the paired certificate of target_relative_accuracy.
    from confroute.selection.choose import choose_thresholds

    (choice,) = doc["choices"]
    assert choice["chosen_on"] == "the calibration split"
    cp = SklearnPredictor(cheap).predict(xc)
    cal_ev = evaluate(labels=yc, primary=cp, fallback=SklearnPredictor(big).predict(xc), calibrator=scaler,
                      cost_model=[0.001, 0.005])
    lib = choose_thresholds(cal_ev, target_relative_accuracy=0.95, delta=0.05)
    assert choice["objective"] == "relative_accuracy" and choice["target"] == 0.95
    assert choice["threshold"] == pytest.approx(lib.threshold)
    assert choice["feasible"] == bool(lib.feasible)
    big_on_cal = float(np.mean(SklearnPredictor(big).predict(xc).labels == yc))
    assert choice["empirical"] == pytest.approx(lib.empirical)
    assert choice["feasible"] and choice["system_accuracy"] >= 0.95 * big_on_cal - 1e-12
    assert choice["on_data"]["coverage"] == pytest.approx(ref.at(choice["threshold"]).coverage)
    assert "chosen on the calibration split" in printed and "system acc" in printed


def test_measured_cost_prices_by_time_and_plots(toy, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    rc = _run([f"sklearn:{toy['cheap']}", f"sklearn:{toy['big']}", str(toy["dev"]), "--cost", "measured",
               "--repeats", "2", "--thresholds", "all", "--out", str(out), "--save-predictions"])
    assert rc == 0
    doc = json.loads((out / "results.json").read_text())
    t = doc["timing"]
    assert len(t["seconds_primary"]) == 2 and len(t["seconds_fallback"]) == 2
    stages = doc["cost_model"]["stages"]
    # No prices given: an input costs the seconds it takes, from the median of the timed passes.
    assert stages[0]["per_sample"] == pytest.approx(np.median(t["seconds_primary"]) / 300)
    assert stages[1]["seconds_per_sample"] == pytest.approx(np.median(t["seconds_fallback"]) / 300)
    rows = doc["table"]
    assert rows[0]["threshold"] is None and rows[0]["coverage"] == 0.0  # "all": starts at accept-nothing
    assert rows[-1]["coverage"] == 1.0
    for name in ("summary.png", "accuracy_coverage.png", "reliability.png"):
        assert (out / name).stat().st_size > 5000
    z = np.load(out / "predictions.npz")
    assert z["primary_probs"].shape == (300, 2) and z["labels"].shape == (300,)


# --------------------------------------------------------------------------- timing you can trust
class _Clock:
    """A fake ``time.perf_counter``: it moves only when a fake model says how long a call took."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


class _TimedModel:
    """A real toy model whose pass ``k`` over DATA takes ``seconds[k]`` on the fake clock (the last
    entry for every later pass): ``[10, 1]`` is a model whose first pass warms it up."""

    def __init__(self, inner, clock: _Clock, seconds: list[float], n: int) -> None:
        self.inner, self.clock, self.seconds, self.n = inner, clock, seconds, n
        self.batch_size, self.seen = inner.batch_size, 0

    def predict(self, chunk):
        k = min(self.seen // self.n, len(self.seconds) - 1)
        self.seen += len(chunk)
        self.clock.now += self.seconds[k] * len(chunk) / self.n
        return self.inner.predict(chunk)


@pytest.fixture
def timed(monkeypatch):
    """Give the primary and the fallback pass times on a fake clock: ``timed(primary, fallback)``."""
    import importlib

    run_mod = importlib.import_module("confroute.cli.evaluate._run")
    inputs_mod = importlib.import_module("confroute.cli.evaluate._inputs")
    clock = _Clock()
    monkeypatch.setattr(inputs_mod, "time", clock)
    real_load = run_mod.load_predictor

    def install(primary: list[float], fallback: list[float]) -> None:
        def load(spec, role, **kw):
            seconds = primary if role == "primary" else fallback
            return _TimedModel(real_load(spec, role, **kw), clock, seconds, 300)
        monkeypatch.setattr(run_mod, "load_predictor", load)

    return install


def _measured_run(toy, tmp_path, capsys, *extra: str) -> tuple[str, dict]:
    out = tmp_path / "out"
    rc = _run([f"sklearn:{toy['cheap']}", f"sklearn:{toy['big']}", str(toy["dev"]), "--cost", "measured",
               "--calibration", "none", "--target-relative-accuracy", "0.9", "--thresholds", "0.6,0.8",
               "--out", str(out), "--no-plots", *extra])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    return printed, json.loads((out / "results.json").read_text())


def test_measured_cost_warms_up_untimed_then_times_three_passes(toy, tmp_path, capsys, timed):
    # DeepSparse-like: the first pass compiles (10 s), then 1 s a pass; the fallback a steady 3 s.
    timed([10.0, 1.0], [3.0])
    printed, doc = _measured_run(toy, tmp_path, capsys)
    t = doc["timing"]
    assert t["warmup_seconds"] == pytest.approx([10.0, 3.0])  # the warm-up pass is not timed ...
    assert t["seconds_primary"] == pytest.approx([1.0] * 3)  # ... and 3 timed passes follow by default
    assert t["seconds_fallback"] == pytest.approx([3.0] * 3)
    assert t["spread"] == pytest.approx([1.0, 1.0]) and t["reliable"] is True and t["spread_limit"] == 1.25
    assert t["settling_seconds"] == [[], []]  # steady from the first timed pass: no extra round
    stages = doc["cost_model"]["stages"]
    assert stages[0]["per_sample"] == pytest.approx(1.0 / 300)  # warm-up excluded from the price
    assert stages[1]["per_sample"] == pytest.approx(3.0 / 300)
    assert "one untimed warm-up pass per model" in printed and "median of 3 timed passes" in printed
    assert "300.0 inputs/s" in printed and "100.0 inputs/s" in printed
    assert "Pareto front" in printed and doc["cost_verdict"].startswith("Routing is")
    assert "unreliable" not in printed and "savings " in printed


def test_measured_cost_is_the_median_of_the_timed_passes(toy, tmp_path, capsys, timed):
    timed([5.0, 1.0, 1.2, 1.1, 1.05, 1.15], [3.0, 2.9, 3.1, 3.0, 3.05, 2.95])
    printed, doc = _measured_run(toy, tmp_path, capsys, "--repeats", "5")
    t = doc["timing"]
    assert t["seconds_primary"] == pytest.approx([1.0, 1.2, 1.1, 1.05, 1.15])
    assert t["median_seconds"] == pytest.approx([1.1, 3.0])
    # The price is the median pass: not the mean, not the first, not the fastest.
    assert doc["cost_model"]["stages"][0]["per_sample"] == pytest.approx(1.1 / 300)
    assert t["spread"][0] == pytest.approx(1.2) and t["reliable"] is True
    assert "range 1.00-1.20 s, spread 1.20x" in printed and "unreliable" not in printed


def test_wide_spread_says_unreliable_and_gives_no_verdict(toy, tmp_path, capsys, timed):
    # Erratic primary: 1 s, 3 s, 1 s, ... after the warm-up (a busy machine, all along); a steady
    # fallback. Three more rounds do not settle it: the last three passes still spread 3x.
    timed([2.0, 1.0, 3.0, 1.0, 3.0, 1.0, 3.0], [3.0])
    printed, doc = _measured_run(toy, tmp_path, capsys)
    t = doc["timing"]
    assert t["seconds_primary"] == pytest.approx([3.0, 1.0, 3.0]) and t["reliable"] is False
    assert t["settling_seconds"][0] == pytest.approx([1.0, 3.0, 1.0])  # 3 extra rounds, then it gives up
    assert t["spread"] == pytest.approx([3.0, 1.0])
    assert "Timing is unreliable: the timed passes of primary 1.00-3.00 s (3.00x)" in printed
    assert "accuracy-cost Pareto front" not in printed and "Routing is" not in printed
    assert "beats it" not in printed
    assert "savings not stated (timing unreliable)" in printed
    assert re.search(r"savings -?\d", printed) is None
    assert doc["cost_verdict"].startswith("Timing is unreliable")


def test_a_pass_still_warming_up_is_set_aside_and_the_timing_settles(toy, tmp_path, capsys, timed):
    # The first timed passes still hold warm-up (1 s, then 3 s), then the primary is a steady 1 s:
    # two more rounds are timed, the last three passes are kept, the first two reported apart.
    timed([2.0, 1.0, 3.0, 1.0], [3.0])
    printed, doc = _measured_run(toy, tmp_path, capsys)
    t = doc["timing"]
    assert t["seconds_primary"] == pytest.approx([1.0, 1.0, 1.0]) and t["reliable"] is True
    assert t["settling_seconds"][0] == pytest.approx([1.0, 3.0])
    assert t["settling_seconds"][1] == pytest.approx([3.0, 3.0])  # the models are timed in the same rounds
    assert "2 earlier timed passes per model set aside while the timing settled" in printed
    assert doc["cost_model"]["stages"][0]["per_sample"] == pytest.approx(1.0 / 300)
    assert "Pareto front" in printed and "unreliable" not in printed


def test_one_pass_without_measured_cost_and_with_repeats_one(toy, tmp_path, capsys, timed):
    timed([10.0, 1.0], [3.0])
    printed, doc = _measured_run(toy, tmp_path, capsys, "--repeats", "1")
    t = doc["timing"]
    assert t["warmup_seconds"] == pytest.approx([10.0, 3.0]) and t["seconds_primary"] == pytest.approx([1.0])
    assert t["spread"] == [None, None] and t["reliable"] is True  # one pass: no spread, still a verdict
    assert "Pareto front" in printed
    timed([10.0, 1.0], [3.0])
    out = tmp_path / "plain"
    assert _run([f"sklearn:{toy['cheap']}", f"sklearn:{toy['big']}", str(toy["dev"]), "--cost",
                 "per-sample:1,3", "--calibration", "none", "--out", str(out), "--no-plots"]) == 0
    t = json.loads((out / "results.json").read_text())["timing"]
    # No measured cost: one pass (warm-up included), no extra timed passes.
    assert t["seconds_primary"] == pytest.approx([10.0]) and "warmup_seconds" not in t


def test_joblib_backend_and_not_a_pickle(toy, tmp_path, capsys):
    joblib = pytest.importorskip("joblib")
    saved = tmp_path / "big.joblib"
    joblib.dump(pickle.loads(toy["big"].read_bytes()), saved)
    out = tmp_path / "out"
    assert _run([f"sklearn:{toy['cheap']}", f"joblib:{saved}", str(toy["dev"]), "--thresholds", "0.7",
                 "--out", str(out), "--no-plots"]) == 0
    doc = json.loads((out / "results.json").read_text())
    big_acc = doc["summary"]["stage_accuracy"]["fallback"]
    assert doc["fallback"] == f"joblib:{saved}" and big_acc > 0.8
    text = tmp_path / "model.pkl"
    text.write_text("not a model")
    err = _error(capsys, [f"sklearn:{text}", f"sklearn:{toy['big']}", str(toy["dev"]), "--out", str(tmp_path / "o2")])
    assert "is not a pickle" in err


def test_jsonl_columns_and_label_map(toy, tmp_path):
    x, y = _toy(120, 3)
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"review": t, "stars": "up" if v else "down"}) + "\n" for t, v in zip(x, y)))
    out = tmp_path / "out"
    rc = _run([f"sklearn:{toy['named']}", f"sklearn:{toy['named']}", str(data), "--text-column", "review",
               "--label-column", "stars", "--label-map", "up=pos,down=neg", "--thresholds", "0.5",
               "--out", str(out), "--no-plots"])
    assert rc == 0
    doc = json.loads((out / "results.json").read_text())
    assert "via --label-map" in doc["labels"]
    # Same model twice: the routed system is exactly the model.
    assert doc["table"][0]["system_accuracy"] == pytest.approx(doc["summary"]["stage_accuracy"]["primary"])
    assert doc["summary"]["stage_accuracy"]["primary"] > 0.8


# --------------------------------------------------------------------------- errors
def _error(capsys, argv: list[str]) -> str:
    assert _run(argv) == 2
    return capsys.readouterr().err


def test_error_missing_files(toy, tmp_path, capsys):
    err = _error(capsys, [f"sklearn:{toy['cheap']}", f"sklearn:{toy['big']}", str(tmp_path / "nope.tsv")])
    assert "DATA: no such file" in err and "nope.tsv" in err
    err = _error(capsys, [f"sklearn:{tmp_path / 'gone.pkl'}", f"sklearn:{toy['big']}", str(toy["dev"]),
                          "--out", str(tmp_path / "o")])
    assert "primary model: no such file or directory" in err and "gone.pkl" in err
    err = _error(capsys, [f"sklearn:{toy['cheap']}", f"sklearn:{toy['big']}", str(toy["dev"]),
                          "--calibration", str(toy["dev"])])
    assert "--calibration is DATA itself" in err


def test_error_wrong_column_names_the_columns(toy, capsys):
    err = _error(capsys, [f"sklearn:{toy['cheap']}", f"sklearn:{toy['big']}", str(toy["dev"]),
                          "--label-column", "sentiment"])
    assert "no label column 'sentiment'" in err and "['sentence', 'label']" in err
    err = _error(capsys, [f"sklearn:{toy['cheap']}", f"sklearn:{toy['big']}", str(toy["dev"]),
                          "--text-column", "review"])
    assert "no column 'review'" in err and "--text-column" in err


def test_error_labels_that_match_no_class(toy, tmp_path, capsys):
    x, _ = _toy(40, 4)
    bad = _write_tsv(tmp_path / "bad.tsv", x, ["pos", "neg", "meh", "pos"] * 10)
    err = _error(capsys, [f"sklearn:{toy['named']}", f"sklearn:{toy['named']}", str(bad), "--out", str(tmp_path / "o")])
    assert "labels ['meh'] do not match the primary's classes ['neg', 'pos']" in err
    three = _write_tsv(tmp_path / "three.tsv", x, [0, 1, 2, 1] * 10)
    err = _error(capsys, [f"sklearn:{toy['named']}", f"sklearn:{toy['named']}", str(three), "--out", str(tmp_path / "o")])
    assert "labels [2] do not match the primary's classes ['neg', 'pos']" in err and "--label-map" in err
    # Integer classes: labels match by value, so a 7 is not a class.
    seven = _write_tsv(tmp_path / "seven.tsv", x, [0, 1, 7, 1] * 10)
    err = _error(capsys, [f"sklearn:{toy['cheap']}", f"sklearn:{toy['big']}", str(seven), "--out", str(tmp_path / "o")])
    assert "labels ['7'] do not match the primary's classes ['0', '1']" in err


def test_error_fallback_with_other_classes(toy, tmp_path, capsys):
    err = _error(capsys, [f"sklearn:{toy['cheap']}", f"sklearn:{toy['named']}", str(toy["dev"]),
                          "--out", str(tmp_path / "o")])
    assert "stage 'fallback' predicts classes ['neg', 'pos'] but the earlier stages' classes are [0, 1]" in err


def test_error_bad_options(toy, capsys):
    base = [f"sklearn:{toy['cheap']}", f"sklearn:{toy['big']}", str(toy["dev"])]
    assert "--delta must lie in (0, 1)" in _error(capsys, [*base, "--delta", "2"])
    assert "--target-accuracy must lie in (0, 1)" in _error(capsys, [*base, "--target-accuracy", "97"])
    assert "give it as BACKEND:PATH" in _error(capsys, ["cheap.pkl", *base[1:]])


# --------------------------------------------------------------------------- the shared models
@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.skipif(shared_models_reason() is not None, reason=str(shared_models_reason()))
def test_cli_on_sst2_slice_with_shared_models(tmp_path, capsys):
    os.environ.setdefault("NM_DISABLE_ANALYTICS", "1")
    out = tmp_path / "out"
    rc = _run([f"deepsparse:{SHARED / 'models/minilm-sst2-pruned80'}", f"hf:{SHARED / 'models/minilm-sst2-dense'}",
               str(SHARED / "data/sst2/dev.tsv"), "--calibration", str(SHARED / "data/sst2/train.tsv"),
               "--limit", "64", "--threads", "1", "--max-length", "64", "--cost", "measured:0.5,0.5",
               "--target-relative-accuracy", "0.995", "--thresholds", "0.5:0.9:0.1",
               "--out", str(out), "--no-plots"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    doc = json.loads((out / "results.json").read_text())
    s = doc["summary"]
    assert s["n"] == 64
    assert "0=NEGATIVE, 1=POSITIVE" in doc["labels"]
    # Both models are real SST-2 classifiers (86.6% and 89.1% on all of dev).
    assert 0.75 < s["stage_accuracy"]["primary"] <= s["stage_accuracy"]["fallback"] + 0.05
    assert 0.8 < s["stage_accuracy"]["fallback"] <= 1.0
    assert 0.3 < doc["temperature"] < 5
    rows = doc["table"]
    assert [r["threshold"] for r in rows] == [0.5, 0.6, 0.7, 0.8, 0.9]
    assert rows[0]["coverage"] == 1.0  # binary max-prob is always >= 0.5
    # Same hourly price for both: savings = 1 - (t_sparse + (1 - coverage) t_dense) / t_dense.
    tp, td = (st["seconds_per_sample"] for st in doc["cost_model"]["stages"])
    for r in rows:
        assert r["savings"] == pytest.approx(1 - (tp + (1 - r["coverage"]) * td) / td)
    assert doc["choices"][0]["chosen_on"] == "the calibration split"


# --------------------------------------------------------------------------- safe files (issue 12)
def _out_args(toy, out):
    return [f"sklearn:{toy['cheap']}", f"sklearn:{toy['big']}", str(toy["dev"]), "--thresholds", "0.7",
            "--out", str(out), "--no-plots"]


def test_pickles_need_allow_pickle(toy, tmp_path, capsys):
    out = tmp_path / "out"
    for spec in (f"sklearn:{toy['cheap']}", f"pkl:{toy['cheap']}", f"joblib:{toy['cheap']}"):
        rc = main(["evaluate", spec, f"hf:{tmp_path}", str(toy["dev"]), "--out", str(out), "--progress", "off"])
        err = capsys.readouterr().err
        assert rc == 2
        assert "--allow-pickle" in err and "runs any code" in err and "primary model" in err
    assert not out.exists()


def test_out_refuses_to_overwrite_results_unless_asked(toy, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(_out_args(toy, out)) == 0
    before = (out / "results.json").read_bytes()
    err = _error(capsys, _out_args(toy, out))
    assert "already holds results" in err and "--overwrite" in err and "results.json" in err
    assert (out / "results.json").read_bytes() == before
    assert _run([*_out_args(toy, out), "--overwrite"]) == 0


def test_out_never_writes_through_a_symlink(toy, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "elsewhere.txt"
    victim.write_text("precious")
    (out / "table.csv").symlink_to(victim)
    for extra in ([], ["--overwrite"]):
        err = _error(capsys, [*_out_args(toy, out), *extra])
        assert "symlink" in err and "table.csv" in err
    assert victim.read_text() == "precious"


def test_out_is_created_only_after_the_models_load(toy, tmp_path, capsys):
    out = tmp_path / "new" / "out"
    bad = tmp_path / "model.pkl"
    bad.write_text("not a model")
    err = _error(capsys, [f"sklearn:{bad}", f"sklearn:{toy['big']}", str(toy["dev"]), "--out", str(out)])
    assert "is not a pickle" in err
    err = _error(capsys, [f"sklearn:{toy['cheap']}", f"sklearn:{toy['named']}", str(toy["dev"]), "--out", str(out)])
    assert "cannot be matched by name" in err
    assert not out.exists() and not out.parent.exists()
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert "not a directory" in _error(capsys, _out_args(toy, afile))


def test_hf_path_that_does_not_exist_is_no_such_file(toy, tmp_path, capsys):
    import time

    t0 = time.perf_counter()
    for spec in ("hf:models/not-here", f"hf:{tmp_path / 'gone'}", "hf:not-here"):
        err = _error(capsys, [spec, f"sklearn:{toy['big']}", str(toy["dev"]), "--out", str(tmp_path / "o")])
        assert "primary model: no such file or directory" in err and "hf:hub:" in err
    assert time.perf_counter() - t0 < 10  # no Hub download attempts, no retries
    assert parse_backend("hf:hub:org/model").path == "hub:org/model"


def test_version(capsys):
    import confroute

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"confroute {confroute.__version__}"


def test_huge_integer_label_is_a_clean_error(toy, tmp_path, capsys):
    x, _ = _toy(4, 5)
    data = _write_tsv(tmp_path / "huge.tsv", x, [0, 1, 10**30, 1])
    err = _error(capsys, [f"sklearn:{toy['cheap']}", f"sklearn:{toy['big']}", str(data), "--out", str(tmp_path / "o")])
    assert "row 2" in err and "1000000000000000000000000000000" in err and "Traceback" not in err


# --------------------------------------------------------------------------- one selection path (issue 21)
def test_relative_target_is_the_paired_certificate_of_choose_thresholds(toy, tmp_path):
    """``--calibration FILE --target-relative-accuracy R`` is ``choose_thresholds(ev,
    target_relative_accuracy=R, delta=D)`` on the calibration split: the paired certificate,
    not an empirical system-accuracy target of R x the fallback's accuracy."""
    from confroute import SklearnPredictor, load_texts
    from confroute.selection.choose import choose_thresholds

    out = tmp_path / "out"
    rc = _run([f"sklearn:{toy['cheap']}", f"sklearn:{toy['big']}", str(toy["dev"]),
               "--calibration", str(toy["cal"]), "--target-relative-accuracy", "0.97", "--delta", "0.05",
               "--thresholds", "0.7", "--out", str(out), "--no-plots"])
    assert rc == 0
    cheap, big = (SklearnPredictor(pickle.loads(toy[k].read_bytes())) for k in ("cheap", "big"))
    xc, yc = load_texts(toy["cal"])
    cp = cheap.predict(xc)
    scaler = TemperatureScaler().fit(cp.log_scores(), yc)
    ev = evaluate(labels=yc, primary=cp, fallback=big.predict(xc), calibrator=scaler)
    ref = choose_thresholds(ev, target_relative_accuracy=0.97, delta=0.05)
    (choice,) = json.loads((out / "results.json").read_text())["choices"]
    assert choice["objective"] == ref.objective == "relative_accuracy"
    assert choice["target"] == 0.97
    assert choice["delta"] == 0.05
    assert choice["threshold"] == pytest.approx(ref.threshold)
    assert choice["feasible"] == bool(ref.feasible)
    if ref.guaranteed is None or not np.isfinite(ref.guaranteed):
        assert choice["guaranteed"] is None
    else:
        assert choice["guaranteed"] == pytest.approx(ref.guaranteed)


def test_objective_flags_come_from_one_table(capsys):
    """Every objective flag is a row of OBJECTIVE_FLAGS: a keyword of choose_thresholds (and of
    its cross-fit), with the flag's help and the report's wording."""
    import inspect

    from confroute.cli.evaluate import OBJECTIVE_FLAGS
    from confroute.selection.choose import choose_thresholds
    from confroute.selection.objectives import KEYWORDS, OBJECTIVES

    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert set(OBJECTIVE_FLAGS) == set(OBJECTIVES)  # a flag for every objective of the table
    for dest, objective in OBJECTIVE_FLAGS.items():
        assert objective.keyword in inspect.signature(choose_thresholds).parameters
        assert objective.keyword in KEYWORDS  # what cross_fit_thresholds picks out of its **options
        assert objective.objective is OBJECTIVES[dest]  # the row of the one table
        assert "--" + dest.replace("_", "-") in text
        assert f"(the guarantee of {objective.keyword} in confroute.choose_thresholds)" in text


@pytest.mark.parametrize("flag, keyword, target", [
    ("--min-savings", "min_savings", 0.2),
    ("--max-cost-per-input", "max_cost_per_input", 3.5),
    ("--target-coverage", "target_coverage", 0.5),
    ("--max-accuracy-drop", "max_accuracy_drop", 0.02),
])
def test_every_objective_flag_is_its_choose_thresholds_keyword(toy, tmp_path, flag, keyword, target):
    from confroute import SklearnPredictor, load_texts
    from confroute.selection.choose import choose_thresholds

    out = tmp_path / "out"
    assert _run([f"sklearn:{toy['cheap']}", f"sklearn:{toy['big']}", str(toy["dev"]), "--calibration", str(toy["cal"]),
                 "--cost", "per-sample:1,5", flag, str(target), "--thresholds", "0.7", "--out", str(out),
                 "--no-plots"]) == 0
    cheap, big = (SklearnPredictor(pickle.loads(toy[k].read_bytes())) for k in ("cheap", "big"))
    xc, yc = load_texts(toy["cal"])
    cp = cheap.predict(xc)
    scaler = TemperatureScaler().fit(cp.log_scores(), yc)
    ev = evaluate(labels=yc, primary=cp, fallback=big.predict(xc), calibrator=scaler, cost_model=[1, 5])
    ref = choose_thresholds(ev, delta=0.05, **{keyword: target})
    (choice,) = json.loads((out / "results.json").read_text())["choices"]
    assert choice["objective"] == ref.objective and choice["target"] == target
    assert choice["threshold"] == pytest.approx(ref.threshold) and choice["feasible"] == bool(ref.feasible)


def test_price_objectives_need_cost(toy, capsys):
    err = _error(capsys, [f"sklearn:{toy['cheap']}", f"sklearn:{toy['big']}", str(toy["dev"]), "--min-savings", "0.2"])
    assert "--min-savings needs stage prices: give --cost" in err
