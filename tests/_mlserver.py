"""A real MLServer for tests: started from its own venv on free loopback ports (see tools/mlserver)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools" / "mlserver"))

from launch import MLServerProcess, mlserver_executable  # noqa: E402

sys.path.insert(0, str(ROOT / "tests" / "predictors"))
from _tiny_bert import shared_dir  # noqa: E402

SHARED = shared_dir()
MINILM = SHARED / "models" / "minilm-sst2-pruned80"
MPNET = SHARED / "models" / "mpnet-sst2-int8"
SST2_DEV = SHARED / "data" / "sst2" / "dev.tsv"


def need_mlserver() -> None:
    if mlserver_executable() is None:
        pytest.skip("MLServer venv not built: bash tools/mlserver_venv.sh (tools/run.sh test builds it)")
    for path in (MINILM, MPNET, SST2_DEV):
        if not path.exists():
            pytest.skip(f"shared assets not found: {path} (set CONFROUTE_SHARED to their folder)")


def sst2_dev(n: int) -> list[str]:
    """The first ``n`` SST-2 dev sentences."""
    lines = SST2_DEV.read_text(encoding="utf-8").splitlines()[1:]
    return [line.split("\t")[0] for line in lines[:n]]


def start(models: dict[str, Path], **kwargs: object) -> MLServerProcess:
    need_mlserver()
    return MLServerProcess(models, **kwargs).start()  # type: ignore[arg-type]
