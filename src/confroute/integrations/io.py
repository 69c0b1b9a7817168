"""Read labelled (or unlabelled) texts from TSV, CSV, JSONL files or ``datasets`` splits.

Everything comes back in file order; nothing is dropped, stripped or deduplicated. A missing
file, a missing column or an empty text cell is an error that names the file, the column and
the row, never a silently shorter dataset.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = ["load_texts", "LabelledTexts", "TEXT_COLUMN_CANDIDATES"]

#: Columns tried, in order, when ``text_column`` is not given.
TEXT_COLUMN_CANDIDATES = ("text", "sentence", "content", "review", "question", "document")

_FORMATS = {".tsv": "tsv", ".tab": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


class LabelledTexts(NamedTuple):
    """``(texts, labels)``; unpack it like a tuple.

    ``labels`` is an int array when every label is an integer, else an array of str;
    ``None`` when loaded with ``label_column=None``.
    """

    texts: list[str]
    labels: np.ndarray | None


def load_texts(
    source: str | Path | Any,
    *,
    text_column: str | Sequence[str] | None = None,
    label_column: str | None = "label",
    format: str | None = None,
    split: str | None = None,
    separator: str = " ",
    limit: int | None = None,
    encoding: str = "utf-8",
    dataset_kwargs: Mapping[str, Any] | None = None,
) -> LabelledTexts:
    """Load texts and labels from a file or a Hugging Face ``datasets`` split.

    Parameters
    ----------
    source : path, str or datasets.Dataset / DatasetDict
        A ``.tsv``/``.tab``, ``.csv`` or ``.jsonl``/``.ndjson`` file (with a header row for
        TSV/CSV); a ``datasets.Dataset``; a ``DatasetDict`` (pass ``split``); or, when
        ``split`` is given and ``source`` is not an existing path, a name for
        ``datasets.load_dataset(source, split=split, **dataset_kwargs)``.
    text_column : str or sequence of str, optional
        Column holding the text. Several columns are joined with ``separator`` (e.g. AG News
        ``["Title", "Description"]``). Default: the first of :data:`TEXT_COLUMN_CANDIDATES`
        present in the data.
    label_column : str or None, default "label"
        Column holding the gold label; ``None`` for unlabelled data.
    format : {"tsv", "csv", "jsonl"}, optional
        Overrides the format guessed from the file extension.
    split : str, optional
        Which split of a ``DatasetDict`` or hub dataset.
    separator : str, default " "
        Joins multiple text columns.
    limit : int, optional
        Keep only the first ``limit`` rows.
    encoding : str, default "utf-8"
        With UTF-8, a byte-order mark at the start of the file (as some spreadsheet programs
        write) is skipped, so the first column keeps its name.
    dataset_kwargs : mapping, optional
        Extra arguments for ``datasets.load_dataset`` (``data_files=...``, ``name=...``).

    Returns
    -------
    LabelledTexts
        ``(texts, labels)``.

    Notes
    -----
    TSV files are read without quote processing (``csv.QUOTE_NONE``), as GLUE's SST-2 files
    require: a sentence may begin with a quote mark that is part of the text. CSV files use
    standard quoting.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "dev.tsv"
    >>> _ = f.write_text('sentence\\tlabel\\n" quoted " start\\t1\\nflat\\t0\\n')
    >>> texts, labels = load_texts(f)
    >>> texts, labels.tolist()
    (['" quoted " start', 'flat'], [1, 0])
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if not path.exists() and split is not None:
            return _from_dataset(_load_dataset(str(source), split, dataset_kwargs), text_column,
                                 label_column, split, separator, limit, str(source))
        columns, rows = _read_path(path, format, encoding, limit)
        return _assemble(columns, rows, text_column, label_column, separator, str(path))
    if hasattr(source, "column_names"):
        return _from_dataset(source, text_column, label_column, split, separator, limit, "dataset")
    raise TypeError(f"source must be a file path or a datasets.Dataset, got {type(source).__name__}")


