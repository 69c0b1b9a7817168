"""LLM stages against a real OpenAI-compatible server: llama-cpp-python serving SmolLM2-135M-Instruct.

The server venv and the GGUF come from tools/llama_server.sh (tools/run.sh test builds them; in CI
a missing server fails instead of skipping). A FaultProxy in front counts what the server sees.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

pytest.importorskip("httpx")

from confroute import CircuitBreaker, CostModel, Fallback, ThresholdRouter  # noqa: E402
from confroute.core.cost import TokenPrice  # noqa: E402
from confroute.exceptions import PredictionError, RemoteUnavailableError, StageTimeoutError  # noqa: E402
from confroute.predictors._cache import ResponseCache  # noqa: E402
from confroute.predictors.openai import OpenAIPredictor  # noqa: E402

from _llama import (  # noqa: E402
    F32_KV, GGUF, MODEL, SST2_PROMPT, FaultProxy, LlamaServer, f32_gguf, need_llama, shared_dir, sst2_dev,
)

pytestmark = pytest.mark.slow

#: Largest |p_server - p_hf| allowed per class probability on the Q4_1 GGUF: the server multiplies
#: the Q4_1 weights with 8-bit quantised activations (llama.cpp's CPU kernels) and keeps a float16
#: KV cache, transformers de-quantises the weights to float32 (measured max 0.040: docs/llm.md).
PROB_TOL = 0.05
#: The same on the float32 GGUF of the same weights with a float32 KV cache (measured max 4.7e-6).
F32_TOL = 1e-4


@pytest.fixture(scope="module")
def server():
    need_llama()
    s = LlamaServer().start()
    yield s
    s.kill()


@pytest.fixture()
def proxy(server):
    p = FaultProxy(server.port)
    yield p
    p.close()


def llm(url: str, **kw) -> OpenAIPredictor:
    return OpenAIPredictor(url, MODEL, max_concurrency=1, endpoint="completions", **SST2_PROMPT, **kw)


@pytest.fixture(scope="module")
def hf_llm():
    pytest.importorskip("gguf")
    from confroute.predictors.causal_lm import HFCausalLMPredictor

    need_llama()
    return HFCausalLMPredictor(GGUF.parent, gguf_file=GGUF.name, batch_size=16, chat=False, **SST2_PROMPT)


@pytest.fixture(scope="module")
def minilm():
    path = shared_dir() / "models" / "minilm-sst2-pruned80"
    if not (path / "model.onnx").exists():
        pytest.skip(f"MiniLM not found at {path} (set CONFROUTE_SHARED)")
    pytest.importorskip("onnxruntime")
    from confroute.predictors.onnxruntime import ONNXRuntimePredictor

    return ONNXRuntimePredictor(path, num_threads=1, batch_size=32)


@pytest.mark.shared
def test_server_and_hf_predictors_agree_on_200_sst2_sentences(server, hf_llm):
    texts, labels = sst2_dev(200)
    remote = llm(server.url).predict(texts)
    local = hf_llm.predict(texts)
    agree = float((remote.label_index == local.label_index).mean())
    diff = np.abs(remote.probs - local.probs)
    accuracy = float((remote.label_index == np.asarray(labels)).mean())
    near = (np.abs(remote.probs[:, 1] - 0.5) < PROB_TOL) | (np.abs(local.probs[:, 1] - 0.5) < PROB_TOL)
    print(f"\nagreement {agree:.3f}  max|dp| {diff.max():.4f}  mean|dp| {diff.mean():.4f}  "
          f"server acc {accuracy:.3f}  hf acc {float((local.label_index == np.asarray(labels)).mean()):.3f}  "
          f"within {PROB_TOL} of 0.5: {near.mean():.3f}  agreement outside: "
          f"{float((remote.label_index == local.label_index)[~near].mean()):.3f}")
    assert diff.max() <= PROB_TOL
    # Every disagreement is explained by the tolerance: both answers lie within PROB_TOL of 0.5
    # (measured: 7 of 200 flip, all there; the 98% is not reached by this 135M Q4_1 model).
    assert (remote.label_index == local.label_index)[~near].all()
    assert agree >= 0.95


@pytest.mark.shared
@pytest.mark.skipif(os.environ.get("CONFROUTE_LLM_F32") != "1",
                    reason="opt-in (CONFROUTE_LLM_F32=1): writes a 515 MB float32 GGUF and takes 5-17 min on 2 cores; "
                           "its result is in docs/llm.md")
def test_with_float32_weights_the_two_predictors_agree_exactly_on_200_sentences():
    """The cause of the Q4_1 disagreements: llama.cpp's quantised kernels. The same weights in
    float32 (de-quantised by llama.cpp) with a float32 KV cache: the same prompt, tokens, BOS and
    scoring rule give the same probabilities to 1e-4, so every argmax agrees."""
    pytest.importorskip("gguf")
    from confroute.predictors.causal_lm import HFCausalLMPredictor

    path = f32_gguf()
    texts, _ = sst2_dev(200)
    srv = LlamaServer(model=path, extra=F32_KV).start()
    try:
        remote = llm(srv.url).predict(texts)
    finally:
        srv.kill()
    local = HFCausalLMPredictor(path.parent, gguf_file=path.name, batch_size=16, chat=False, **SST2_PROMPT).predict(texts)
    assert np.abs(remote.probs - local.probs).max() <= F32_TOL
    assert (remote.label_index == local.label_index).all()


def test_usage_is_the_real_token_count_and_prices_by_hand(server, hf_llm):
    texts, _ = sst2_dev(5)
    p = llm(server.url)
    p.predict(texts)
    price = TokenPrice(input_per_million=0.15, output_per_million=0.60)
    per_input = price.per_input(p.usage(texts))
    for text, cost in zip(texts, per_input):
        tokens = len(hf_llm.encode([text])[0])  # the same tokens, counted locally
        assert p.calls[text].prompt_tokens == tokens
        assert p.calls[text].completion_tokens == 1
        assert cost == pytest.approx(tokens * 0.15 / 1e6 + 1 * 0.60 / 1e6, rel=1e-12, abs=0)


#: The example prices of the tests: $0.15 / $0.60 per million prompt / completion tokens (the
#: user gives them; none is built in), and $0.00001 per input for the classifier in front.
PRICE = TokenPrice(input_per_million=0.15, output_per_million=0.60)
CHEAP = 1e-5


def by_hand(hf_llm, text: str) -> float:
    """The LLM price of one input from its tokens counted locally, and a 1-token answer."""
    return len(hf_llm.encode([text])[0]) * 0.15 / 1e6 + 1 * 0.60 / 1e6


@pytest.mark.shared
def test_router_sends_exactly_the_deferred_inputs_to_the_server(proxy, minilm, hf_llm, tmp_path):
    texts, labels = sst2_dev(200)
    router = ThresholdRouter(minilm, Fallback(llm(proxy.url), on_error="raise"), threshold=0.9,
                             cost_model=CostModel([CHEAP, PRICE]))
    result = router.route(texts)
    deferred = [t for t, s in zip(texts, result.stage) if s == 1]
    assert 0 < len(deferred) < len(texts)
    sent = [r["prompt"] for r in proxy.requests]
    prompt = llm(proxy.url).prompt
    assert sorted(sent) == sorted(prompt.render(t) for t in deferred)
    assert not result.degraded.any()
    # each input paid the classifier, and the deferred ones the tokens the server counted
    for text, stage, cost in list(zip(texts, result.stage, result.cost))[:20]:
        assert cost == pytest.approx(CHEAP + (by_hand(hf_llm, text) if stage == 1 else 0.0), rel=1e-12, abs=0)


@pytest.mark.shared
def test_evaluate_with_token_prices_by_hand_and_a_second_evaluate_from_the_cache(proxy, minilm, hf_llm, tmp_path):
    from confroute import evaluate

    texts, labels = sst2_dev(5)
    names = np.array(["NEGATIVE", "POSITIVE"])[labels]
    cache = tmp_path / "responses.sqlite"

    def router() -> ThresholdRouter:
        return ThresholdRouter(minilm, llm(proxy.url, cache=ResponseCache(cache)), cost_model=CostModel([CHEAP, PRICE]))

    first = evaluate(router(), texts, names)
    assert proxy.seen == len(texts)
    scores = first.stage_scores[0]
    for row, (t,) in enumerate(first.table["thresholds"]):
        # by hand: every input pays the classifier; the deferred ones their measured tokens x price
        expected = len(texts) * CHEAP + sum(by_hand(hf_llm, x) for x, s in zip(texts, scores) if not s >= t)
        assert first.table["cost"][row] == pytest.approx(expected, rel=1e-12, abs=0)
    proxy.reset()
    again = router()
    second = evaluate(again, texts, names)
    assert proxy.seen == 0  # the server saw no request at all
    assert again.fallback.predictor.cache.hits == len(texts)
    np.testing.assert_array_equal(first.table["cost"], second.table["cost"])  # usage comes from the cache


@pytest.mark.shared
def test_429_with_retry_after_opens_the_breaker_and_loses_no_input(proxy, minilm):
    texts, _ = sst2_dev(12)
    breaker = CircuitBreaker(failure_threshold=2, reset_after=1.0)
    fb = Fallback(llm(proxy.url, retry_after_retries=0), on_error="keep_previous", batch_size=1,
                  circuit_breaker=breaker, retry_on=(RemoteUnavailableError,))
    router = ThresholdRouter(minilm, fb, threshold=float("inf"))  # every input goes to the server
    proxy.fail_429, proxy.retry_after = 10_000, "60"  # longer than the predictor waits: it raises
    first = router.route(texts)
    assert len(first) == len(texts) and all(label is not None for label in first.labels)  # 0 lost
    assert first.degraded.all() and breaker.state == "open"
    assert proxy.seen < len(texts)  # the open breaker sent no more requests
    proxy.reset()
    time.sleep(breaker.reset_after)
    second = router.route(texts[:4])
    assert not second.degraded.any() and breaker.state == "closed"


@pytest.mark.shared
def test_second_evaluate_with_the_cache_makes_no_calls(proxy, minilm, tmp_path):
    from confroute import evaluate

    texts, labels = sst2_dev(40)
    names = np.array(["NEGATIVE", "POSITIVE"])[labels]
    cache = tmp_path / "responses.sqlite"
    first = evaluate(ThresholdRouter(minilm, llm(proxy.url, cache=cache)), texts, names)
    assert len(proxy.requests) == len(set(texts))
    proxy.reset()
    again = ThresholdRouter(minilm, llm(proxy.url, cache=ResponseCache(cache)))
    second = evaluate(again, texts, names)
    assert proxy.seen == 0
    assert again.fallback.predictor.cache.hits == len(texts)
    np.testing.assert_array_equal(first.fallback_correct, second.fallback_correct)


def test_retry_after_and_deadline_against_the_real_server(proxy):
    texts, _ = sst2_dev(2)
    proxy.fail_429, proxy.retry_after = 1, "1"
    t0 = time.monotonic()
    assert len(llm(proxy.url).predict(texts[:1])) == 1
    assert time.monotonic() - t0 >= 1.0 and proxy.seen == 2
    proxy.reset()
    p = llm(proxy.url, timeout=2.0)
    p.predict(texts[:1])  # warm: time the trickled request alone
    proxy.trickle = 0.02
    t0 = time.monotonic()
    with pytest.raises(StageTimeoutError):
        p.predict(texts[1:])
    assert abs(time.monotonic() - t0 - 2.0) <= 0.2  # within 10% of the deadline


def test_server_without_logprobs_gets_a_clear_error(proxy):
    proxy.strip_logprobs = True
    with pytest.raises(PredictionError, match="logits_all"):
        llm(proxy.url).predict(sst2_dev(1)[0])


@pytest.mark.shared
@pytest.mark.parametrize("policy", ["keep_previous", "abstain"])
def test_server_killed_and_restarted_mid_run_loses_no_input(server, proxy, minilm, policy):
    texts, _ = sst2_dev(60)
    breaker = CircuitBreaker(failure_threshold=3, reset_after=1.0)
    fb = Fallback(llm(proxy.url, timeout=30), on_error=policy, retries=2, backoff=0.2, batch_size=4,
                  circuit_breaker=breaker, retry_on=(RemoteUnavailableError, StageTimeoutError))
    router = ThresholdRouter(minilm, fb, threshold=float("inf"))  # every input goes to the server
    states: list[str] = []

    def crash() -> None:
        while len(proxy.requests) < 12:
            time.sleep(0.01)
        server.kill()
        deadline = time.monotonic() + 10
        while breaker.state != "open" and time.monotonic() < deadline:
            time.sleep(0.005)
        states.append(breaker.state)
        server.start()

    killer = threading.Thread(target=crash)
    killer.start()
    first = router.route(texts)
    killer.join(180)
    llm(server.url, timeout=120).predict(texts[:1])  # the restarted server has warmed up
    time.sleep(breaker.reset_after)
    second = router.route(texts[:8])  # the server is back: the breaker lets a trial through and closes
    assert len(first) == len(texts)  # 0 inputs lost
    assert first.degraded.any() and (~first.degraded).sum() >= 4  # answered before the crash
    if policy == "keep_previous":
        assert all(label is not None for label in first.labels)
        primary = first.stage_label_index[0]
        assert (first.label_index[first.degraded] == primary[first.degraded]).all()
    else:
        assert all((label is None) == bool(d) for label, d in zip(first.labels, first.degraded))
    assert "open" in states
    assert not second.degraded.any() and breaker.state == "closed"


def test_codes_that_collide_in_the_tokenizer_are_refused(hf_llm):
    from confroute.predictors.causal_lm import HFCausalLMPredictor

    # "catfish" and "catnip" differ as strings but both start with the token "cat"
    with pytest.raises(ValueError, match="collide in the tokenizer.*'cat'"):
        HFCausalLMPredictor(hf_llm.model, ["a", "b"], codes=["catfish", "catnip"], tokenizer=hf_llm.tokenizer)


def test_codes_that_collide_in_the_servers_tokenizer_get_a_clear_error(server):
    # "negative one" and "negative two" differ as strings (neither is a prefix of the other), but
    # the server's first answer token " negative" starts both: the answer cannot tell them apart.
    texts, labels = sst2_dev(40)
    text = next(t for t, y in zip(texts, labels) if y == 0 and "bad" in t or "dull" in t or "worst" in t)
    p = OpenAIPredictor(server.url, MODEL, ["a", "b"], codes=["negative one", "negative two"], endpoint="completions",
                        template=SST2_PROMPT["template"], case_sensitive=False)
    with pytest.raises(PredictionError, match=r"collide in the server's tokenizer.*' negative'"):
        p.predict([text])
