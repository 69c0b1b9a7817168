"""What every export path shares: the check texts, the files copied next to ``model.onnx``, and
where a rewritten copy goes."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_CHECK_TEXTS", "SIDE_FILES", "copy_side_files", "copy_target"]

#: Texts the exported model is checked on: different lengths, so that padding is exercised.
DEFAULT_CHECK_TEXTS = (
    "a gorgeous, witty, seductive movie.",
    "the plot is nothing but boilerplate clichés from start to finish,",
    "it's a charming and often affecting journey.",
    "bad",
    "an utterly incompetent conclusion to a film that, until then, had been deeply "
    "absorbing and full of surprising, tender and funny moments",
)

#: Files copied next to ``model.onnx`` when present (tokenizer, config, provenance).
SIDE_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "merges.txt",
    "vocab.json",
    "sentencepiece.bpe.model",
    "spiece.model",
    "added_tokens.json",
    "training_info.json",
)



def copy_side_files(src_dir: Path, dst: Path) -> None:
    """Copy the tokenizer, config and provenance files of ``src_dir`` that exist into ``dst``."""
    for name in SIDE_FILES:
        if (src_dir / name).is_file():
            shutil.copyfile(src_dir / name, dst / name)


def copy_target(model: Any, output_dir: Any, overwrite: bool) -> tuple[Path, Path, Path, Path]:
    """Source ONNX file and folder, and the destination folder and file of a rewritten copy."""
    from ..predictors._text import onnx_file

    src_file, src_dir = onnx_file(model)
    dst = Path(output_dir).expanduser().resolve()
    if dst == src_dir.resolve():
        raise ValueError("output_dir must differ from the model's directory: the source is never written to")
    out_file = dst / "model.onnx"
    if out_file.exists() and not overwrite:
        raise FileExistsError(f"{out_file} exists; pass overwrite=True to replace it")
    return src_file, src_dir, dst, out_file