def _read_path(
    path: Path, format: str | None, encoding: str, limit: int | None
) -> tuple[list[str], list[Mapping[str, Any]]]:
    """The columns and rows of a TSV, CSV or JSONL file."""
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path} (to load a Hugging Face dataset by name, pass split=...)")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; pass a .tsv, .csv or .jsonl file")
    return _read_file(path, _format(path, format), encoding, limit)


def _format(path: Path, format: str | None) -> str:
    if format is not None:
        if format not in ("tsv", "csv", "jsonl"):
            raise ValueError(f"format must be 'tsv', 'csv' or 'jsonl', got {format!r}")
        return format
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"cannot tell the format of {path} from its extension {path.suffix!r}; "
            "pass format='tsv', 'csv' or 'jsonl'"
        )
    return fmt


def _read_file(
    path: Path, fmt: str, encoding: str, limit: int | None
) -> tuple[list[str], list[Mapping[str, Any]]]:
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        encoding = "utf-8-sig"  # the same bytes, but a leading byte-order mark is dropped
    limit_before = csv.field_size_limit()
    csv.field_size_limit(_FIELD_SIZE_LIMIT)  # a long text is data, not an error (the default is 131,072)
    try:
        with open(path, encoding=encoding, newline="") as fh:
            return _read_rows(fh, path, fmt, limit)
    except UnicodeDecodeError as exc:
        name = "utf-8" if encoding == "utf-8-sig" else encoding
        raise ValueError(f"{path}: not {name} text ({exc.reason} at byte {exc.start}); save it as {name}, "
                         "or give its encoding (load_texts(..., encoding=...))") from None
    except csv.Error as exc:
        raise ValueError(f"{path}: not a valid {fmt.upper()} file ({exc})") from None
    finally:
        csv.field_size_limit(limit_before)


#: Longest field the CSV/TSV reader accepts (a text of any realistic length).
_FIELD_SIZE_LIMIT = 2**31 - 1


def _read_rows(fh: Any, path: Path, fmt: str, limit: int | None) -> tuple[list[str], list[Mapping[str, Any]]]:
    """The columns and rows of an open TSV, CSV or JSONL file."""
    if fmt == "jsonl":
        return _read_jsonl(fh, path, limit)
    if fmt == "tsv":
        reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.DictReader(fh)
    if reader.fieldnames is None:
        raise ValueError(f"{path} is empty: expected a header row")
    columns = list(reader.fieldnames)
    rows: list[Mapping[str, Any]] = []
    for row in reader:
        if limit is not None and len(rows) >= limit:
            break
        if None in row:  # more fields than the header names
            raise ValueError(
                f"{path}, line {reader.line_num}: {len(columns) + len(row[None])} fields but the "
                f"header has {len(columns)} ({columns})"
            )
        rows.append(row)
    return columns, rows


