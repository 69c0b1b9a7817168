"""An LLM behind an OpenAI-compatible endpoint as a classifier stage.

:class:`OpenAIPredictor` asks the model for one short code per class and turns the
``top_logprobs`` of the first answer token into class probabilities (the rule is in
:mod:`confroute.predictors._llm_prompt`). It speaks ``POST /v1/chat/completions`` (default) or
``POST /v1/completions`` to OpenAI, vLLM, the llama.cpp servers, TGI, Ollama, LiteLLM, ...

Calls (sync and async share one path: the sync methods run the async one on a private event loop):

* one request per input, at most ``max_concurrency`` in flight per predictor;
* ``timeout`` is a **deadline** for a whole request (connect, send, every byte of the answer),
  not a per-read timeout: a server that trickles its body still fails at ``timeout`` seconds,
  with :class:`~confroute.exceptions.StageTimeoutError`;
* HTTP 429 and 5xx: when the answer has ``Retry-After`` (at most ``max_retry_after`` seconds),
  the predictor waits that long and tries again, up to ``retry_after_retries`` times; then (or
  at once without ``Retry-After``) it raises
  :class:`~confroute.exceptions.RemoteUnavailableError` (``.retry_after`` holds the server's
  wish) so that a :class:`~confroute.Fallback`'s retries, backoff and circuit breaker apply;
  connection refused or reset is a ``RemoteUnavailableError`` too;
* other HTTP errors (400, 401, 404): :class:`~confroute.exceptions.RemoteStageError`;
* a 200 answer without logprobs, or one where no class code is among the top tokens:
  :class:`~confroute.exceptions.PredictionError`. The error names the failing rows; under
  ``Fallback(split_on_failure=True)`` only those rows degrade, and with a cache the other rows
  are not paid twice.

Requires ``httpx`` (``pip install 'confroute[llm]'``).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from ..core.types import PredictionError, Predictions
from ..exceptions import RemoteStageError, StageTimeoutError
from ._cache import ResponseCache, cache_key
from ._llm_prompt import DEFAULT_TEMPLATE, LLMCall, LLMPrompt, check_usage
from ._http import Transport, error_detail, retry_after_seconds, short, status_error
from ._text import check_texts
from .base import Predictor

__all__ = ["OpenAIPredictor", "LOGPROBS_HINT"]

#: What to turn on when a server answers without logprobs.
LOGPROBS_HINT = (
    "turn logprobs on at the server: llama-cpp-python `python -m llama_cpp.server --logits_all true`; "
    "vLLM `--max-logprobs N` (N >= top_logprobs); llama.cpp's llama-server returns them for `logprobs`/"
    "`n_probs` (keep it recent); Ollama >= 0.12; OpenAI: a model that supports logprobs"
)


def _import_httpx() -> Any:
    try:
        import httpx
    except ImportError:
        raise ImportError("OpenAIPredictor needs httpx: pip install 'confroute[llm]'") from None
    return httpx


class OpenAIPredictor(Predictor):
    """A classifier made of an LLM behind an OpenAI-compatible API.

    Parameters
    ----------
    base_url : str
        Up to and including the API version, e.g. ``"https://api.openai.com/v1"`` or
        ``"http://127.0.0.1:8000/v1"``.
    model : str
    classes : sequence
        Class values in column order.
    codes : sequence of str, optional
        The answer the model gives for each class (default ``str(class)``); see
        :class:`~confroute.predictors._llm_prompt.LLMPrompt`.
    template : str
        The prompt, with the input slot ``{input}`` (and optionally ``{choices}``, ``{codes}``).
    system : str, optional
        A system message.
    endpoint : {"chat", "completions"}, default "chat"
    api_key_env : str, optional
        Name of the environment variable that holds the API key (sent as a Bearer token). The key
        is read when a connection opens and is never stored on the predictor, printed, logged or
        put in an error message. ``None``: no key (a local server).
    top_logprobs : int, default 20
        How many top tokens to ask for (OpenAI allows up to 20).
    logit_bias : mapping, optional
        ``{token_id: bias}`` sent as is: constrains the answer to the class codes' tokens where the
        server supports it (OpenAI, vLLM, llama-cpp-python, llama.cpp's llama-server; not Ollama's
        OpenAI API). A bias shared by every class token leaves the class probabilities unchanged.
    extra_body : mapping, optional
        More request fields (e.g. vLLM's ``{"guided_choice": ["A", "B"]}``).
    max_concurrency : int, default 8
        Requests in flight at once (and sockets open) per predictor, across every thread and
        event loop.
    timeout : float, default 30.0
        Deadline in seconds for a whole request.
    connect_timeout : float, default 5.0
    retry_after_retries : int, default 2
        Waits for ``Retry-After`` before giving up with ``RemoteUnavailableError``.
    max_retry_after : float, default 30.0
        A longer ``Retry-After`` is not waited for: the error goes to the caller at once.
    cache : ResponseCache or str or path, optional
        Where answers are kept (a path opens a :class:`ResponseCache`); ``None``: no cache.
    batch_size : int, optional
        Inputs per :meth:`predict` chunk (each input is its own request either way).
    name : str, optional

    Attributes
    ----------
    calls : dict
        ``{input text: LLMCall}``: the token usage (``prompt_tokens``, ``completion_tokens``),
        the probability mass on the class codes and whether the answer came from the cache.
    n_requests : int
        HTTP requests sent (retries included; cache hits send none).

    Examples
    --------
    >>> p = OpenAIPredictor("http://127.0.0.1:8000/v1", "smollm2", ["negative", "positive"],
    ...                     codes=["A", "B"], template="Review: {input}\\nA) negative B) positive\\nAnswer:")
    >>> p
    OpenAIPredictor(base_url='http://127.0.0.1:8000/v1', model='smollm2', classes=('negative', 'positive'), codes=('A', 'B'), endpoint='chat')
    """

    input_kind: str | None = "text"
    cancellable = True  # a Fallback cancels a sync call at its timeout (the request is dropped)

    # long: one validated parameter per line
    def __init__(
        self,
        base_url: str,
        model: str,
        classes: Sequence[Any],
        *,
        codes: Sequence[str] | None = None,
        template: str = DEFAULT_TEMPLATE,
        system: str | None = None,
        endpoint: Literal["chat", "completions"] = "chat",
        api_key_env: str | None = None,
        top_logprobs: int = 20,
        logit_bias: Mapping[Any, float] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        max_concurrency: int = 8,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        retry_after_retries: int = 2,
        max_retry_after: float = 30.0,
        cache: ResponseCache | str | os.PathLike[str] | None = None,
        batch_size: int | None = None,
        case_sensitive: bool = True,
        name: str | None = None,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if endpoint not in ("chat", "completions"):
            raise ValueError(f"endpoint must be 'chat' or 'completions', got {endpoint!r}")
        if not 1 <= int(top_logprobs) <= 20:
            raise ValueError(f"top_logprobs must lie in [1, 20], got {top_logprobs}")
        if int(max_concurrency) < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if not timeout > 0 or not connect_timeout > 0:
            raise ValueError(f"timeouts must be > 0 seconds, got timeout={timeout}, connect_timeout={connect_timeout}")
        if int(retry_after_retries) < 0 or not max_retry_after >= 0:
            raise ValueError("retry_after_retries and max_retry_after must be >= 0")
        if api_key_env is not None and not os.environ.get(api_key_env):
            raise ValueError(
                f"the API key environment variable {api_key_env!r} is not set (or empty); export it, or pass "
                "api_key_env=None for a server without keys"
            )
        _import_httpx()
        self.prompt = LLMPrompt(tuple(classes), None if codes is None else tuple(codes), template, system, case_sensitive)
        self.classes = self.prompt.classes
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.endpoint = endpoint
        self.api_key_env = api_key_env
        self.top_logprobs = int(top_logprobs)
        self.logit_bias = None if logit_bias is None else {str(k): float(v) for k, v in logit_bias.items()}
        self.extra_body = dict(extra_body or {})
        self.max_concurrency = int(max_concurrency)
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.retry_after_retries = int(retry_after_retries)
        self.max_retry_after = float(max_retry_after)
        self.cache = cache if cache is None or isinstance(cache, ResponseCache) else ResponseCache(cache)
        self.batch_size = batch_size
        self.name = name or f"openai:{model}"
        self.calls: dict[str, LLMCall] = {}
        self.n_requests = 0
        self._lock = threading.Lock()
        self._http = Transport(self.base_url, name=self.name, timeout=self.timeout, connect_timeout=self.connect_timeout,
                               max_connections=self.max_concurrency, headers=self._headers, extra="llm")

    # -- requests ------------------------------------------------------------------------------------

    @property
    def path(self) -> str:
        return "/chat/completions" if self.endpoint == "chat" else "/completions"

    def request_body(self, text: str) -> dict[str, Any]:
        """The JSON body sent for one input."""
        body: dict[str, Any] = {"model": self.model, "max_tokens": 1, "temperature": 0.0}
        if self.endpoint == "chat":
            body.update(messages=self.prompt.messages(text), logprobs=True, top_logprobs=self.top_logprobs)
        else:
            prompt = self.prompt.render(text)
            body.update(prompt=f"{self.prompt.system}\n{prompt}" if self.prompt.system else prompt,
                        logprobs=self.top_logprobs)
        if self.logit_bias:
            body["logit_bias"] = self.logit_bias
        body.update(self.extra_body)
        return body

    def _headers(self) -> dict[str, str]:
        """Sent with every request; the API key is read here, when the client opens."""
        if self.api_key_env is None:
            return {}
        key = os.environ.get(self.api_key_env)
        if not key:
            raise RemoteStageError(f"{self.name}: the API key environment variable {self.api_key_env!r} is not set")
        return {"Authorization": f"Bearer {key}"}

    async def _post(self, body: dict[str, Any]) -> Any:
        """One request under its deadline (the shared transport: connect, send, the whole answer)."""
        with self._lock:
            self.n_requests += 1
        return await self._http.arequest("POST", self.path, json=body)

    async def _ask(self, text: str) -> dict[str, Any]:
        """The answer's top tokens and usage for one input: from the cache or the server."""
        body = self.request_body(text)
        key = cache_key(url=self.base_url + self.path, body=body)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return {**hit, "cached": True, "key": key}
        for attempt in range(self.retry_after_retries + 1):
            response = await self._post(body)
            status = int(response.status_code)
            if status == 200:
                break
            wait = retry_after_seconds(response.headers.get("retry-after"))
            transient = status == 429 or status >= 500
            if transient and wait is not None and wait <= self.max_retry_after and attempt < self.retry_after_retries:
                await asyncio.sleep(wait)
                continue
            raise self._http_error(response, status, wait, transient)
        top, usage = self._parse(response)
        return {"top": top, "usage": usage, "cached": False, "key": key}

    def _http_error(self, response: Any, status: int, wait: float | None, transient: bool) -> Exception:
        """The shared mapping (:func:`confroute.predictors._http.status_error`: 429/5xx are
        ``RemoteUnavailableError`` with ``retry_after``), plus the logprobs hint."""
        detail = error_detail(response)
        hint = f"; {LOGPROBS_HINT}" if "logprob" in detail.lower() or "logits_all" in detail else ""
        return status_error(response, f"{self.name}: POST {self.path}", hint)

    def _parse(self, response: Any) -> tuple[list[tuple[str, float]], dict[str, int] | None]:
        try:
            data = response.json()
            choice = data["choices"][0]
        except (ValueError, KeyError, IndexError, TypeError):
            raise PredictionError(f"{self.name}: the answer is not an OpenAI completion: {short(response.text)}") from None
        logprobs: Any = choice.get("logprobs") if isinstance(choice, dict) else None
        try:
            if self.endpoint == "chat":
                entries = logprobs["content"][0]["top_logprobs"]
                top = [(str(e["token"]), float(e["logprob"])) for e in entries]
            else:
                top = [(str(t), float(v)) for t, v in logprobs["top_logprobs"][0].items()]
        except (KeyError, IndexError, TypeError, ValueError):
            top = []
        if not top:
            raise PredictionError(f"{self.name}: the server answered without top logprobs; {LOGPROBS_HINT}")
        usage = check_usage(data.get("usage"))
        return top, None if usage is None else {"prompt_tokens": usage.prompt_tokens,
                                                 "completion_tokens": usage.completion_tokens}

    async def _one(self, text: str) -> np.ndarray:
        answer = await self._ask(text)
        scores = self.prompt.scores(answer["top"], self.name)  # raises: nothing cached
        if not answer["cached"] and self.cache is not None:
            self.cache.put(answer["key"], {"top": answer["top"], "usage": answer["usage"]})
        usage = answer["usage"] or {}
        with self._lock:
            self.calls[text] = LLMCall(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)),
                                       scores.class_mass, bool(answer["cached"]))
        return scores.logprobs

    # -- Predictor -----------------------------------------------------------------------------------

    async def _apredict_batch(self, inputs: Sequence[Any]) -> Predictions:
        texts = check_texts(inputs, self.name)
        results = await asyncio.gather(*(self._one(t) for t in texts), return_exceptions=True)
        failed = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
        errors = [r for r in results if isinstance(r, BaseException)]
        for e in errors:
            if not isinstance(e, Exception):
                raise e  # cancelled, interrupted
        if errors:
            # a transient failure first (Fallback retries it), then a bad answer
            first = next((e for e in errors if isinstance(e, (RemoteStageError, StageTimeoutError))), errors[0])
            if isinstance(first, PredictionError) and len(texts) > 1:
                raise PredictionError(f"rows {failed} of {len(texts)}: {first}") from first
            raise first
        rows = [r for r in results if isinstance(r, np.ndarray)]
        return Predictions.from_logits(np.vstack(rows), self.classes, source=self.name)

    def _predict_batch(self, inputs: Sequence[Any]) -> Predictions:
        return self._http.run(self._apredict_batch(inputs))  # on the transport's private loop

    # -- usage ---------------------------------------------------------------------------------------

    def usage(self, inputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Token usage per input (``nan`` for an input never answered), for a :class:`TokenPrice`."""
        prompt = np.full(len(inputs), np.nan)
        completion = np.full(len(inputs), np.nan)
        for i, text in enumerate(inputs):
            call = self.calls.get(text)
            if call is not None:
                prompt[i], completion[i] = call.prompt_tokens, call.completion_tokens
        return {"prompt_tokens": prompt, "completion_tokens": completion}

    def close(self) -> None:
        """Close the HTTP client (its sockets) and its loop thread; the next call reopens them."""
        self._http.close()

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        await self._http.aclose()

    def __enter__(self) -> OpenAIPredictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> OpenAIPredictor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"OpenAIPredictor(base_url={self.base_url!r}, model={self.model!r}, classes={self.classes!r}, "
                f"codes={self.prompt.codes!r}, endpoint={self.endpoint!r})")
