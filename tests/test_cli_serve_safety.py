"""Issue 24: ``confroute serve`` loads no pickle without an opt-in, and ``--check`` checks what it
can (the drift file, the HTTP port) before Ray starts."""

from __future__ import annotations

import pathlib
import pickle

import numpy as np
import pytest

from confroute.cli._main import main
from confroute.cli.serve import check_config, load_config
from confroute.exceptions import CLIError

pytest.importorskip("yaml")


class _Evil:
    """A pickle whose loading creates a file (what a malicious model file would do)."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def _config(folder: pathlib.Path, model: str, extra: str = "") -> pathlib.Path:
    (folder / "serve.yaml").write_text(
        f"name: toy\n{extra}stages:\n  - name: cheap\n    model: {model}\n"
        "  - name: big\n    url: http://127.0.0.1:9/\n    classes: [neg, pos]\nthresholds: [0.8]\n"
    )
    return folder / "serve.yaml"


@pytest.mark.parametrize("backend", ["sklearn", "joblib"])
def test_serve_loads_no_pickle_without_the_opt_in(tmp_path, capsys, backend):
    marker = tmp_path / "pwned"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(_Evil(marker)))
    cfg = _config(tmp_path, f"{backend}:evil.pkl")
    assert main(["serve", "--check", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "allow_pickle: true" in err and "--allow-pickle" in err and "evil.pkl" in err
    assert not marker.exists(), "the pickle ran without the opt-in"
    assert main(["serve", str(cfg)]) == 2  # the same refusal before Ray starts
    assert not marker.exists()
    with pytest.raises(CLIError, match="allow_pickle"):
        load_config(cfg)
    # With the opt-in (the flag, or the config key) the file is loaded: the refusal was the only guard.
    main(["serve", "--check", "--allow-pickle", str(cfg)])
    assert marker.exists()
    marker.unlink()
    main(["serve", "--check", str(_config(tmp_path, f"{backend}:evil.pkl", "allow_pickle: true\n"))])
    assert marker.exists()


def test_allow_pickle_must_be_a_boolean():
    with pytest.raises(CLIError, match="allow_pickle must be true or false"):
        check_config({"stages": [{"name": "a", "model": "onnx:/m"}], "allow_pickle": "yes"})


@pytest.mark.parametrize("http, message", [
    ({"port": "abc"}, "http.port must be an integer from 1 to 65535, got 'abc'"),
    ({"port": 0}, "http.port must be an integer from 1 to 65535, got 0"),
    ({"port": 70000}, "got 70000"),
    ({"port": True}, "got True"),
    ({"host": 8}, "http.host must be a string"),
])
def test_check_refuses_a_bad_http_section(http, message):
    with pytest.raises(CLIError, match=message):
        check_config({"stages": [{"name": "a", "model": "onnx:/m"}], "http": http})


def test_check_refuses_a_missing_or_unreadable_drift_file(tmp_path, capsys):
    from sklearn.linear_model import LogisticRegression

    x = np.linspace(-1, 1, 40)[:, None]
    (tmp_path / "only.pkl").write_bytes(pickle.dumps(LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))))
    cfg = tmp_path / "serve.yaml"
    cfg.write_text("name: toy\nallow_pickle: true\nstages:\n  - name: only\n    model: sklearn:only.pkl\n"
                   "drift: {reference_scores: missing.npy}\n")
    assert main(["serve", "--check", str(cfg)]) == 2
    assert f"drift.reference_scores: no such file: {tmp_path / 'missing.npy'}" in capsys.readouterr().err
    (tmp_path / "missing.npy").write_text("not numbers\n")
    assert main(["serve", "--check", str(cfg)]) == 2
    assert "drift.reference_scores: cannot read" in capsys.readouterr().err
    np.save(tmp_path / "missing.npy", np.linspace(0.5, 1.0, 200))
    assert main(["serve", "--check", str(cfg)]) == 0
