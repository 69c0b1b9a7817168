"""OpenAIPredictor, the prompt rule, the response cache and token prices against a stdlib fake server.

The same behaviour against the real llama.cpp server is in tests/test_llm_server.py.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import time

import numpy as np
import pytest

from confroute.core.cost import TokenPrice
from confroute.exceptions import PredictionError, RemoteUnavailableError, StageTimeoutError
from confroute.predictors._cache import ResponseCache, cache_key
from confroute.predictors._llm_prompt import LLMPrompt, class_scores
from confroute.predictors.openai import OpenAIPredictor
from confroute.routing.fallback import CircuitBreaker, Fallback

pytest.importorskip("httpx")

from _llama import FakeOpenAI, FaultProxy  # noqa: E402

CLASSES = ["neg", "pos"]
CODES = ["negative", "positive"]
TEMPLATE = "Review: {input}\nnegative or positive?"


@pytest.fixture(scope="module")
def fake():
    server = FakeOpenAI()
    yield server
    server.close()


@pytest.fixture()
def proxy(fake):
    p = FaultProxy(fake.port)
    yield p
    p.close()


def make(url: str, **kw) -> OpenAIPredictor:
    kw.setdefault("codes", CODES)
    kw.setdefault("template", TEMPLATE)
    return OpenAIPredictor(url, "fake", CLASSES, **kw)


# -- class probabilities -------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_probs_renormalised_over_classes_and_mass_recorded(fake, endpoint):
    p = make(fake.url, endpoint=endpoint)
    out = p.predict(["a good film", "a dull film"])
    # "good": positive 0.7 + " positive" 0.1, negative 0.15, "The" 0.03 outside the classes
    assert out.probs[0] == pytest.approx([0.15 / 0.95, 0.8 / 0.95])
    assert out.probs[1] == pytest.approx([0.8 / 0.95, 0.15 / 0.95])
    assert out.labels.tolist() == ["pos", "neg"]
    assert p.calls["a good film"].class_mass == pytest.approx(0.95)
    assert p.calls["a good film"].prompt_tokens == len(p.prompt.render("a good film").split())
    assert p.calls["a good film"].completion_tokens == 1
    assert out.logits is not None  # log class mass: temperature scaling works on it


def test_unlisted_class_gets_an_upper_bound_never_zero():
    s = class_scores([("A", math.log(0.9)), ("x", math.log(0.04))], ["A", "B"])
    # B is not listed: at most min(lowest listed 0.04, unlisted mass 0.06)
    assert np.exp(s.logprobs).tolist() == pytest.approx([0.9, 0.04])


def test_no_class_among_top_tokens_is_an_error_for_that_row_never_a_uniform_guess(fake):
    p = make(fake.url)
    with pytest.raises(PredictionError, match=r"rows \[1\] of 3: .*no class code"):
        p.predict(["good", "??? what", "bad"])
    fb = Fallback(p, on_error="abstain", split_on_failure=True, retry_on=(RemoteUnavailableError, StageTimeoutError))
    outcome = fb.call(["good", "??? what", "bad"])
    assert outcome.ok.tolist() == [True, False, True]
    assert outcome.predictions.labels.tolist() == ["pos", "neg"]


def test_async_path_and_concurrency_limit(fake):
    p = make(fake.url, max_concurrency=2)
    fake.delay = 0.2
    try:
        t0 = time.monotonic()
        out = asyncio.run(p.apredict(["good"] * 2 + ["bad"] * 4))
        elapsed = time.monotonic() - t0
    finally:
        fake.delay = 0.0
    assert out.labels.tolist() == ["pos"] * 2 + ["neg"] * 4
    assert elapsed >= 0.6 - 0.05  # 6 requests, 2 at a time, 0.2 s each


# -- bad input -----------------------------------------------------------------------------------


def test_template_without_input_slot():
    with pytest.raises(ValueError, match=r"no input slot '\{input\}'"):
        LLMPrompt(("a", "b"), template="Classify this.")
    with pytest.raises(ValueError, match="unknown slots"):
        LLMPrompt(("a", "b"), template="{input} {label}")


def test_codes_that_prefix_each_other_are_refused():
    with pytest.raises(ValueError, match="is a prefix of"):
        LLMPrompt(("a", "b"), codes=("pos", "positive"))


def test_missing_api_key_names_the_variable(monkeypatch, fake):
    monkeypatch.delenv("CONFROUTE_TEST_KEY", raising=False)
    with pytest.raises(ValueError, match="'CONFROUTE_TEST_KEY' is not set"):
        make(fake.url, api_key_env="CONFROUTE_TEST_KEY")


def test_api_key_is_sent_but_never_shown(monkeypatch, fake, proxy):
    secret = "sk-test-very-secret-123"
    monkeypatch.setenv("CONFROUTE_TEST_KEY", secret)
    p = make(fake.url, api_key_env="CONFROUTE_TEST_KEY")
    p.predict(["good"])
    assert fake.auth[-1] == f"Bearer {secret}"
    assert secret not in repr(p) and secret not in str(p.__getstate__())
    bad = make(proxy.url, api_key_env="CONFROUTE_TEST_KEY", retry_after_retries=0)
    proxy.fail_429 = 1
    with pytest.raises(RemoteUnavailableError) as info:
        bad.predict(["good"])
    assert secret not in str(info.value) and secret not in repr(info.value)


def test_server_without_logprobs_names_the_option(proxy):
    proxy.strip_logprobs = True
    with pytest.raises(PredictionError, match="--logits_all true"):
        make(proxy.url).predict(["good"])


# -- faults ---------------------------------------------------------------------------------------


def test_429_retry_after_is_honoured(proxy):
    proxy.fail_429, proxy.retry_after = 2, "0.3"
    t0 = time.monotonic()
    out = make(proxy.url, retry_after_retries=2).predict(["good"])
    assert out.labels.tolist() == ["pos"]
    assert proxy.seen == 3 and len(proxy.requests) == 1
    assert time.monotonic() - t0 >= 0.6
    assert proxy.times_429[1] - proxy.times_429[0] >= 0.3


def test_429_maps_to_remote_unavailable_and_fallback_breaker_opens_and_closes(proxy):
    proxy.fail_429, proxy.retry_after = 3, "5"
    p = make(proxy.url, retry_after_retries=0)
    with pytest.raises(RemoteUnavailableError) as info:
        p.predict(["good"])
    assert info.value.status == 429 and info.value.retry_after == 5.0
    t = [0.0]
    breaker = CircuitBreaker(failure_threshold=2, reset_after=10, clock=lambda: t[0])
    fb = Fallback(p, on_error="abstain", circuit_breaker=breaker)
    assert not fb.call(["good"]).ok.any()
    assert not fb.call(["good"]).ok.any()
    assert breaker.state == "open"
    seen = proxy.seen
    assert not fb.call(["good"]).ok.any() and proxy.seen == seen  # open: no request at all
    t[0] = 11.0
    assert fb.call(["good"]).ok.all()  # the 429s are used up: the trial succeeds
    assert breaker.state == "closed"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_deadline_holds_against_a_trickling_body(proxy, mode):
    p = make(proxy.url, timeout=2.0)
    warm = (lambda xs: p.predict(xs)) if mode == "sync" else (lambda xs: asyncio.run(p.apredict(xs)))
    warm(["good"])  # the client, the event loop and the connection exist: time the request alone
    proxy.trickle = 0.05  # ~400 bytes at 20 bytes/s: ~20 s
    t0 = time.monotonic()
    with pytest.raises(StageTimeoutError, match="deadline"):
        warm(["good again"])
    assert abs(time.monotonic() - t0 - 2.0) <= 0.2  # the "within 10%" of the deadline


def test_connection_refused_is_remote_unavailable():
    from _llama import free_port

    p = make(f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(RemoteUnavailableError):
        p.predict(["good"])


# -- cache ----------------------------------------------------------------------------------------


def test_cache_second_run_makes_no_calls_and_never_stores_errors(tmp_path, fake):
    cache = ResponseCache(tmp_path / "c.sqlite")
    p = make(fake.url, cache=cache)
    texts = ["good one", "bad one", "good two"]
    first = p.predict(texts)
    n = fake.n
    second = make(fake.url, cache=ResponseCache(tmp_path / "c.sqlite")).predict(texts)
    assert fake.n == n  # zero calls
    np.testing.assert_array_equal(first.probs, second.probs)
    with pytest.raises(PredictionError):
        p.predict(["??? unanswerable"])
    assert len(cache) == 3  # the error was not stored
    assert (cache.hits, cache.misses) == (0, 4)
    off = make(fake.url, cache=ResponseCache(tmp_path / "c.sqlite", enabled=False))
    off.predict(texts)
    assert fake.n == n + 1 + 3


def test_cache_key_covers_model_prompt_and_params(fake):
    a = make(fake.url).request_body("x")
    assert cache_key(url="u", body=a) != cache_key(url="u", body={**a, "model": "other"})
    assert cache_key(url="u", body=a) != cache_key(url="v", body=a)
    assert cache_key(url="u", body=a) != cache_key(url="u", body=make(fake.url, top_logprobs=5).request_body("x"))


def _writer(path: str, start: int) -> None:
    cache = ResponseCache(path, timeout=30)
    for i in range(start, start + 100):
        cache.put(f"k{i}", {"i": i})


def test_cache_is_safe_with_several_processes(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, s)) for s in (0, 50, 100)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    cache = ResponseCache(path)
    assert len(cache) == 200 and cache.get("k149") == {"i": 149}


# -- token prices ---------------------------------------------------------------------------------


def test_token_price_per_input_equals_usage_times_price_by_hand(fake):
    p = make(fake.url)
    texts = ["good a", "bad b c", "good d e f", "bad", "good g h i j"]
    p.predict(texts)
    price = TokenPrice(input_per_million=0.15, output_per_million=0.60)
    got = price.per_input(p.usage(texts))
    for text, value in zip(texts, got):
        words = len(p.prompt.render(text).split())  # the fake server's prompt_tokens
        assert value == pytest.approx(words * 0.15 / 1e6 + 1 * 0.60 / 1e6, rel=1e-12, abs=0)
    assert np.isnan(price.per_input(p.usage(["never asked"]))).all()
    with pytest.raises(ValueError):
        TokenPrice(-1.0, 0.0)


def test_pickles_without_clients(fake):
    import pickle

    p = make(fake.url)
    p.predict(["good"])
    q = pickle.loads(pickle.dumps(p))
    assert q.predict(["bad"]).labels.tolist() == ["neg"]
    assert os.environ.get("NOPE") is None


def test_codes_sharing_the_answers_first_token_are_a_collision_error():
    top = [(" negative", math.log(0.8)), (" positive", math.log(0.1))]
    with pytest.raises(PredictionError, match=r"collide in the server's tokenizer.*' negative'.*first tokens differ"):
        class_scores(top, ["negative one", "negative two"])
    # the same codes are fine while the first token tells them apart
    assert class_scores([(" negative one", 0.0)], ["negative one", "negative two"]).class_mass == 1.0
