"""``confroute evaluate``, part 2: the models and the data (loading, label matching, timed predictions)."""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...core.classes import align, label_indices
from ...core.types import Predictions
from ...exceptions import ClassMismatchError, CLIError
from ._parse import OUTPUT_FILES, PICKLED, BackendSpec

__all__ = [
    "Measured",
    "check_path",
    "check_pickle_opt_in",
    "check_out",
    "load_predictor",
    "load_data",
    "match_labels",
    "align_classes",
    "progress_enabled",
    "timed_predict",
    "SPREAD_LIMIT",
    "spread_of",
]

#: The widest spread (slowest / fastest timed pass of one model) that still gives a cost verdict.
#: Above it, ``--cost measured`` reports the timing as unreliable instead of a Pareto verdict or
#: savings. Quiet runs of the README example spread 1.05-1.13x; a pass that still holds warm-up
#: (DeepSparse compiling a length bucket) is 2-3x slower than the others.
SPREAD_LIMIT = 1.25


def spread_of(seconds: Sequence[float]) -> float:
    """Slowest / fastest of the timed passes (``nan`` with fewer than two passes).

    >>> spread_of([4.1, 4.3, 4.0])
    1.075
    >>> spread_of([5.0])
    nan
    """
    if len(seconds) < 2:
        return float("nan")
    lo = min(seconds)
    return float(max(seconds) / lo) if lo > 0 else float("inf")


@dataclass
class Measured:
    """What the two models said on DATA, the labels as column indices and class values, and
    the seconds each model call took (one entry per timed pass over DATA).

    With ``--cost measured`` the first pass of each model is an untimed warm-up (its predictions
    are the ones evaluated; its seconds are kept in ``p_warmup`` / ``f_warmup``) and
    ``p_times`` / ``f_times`` hold the last ``--repeats`` timed passes after it; earlier timed passes,
    run while those still spread wider than :data:`SPREAD_LIMIT`, are in ``p_settling`` /
    ``f_settling``. Otherwise there is
    one pass, warm-up included, and the warm-up fields are ``None``.
    """

    texts: list[str]
    pp: Predictions
    fp: Predictions
    y_index: np.ndarray
    y: np.ndarray
    label_note: str
    p_times: list[float]
    f_times: list[float]
    p_warmup: float | None = None
    f_warmup: float | None = None
    p_settling: list[float] = field(default_factory=list)
    f_settling: list[float] = field(default_factory=list)

    @property
    def spreads(self) -> tuple[float, float]:
        """Slowest / fastest timed pass of the primary and the fallback (``nan`` for one pass)."""
        return spread_of(self.p_times), spread_of(self.f_times)

    @property
    def timing_reliable(self) -> bool:
        """False when a model's timed passes spread wider than :data:`SPREAD_LIMIT`."""
        return not any(s > SPREAD_LIMIT for s in self.spreads)  # nan (one pass) compares False

    @property
    def seconds_per_input(self) -> tuple[float, float]:
        """Median seconds per input of the primary and the fallback."""
        n = len(self.texts)
        return float(np.median(self.p_times)) / n, float(np.median(self.f_times)) / n


def check_path(spec: BackendSpec, role: str) -> None:
    if spec.path.startswith("zoo:") and spec.backend == "deepsparse":
        return
    if spec.backend == "hf" and spec.path.startswith("hub:"):
        return  # an explicit Hub id: transformers downloads it (needs internet)
    path = Path(spec.path).expanduser()
    if path.exists():
        return
    hint = f" (for a model on the Hugging Face Hub, write hf:hub:{spec.path})" if spec.backend == "hf" else ""
    raise CLIError(f"{role} model: no such file or directory: {path}{hint}")


