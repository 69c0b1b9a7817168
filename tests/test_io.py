"""load_texts: TSV/CSV/JSONL files and datasets splits, in order, with clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from confroute.integrations.io import LabelledTexts, load_texts

SHARED = Path(os.environ.get("CONFROUTE_SHARED") or Path(__file__).resolve().parents[1] / ".." / "shared")


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_tsv_keeps_quotes_whitespace_and_order(tmp_path):
    f = _write(tmp_path / "d.tsv", 'sentence\tlabel\n" quoted \' start \t1\nplain \t0\nthird\t1\n')
    texts, labels = load_texts(f)
    assert texts == ["\" quoted ' start ", "plain ", "third"]
    assert labels.dtype == np.int64 and labels.tolist() == [1, 0, 1]


def test_csv_handles_quoted_commas_and_joins_columns(tmp_path):
    f = _write(tmp_path / "news.csv", 'Class Index,Title,Description\n3,"Oil, gas","Prices rise"\n1,War,"Talks, stall"\n')
    out = load_texts(f, text_column=["Title", "Description"], label_column="Class Index", separator=". ")
    assert isinstance(out, LabelledTexts)
    assert out.texts == ["Oil, gas. Prices rise", "War. Talks, stall"]
    assert out.labels.tolist() == [3, 1]


def test_jsonl_string_labels_and_blank_lines(tmp_path):
    rows = [{"text": "a", "label": "pos"}, {"text": "b", "label": "neg", "extra": 1}]
    f = _write(tmp_path / "d.jsonl", json.dumps(rows[0]) + "\n\n" + json.dumps(rows[1]) + "\n")
    texts, labels = load_texts(f)
    assert texts == ["a", "b"]
    assert labels.dtype == object and labels.tolist() == ["pos", "neg"]


def test_unlabelled_data_and_limit(tmp_path):
    f = _write(tmp_path / "d.tsv", "text\n" + "".join(f"t{i}\n" for i in range(10)))
    texts, labels = load_texts(f, label_column=None, limit=3)
    assert texts == ["t0", "t1", "t2"] and labels is None


def test_text_column_is_detected_or_must_be_named(tmp_path):
    f = _write(tmp_path / "d.csv", "review,label\nfine,1\n")
    assert load_texts(f).texts == ["fine"]
    g = _write(tmp_path / "e.csv", "body,label\nfine,1\n")
    with pytest.raises(KeyError, match=r"columns are \['body', 'label'\]: pass text_column"):
        load_texts(g)


def test_missing_columns_are_named(tmp_path):
    f = _write(tmp_path / "d.tsv", "sentence\tgold\nfine\t1\n")
    with pytest.raises(KeyError, match=r"no label column 'label'.*\['sentence', 'gold'\].*label_column=None"):
        load_texts(f)
    with pytest.raises(KeyError, match="no column 'txt'"):
        load_texts(f, text_column="txt", label_column="gold")
    assert load_texts(f, label_column="gold").labels.tolist() == [1]


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file.*split="):
        load_texts(tmp_path / "absent.tsv")
    f = _write(tmp_path / "d.txt", "text\nx\n")
    with pytest.raises(ValueError, match="format='tsv'"):
        load_texts(f)
    assert load_texts(f, format="tsv", label_column=None).texts == ["x"]
    with pytest.raises(IsADirectoryError):
        load_texts(tmp_path)


def test_bad_rows_are_located(tmp_path):
    f = _write(tmp_path / "d.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": \n')
    with pytest.raises(ValueError, match="line 2: not valid JSON"):
        load_texts(f)
    g = _write(tmp_path / "e.jsonl", '{"text": "a", "label": 1}\n{"text": null, "label": 0}\n')
    with pytest.raises(ValueError, match="row 1: column 'text' is missing or null"):
        load_texts(g)
    h = _write(tmp_path / "f.tsv", "text\tlabel\na\t1\nb\t\n")
    with pytest.raises(ValueError, match="row 1: label column 'label' is empty"):
        load_texts(h)
    k = _write(tmp_path / "g.tsv", "text\tlabel\na\t1\textra\n")
    with pytest.raises(ValueError, match="line 2: 3 fields but the header has 2"):
        load_texts(k)
    m = _write(tmp_path / "h.csv", "")
    with pytest.raises(ValueError, match="empty"):
        load_texts(m)


def test_datasets_objects_and_splits():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"sentence": ["x", "y", "z"], "label": [1, 0, 1]})
    texts, labels = load_texts(ds, limit=2)
    assert texts == ["x", "y"] and labels.tolist() == [1, 0]
    dd = datasets.DatasetDict({"train": ds, "validation": ds.select([2])})
    assert load_texts(dd, split="validation").texts == ["z"]
    with pytest.raises(ValueError, match=r"splits \['train', 'validation'\]; pass split"):
        load_texts(dd)
    with pytest.raises(KeyError, match="no split 'test'"):
        load_texts(dd, split="test")


def test_datasets_by_builder_name_with_local_files(tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    f = _write(tmp_path / "d.csv", "text,label\nfirst,0\nsecond,1\n")
    texts, labels = load_texts("csv", split="train", dataset_kwargs={"data_files": str(f),
                                                                    "cache_dir": str(tmp_path / "cache")})
    assert texts == ["first", "second"] and labels.tolist() == [0, 1]


@pytest.mark.shared
def test_sst2_dev_from_shared():
    f = SHARED / "data" / "sst2" / "dev.tsv"
    if not f.is_file():
        pytest.skip(f"shared data not found at {f} (set CONFROUTE_SHARED)")
    texts, labels = load_texts(f)
    assert len(texts) == len(labels) == 872
    assert set(labels.tolist()) == {0, 1}
    assert texts[0].startswith("it 's a charming and often affecting journey")


# --------------------------------------------------------------------------- issue 12
@pytest.mark.parametrize("fmt, content", [
    ("tsv", "sentence\tlabel\nfine\t1\n\t0\n"),
    ("csv", 'text,label\nfine,1\n"",0\n'),
    ("jsonl", '{"text": "fine", "label": 1}\n{"text": "", "label": 0}\n'),
])
def test_empty_text_cell_is_an_error(tmp_path, fmt, content):
    f = tmp_path / f"d.{fmt}"
    f.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=r"row 1: column '(sentence|text)' is empty"):
        load_texts(f)


def test_whitespace_only_text_is_an_error(tmp_path):
    f = tmp_path / "d.tsv"
    f.write_text("sentence\tlabel\nfine\t1\n   \t0\n", encoding="utf-8")
    with pytest.raises(ValueError, match="row 1: column 'sentence' is empty"):
        load_texts(f)


@pytest.mark.parametrize("fmt, content", [
    ("tsv", "sentence\tlabel\nfine\t1\n"),
    ("csv", "text,label\nfine,1\n"),
    ("jsonl", '{"text": "fine", "label": 1}\n'),
])
def test_utf8_bom_in_the_header_is_recognised(tmp_path, fmt, content):
    f = tmp_path / f"d.{fmt}"
    f.write_bytes(b"\xef\xbb\xbf" + content.encode("utf-8"))
    texts, labels = load_texts(f)
    assert texts == ["fine"] and labels.tolist() == [1]


def test_integer_label_beyond_int64_is_an_error(tmp_path):
    f = tmp_path / "d.tsv"
    f.write_text(f"sentence\tlabel\na\t1\nb\t{10**30}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"row 1: label 1000000000000000000000000000000 is an integer beyond"):
        load_texts(f)