def _read_jsonl(
    fh: Iterable[str], path: Path, limit: int | None
) -> tuple[list[str], list[Mapping[str, Any]]]:
    rows: list[Mapping[str, Any]] = []
    columns: dict[str, None] = {}
    for lineno, line in enumerate(fh, start=1):
        if limit is not None and len(rows) >= limit:
            break
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}, line {lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{path}, line {lineno}: expected a JSON object, got {type(obj).__name__}")
        columns.update(dict.fromkeys(obj))
        rows.append(obj)
    return list(columns), rows


def pick_text_columns(text_column: str | Sequence[str] | None, columns: list[str], where: str) -> list[str]:
    if text_column is None:
        for cand in TEXT_COLUMN_CANDIDATES:
            if cand in columns:
                return [cand]
        raise KeyError(
            f"{where}: none of the usual text columns {list(TEXT_COLUMN_CANDIDATES)} is present; "
            f"columns are {columns}: pass text_column=..."
        )
    wanted = [text_column] if isinstance(text_column, str) else list(text_column)
    if not wanted:
        raise ValueError("text_column must name at least one column")
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise KeyError(f"{where}: no column {missing[0]!r}; columns are {columns}")
    return wanted


def _assemble(
    columns: list[str],
    rows: Sequence[Mapping[str, Any]],
    text_column: str | Sequence[str] | None,
    label_column: str | None,
    separator: str,
    where: str,
) -> LabelledTexts:
    text_cols = pick_text_columns(text_column, columns, where)
    if label_column is not None and label_column not in columns:
        raise KeyError(
            f"{where}: no label column {label_column!r}; columns are {columns} "
            "(pass label_column=... or label_column=None for unlabelled data)"
        )
    texts: list[str] = []
    raw_labels: list[Any] = []
    for i, row in enumerate(rows):
        parts = []
        for c in text_cols:
            value = row.get(c)
            if value is None:
                raise ValueError(f"{where}, row {i}: column {c!r} is missing or null")
            if not isinstance(value, str):
                raise ValueError(f"{where}, row {i}: column {c!r} holds a {type(value).__name__}, not text")
            if not value.strip():
                raise ValueError(f"{where}, row {i}: column {c!r} is empty (no text to classify)")
            parts.append(value)
        texts.append(separator.join(parts))
        if label_column is not None:
            label = row.get(label_column)
            if label is None or label == "":
                raise ValueError(f"{where}, row {i}: label column {label_column!r} is empty")
            raw_labels.append(label)
    labels = None if label_column is None else _labels_array(raw_labels, where)
    return LabelledTexts(texts, labels)


_INT64 = np.iinfo(np.int64)


def _labels_array(raw: list[Any], where: str) -> np.ndarray:
    """Integers when every label is an integer (``3``, ``"3"``), else strings."""
    ints: list[int] = []
    for v in raw:
        if isinstance(v, bool):
            break
        if isinstance(v, (int, np.integer)):
            ints.append(int(v))
            continue
        if isinstance(v, str) and v.strip().lstrip("-").isdigit():
            ints.append(int(v.strip()))
            continue
        break
    if len(ints) == len(raw):
        for i, v in enumerate(ints):
            if not _INT64.min <= v <= _INT64.max:
                raise ValueError(
                    f"{where}, row {i}: label {v} is an integer beyond the 64-bit range; labels must "
                    "be class indices or class names"
                )
        return np.asarray(ints, dtype=np.int64)
    return np.asarray([str(v) for v in raw], dtype=object)


def _load_dataset(name: str, split: str, kwargs: Mapping[str, Any] | None) -> Any:
    try:
        import datasets
    except ImportError:
        raise ImportError(
            "loading a dataset by name needs datasets: pip install 'confroute[datasets]'"
        ) from None
    return datasets.load_dataset(name, split=split, **dict(kwargs or {}))


def _from_dataset(
    ds: Any,
    text_column: str | Sequence[str] | None,
    label_column: str | None,
    split: str | None,
    separator: str,
    limit: int | None,
    where: str,
) -> LabelledTexts:
    if not hasattr(ds, "num_rows") or isinstance(getattr(ds, "num_rows"), dict):
        # A DatasetDict: column_names and num_rows are dicts keyed by split.
        splits = list(ds.keys())
        if split is None:
            raise ValueError(f"{where} has splits {splits}; pass split=...")
        if split not in ds:
            raise KeyError(f"{where} has no split {split!r}; splits are {splits}")
        ds = ds[split]
        where = f"{where}[{split}]"
    if limit is not None:
        ds = ds.select(range(min(limit, ds.num_rows)))
    columns = list(ds.column_names)
    text_cols = pick_text_columns(text_column, columns, where)
    needed = text_cols + ([label_column] if label_column is not None and label_column in columns else [])
    data = {c: list(ds[c]) for c in needed}
    n = ds.num_rows
    rows = [{c: data[c][i] for c in needed} for i in range(n)]
    return _assemble(columns, rows, text_cols, label_column, separator, where)