def check_pickle_opt_in(specs: Sequence[tuple[BackendSpec, str]], allowed: bool) -> None:
    for spec, role in specs:
        if spec.backend in PICKLED and not allowed:
            raise CLIError(
                f"{role} model {spec.backend}:{spec.path} is a pickle, and loading a pickle runs any code "
                "inside it; pass --allow-pickle if you made this file or trust where it came from"
            )


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse, before any work, to write where results would be lost or land elsewhere, or
    where the folder cannot be created (it is created only when the results are written)."""
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} is not a directory")
    parent = out
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise CLIError(f"--out {out} cannot be created: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CLIError(f"--out {out} cannot be {'written' if parent == out else 'created'}: "
                       f"{parent} is not writable")
    links = [n for n in OUTPUT_FILES if (out / n).is_symlink()]
    if links:
        raise CLIError(
            f"--out {out}: {', '.join(links)} {'is a symlink' if len(links) == 1 else 'are symlinks'}; "
            "confroute never writes through a symlink (it could overwrite a file elsewhere): remove it"
        )
    present = [n for n in OUTPUT_FILES if (out / n).exists()]
    if present and not overwrite:
        raise CLIError(
            f"--out {out} already holds results ({', '.join(present)}); pass --overwrite to replace "
            "them, or choose another --out"
        )


def load_predictor(spec: BackendSpec, role: str, *, threads: int | None, batch_size: int,
                   max_length: int | None) -> Any:
    """Build the predictor a ``BACKEND:PATH`` names."""
    check_path(spec, role)
    name = role
    if spec.backend == "deepsparse":
        from ...predictors.deepsparse import DeepSparsePredictor

        return DeepSparsePredictor(spec.path, batch_size=batch_size, num_cores=threads,
                                   sequence_length=max_length or 128, name=name)
    if spec.backend == "onnx":
        from ...predictors.onnxruntime import ONNXRuntimePredictor

        return ONNXRuntimePredictor(spec.path, batch_size=batch_size, num_threads=threads,
                                    max_length=max_length, name=name)
    if spec.backend == "hf":
        from ...predictors.huggingface import HFPipelinePredictor

        return HFPipelinePredictor(spec.path, batch_size=batch_size, num_threads=threads,
                                   max_length=max_length, name=name)
    from ...predictors.sklearn import SklearnPredictor

    path = Path(spec.path).expanduser()
    if path.is_dir():
        raise CLIError(f"{role} model: {path} is a directory; sklearn:/joblib: need the saved model file")
    if spec.backend == "joblib":
        try:
            import joblib
        except ImportError:  # pragma: no cover - joblib ships with scikit-learn
            raise CLIError("joblib: models need joblib (installed with scikit-learn)") from None
        try:
            est = joblib.load(path)
        except Exception as exc:  # noqa: BLE001 - joblib raises anything on a file it did not write
            raise CLIError(f"{role} model: cannot load {path} with joblib ({type(exc).__name__}: {exc}); "
                           "is it a model saved with joblib.dump?") from None
    else:
        with open(path, "rb") as fh:
            try:
                est = pickle.load(fh)
            except (pickle.UnpicklingError, EOFError, ValueError, IndexError, KeyError) as exc:
                raise CLIError(f"{role} model: {path} is not a pickle ({exc}); saved with joblib? use joblib:{path}") from None
    if not hasattr(est, "predict_proba"):
        raise CLIError(f"{role} model: {path} holds a {type(est).__name__}, which has no predict_proba")
    return SklearnPredictor(est, batch_size=batch_size * 32, name=name)


def load_data(path: str, args: argparse.Namespace, what: str, limit: int | None = None) -> tuple[list[str], np.ndarray]:
    from ...integrations.io import load_texts

    text_column = args.text_column[0] if args.text_column and len(args.text_column) == 1 else args.text_column
    p = Path(path).expanduser()
    if not p.exists():
        raise CLIError(f"{what}: no such file: {p}")
    try:
        texts, labels = load_texts(p, text_column=text_column, label_column=args.label_column,
                                   format=args.format, limit=limit if limit is not None else args.limit)
    except KeyError as exc:
        raise CLIError(f"{what}: {exc.args[0]} (see --text-column / --label-column)") from None
    except (ValueError, IsADirectoryError) as exc:
        raise CLIError(f"{what}: {exc}") from None
    if not texts:
        raise CLIError(f"{what}: {p} has no rows")
    assert labels is not None
    return texts, labels


def match_labels(labels: np.ndarray, classes: tuple[Any, ...] | None, n_classes: int,
                 label_map: dict[str, str] | None, where: str, model: str) -> tuple[np.ndarray, str]:
    """Column index of every label, and a note on how labels were matched to classes.

    A file holds text, so labels are matched to the class *names* (their text) with
    :func:`confroute.core.classes.label_indices`, after ``--label-map``. Integer labels, when the
    model's classes are not integers, are column indices. A label that matches nothing is an
    error that names the labels and the classes.
    """
    names = tuple(str(c) for c in (classes or range(n_classes)))
    raw = [str(v) for v in labels.tolist()]
    if label_map is not None:
        raw = [label_map.get(v, v) for v in raw]
        by = "name (via --label-map)"
    elif labels.dtype.kind in "iu" and not all(c.lstrip("-").isdigit() for c in names):
        try:
            index = label_indices(labels.astype(np.int64), None, n_classes)
        except ClassMismatchError as exc:
            raise CLIError(
                f"{where}: labels {sorted(exc.unknown)[:10]} do not match {model}'s classes {list(names)}: "  # type: ignore[attr-defined]
                f"integer labels are read as class indices 0..{n_classes - 1}; map them with --label-map "
                f"(e.g. {','.join(f'{i}={c}' for i, c in enumerate(names))})"
            ) from None
        note = ", ".join(f"{i}={c}" for i, c in enumerate(names))
        return index, f"integer labels read as class indices ({note})"
    else:
        by = "name"
    try:
        index = label_indices(np.array(raw, dtype=object), names, n_classes)
    except ClassMismatchError as exc:
        raise CLIError(
            f"{where}: labels {sorted(exc.unknown)[:10]} do not match {model}'s classes {list(names)}"  # type: ignore[attr-defined]
            + ("" if label_map else "; map them with --label-map FILE_LABEL=CLASS,...")
        ) from None
    return index, f"labels matched to classes by {by}"


def align_classes(fallback: Predictions, classes: tuple[Any, ...] | None, n_classes: int) -> Predictions:
    """The fallback's columns in the primary's class order (by name); mismatched classes are an error."""
    try:
        return align(fallback, classes, n_classes, "fallback")[0]
    except ClassMismatchError as exc:
        raise CLIError(str(exc)) from None


def progress_enabled(choice: str) -> bool:
    if choice == "off":
        return False
    try:
        import tqdm  # noqa: F401
    except ImportError:
        if choice == "on":
            raise CLIError("--progress on needs tqdm: pip install 'confroute[progress]'") from None
        return False
    return choice == "on" or sys.stderr.isatty()


def timed_predict(predictor: Any, texts: Sequence[str], desc: str, progress: bool) -> tuple[Predictions, float]:
    """Predict in chunks (for the progress bar); the seconds spent inside the model calls."""
    n = len(texts)
    step = max(int(predictor.batch_size or 256), 1) * 4
    starts = range(0, n, step)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=desc, unit="text", leave=False)
    parts, seconds = [], 0.0
    for i in starts:
        chunk = texts[i : i + step]
        t0 = time.perf_counter()
        parts.append(predictor.predict(chunk))
        seconds += time.perf_counter() - t0
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return Predictions.concat(parts), seconds
