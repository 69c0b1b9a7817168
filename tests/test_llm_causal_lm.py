"""HFCausalLMPredictor on a tiny random Llama with SmolLM2's tokenizer: padding, the two scoring modes."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gguf")

from _llama import GGUF  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if not GGUF.exists():
        pytest.skip(f"the SmolLM2 GGUF (its tokenizer) is not here: {GGUF} (bash tools/llama_server.sh)")
    tok = AutoTokenizer.from_pretrained(GGUF.parent, gguf_file=GGUF.name)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    return LlamaForCausalLM(cfg).eval(), tok


def make(tiny, **kw):
    from confroute.predictors.causal_lm import HFCausalLMPredictor

    model, tok = tiny
    kw.setdefault("top_k", None)
    return HFCausalLMPredictor(model, ["neg", "pos"], codes=["negative", "positive"], tokenizer=tok,
                               template="Review: {input}\nSentiment:", **kw)


def test_left_padding_gives_each_input_its_own_answer(tiny):
    p = make(tiny, batch_size=4)
    texts = ["short", "a much longer review of a film that goes on and on", "mid length text", "x"]
    batched = p.predict(texts).probs
    alone = np.vstack([p.predict([t]).probs for t in texts])
    np.testing.assert_allclose(batched, alone, atol=1e-5)


def test_top_k_and_whole_vocabulary_use_the_same_rule(tiny):
    whole = make(tiny, top_k=None)
    assert all(len(ids) > 1 for ids in whole.class_token_ids)  # "negative", " negative", "neg", ...
    out = whole.predict(["good"])
    assert out.probs.shape == (1, 2) and np.isfinite(out.logits).all()
    assert 0 < whole.calls["good"].class_mass < 1


def test_plain_prompt_bos_follows_add_bos(tiny):
    model, tok = tiny
    with_bos = make(tiny, chat=False, add_bos=True).encode(["a"])[0]
    without = make(tiny, chat=False, add_bos=False).encode(["a"])[0]
    assert with_bos == [tok.bos_token_id] + without


def test_colliding_codes_are_refused(tiny):
    from confroute.predictors.causal_lm import HFCausalLMPredictor

    model, tok = tiny
    with pytest.raises(ValueError, match="collide in the tokenizer"):
        HFCausalLMPredictor(model, ["a", "b"], codes=["catfish", "catnip"], tokenizer=tok)


def test_usage_counts_the_tokens_it_read(tiny):
    p = make(tiny, batch_size=4)
    texts = ["short", "a much longer review"]
    p.predict(texts)
    usage = p.usage(texts + ["never scored"])
    assert usage["prompt_tokens"][:2].tolist() == [len(ids) for ids in p.encode(texts)]
    assert usage["completion_tokens"][:2].tolist() == [1.0, 1.0] and np.isnan(usage["prompt_tokens"][2])
