"""Builds a tiny BERT sentiment classifier at test time (no download), and test texts.

A WordPiece vocabulary written to a directory, a ``BertTokenizerFast`` from it, a 2-layer
``BertForSequenceClassification`` from a small ``BertConfig``, trained for a few dozen steps on a
toy sentiment set so that its confidences spread between 0.5 and 1, saved with
``save_pretrained``. Also where ``../shared`` is.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
POSITIVE = ["good", "great", "fun", "love", "best", "charming", "lovely", "moving"]
NEGATIVE = ["bad", "awful", "boring", "hate", "worst", "dull", "messy", "tedious"]
FILLER = ["the", "movie", "film", "was", "is", "a", "very", "plot", "acting", "and", "but", "it", "quite"]
PUNCT = [".", ",", "!", "'", "s"]
# Word pieces, so that unseen words split into several tokens like in a real vocabulary.
PIECES = ["##s", "##ly", "##ing", "##ed", "##y", "un", "##able"]
LR = 5e-4
CLASSES = ("negative", "positive")

#: Test texts: clear, mixed and unusual (casing, unknown words, word pieces, punctuation, empty).
TEXTS = [
    "the movie was great and fun !",
    "the plot was boring and dull .",
    "good but boring",
    "it was a very bad film , but the acting was lovely",
    "Charming , MOVING and quite lovely",
    "awful",
    "the film is a film",
    "zebra quantum xylophone",
    "the best film , the worst plot",
    "hate it . love it . hate it .",
    "",
    "movingly charmingly unboring",
    "the acting was tedious but the plot was great and the film was moving",
]


def shared_dir() -> Path:
    """``../shared`` next to the repository, or ``$CONFROUTE_SHARED``."""
    env = os.environ.get("CONFROUTE_SHARED")
    return Path(env) if env else (Path(__file__).resolve().parents[2] / ".." / "shared").resolve()


def _toy_data(n: int, seed: int) -> tuple[list[str], list[int]]:
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        label = rng.randrange(2)
        strong = POSITIVE if label else NEGATIVE
        weak = NEGATIVE if label else POSITIVE
        words = rng.sample(FILLER, 4) + rng.sample(strong, 2)
        if rng.random() < 0.3:  # a contrary word, so that the model cannot be certain from one word
            words.append(rng.choice(weak))
        rng.shuffle(words)
        texts.append(" ".join(words) + rng.choice(["", " .", " !"]))
        labels.append(label)
    return texts, labels


def build_tiny_model(out_dir: Path, num_labels: int = 2, train_steps: int = 60, seed: int = 0) -> Path:
    """Write a trained tiny BERT classifier (weights, tokenizer, config) to ``out_dir``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = SPECIAL + FILLER + POSITIVE + NEGATIVE + PUNCT + PIECES + list("abcdefghijklmnopqrstuvwxyz")
    vocab_file = out_dir / "vocab.txt"
    vocab_file.write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True, model_max_length=64)
    names = CLASSES if num_labels == 2 else tuple(f"class_{i}" for i in range(num_labels))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=num_labels,
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: more threads only add contention on a shared machine
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    if train_steps:
        texts, labels = _toy_data(96, seed)
        enc = tokenizer(texts, padding=True, return_tensors="pt")
        y = torch.tensor(labels)
        opt = torch.optim.AdamW(model.parameters(), lr=LR)
        model.train()
        for _ in range(train_steps):
            opt.zero_grad()
            loss = model(**enc, labels=y).loss
            loss.backward()
            opt.step()
    torch.set_num_threads(threads)
    model.eval()
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return out_dir


