"""What routing costs, and what it saves against sending everything to the last stage.

The accounting is the honest cascade one: every input pays the first stage; an input the first
stage defers pays the second stage *as well*, and so on. The baseline is sending every input
straight to the last stage.

Worked example (the study's, corrected): 10 million inputs a day, $0.001 per input on the sparse
model, $0.005 on the dense one, 70% answered by the sparse model::

    sparse on everything      10,000,000 x 0.001 = $10,000
    dense on the 30% deferred  3,000,000 x 0.005 = $15,000
    routed system                                  $25,000 / day
    all-dense baseline        10,000,000 x 0.005 = $50,000 / day   -> 50% saved

The original study printed $220,000: it was off by a factor of ten and left out the sparse
model's cost on the deferred inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CostModel", "StageCost", "Savings", "TokenPrice"]

_SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class StageCost:
    """The price of sending one input to one stage.

    Parameters
    ----------
    per_sample : float
        Price per input (any currency unit, used consistently).
    seconds_per_sample : float, optional
        Compute time per input (the inverse of throughput), when known; it gives
        :meth:`CostModel.time`.
    name : str, optional

    Examples
    --------
    >>> StageCost.hourly(0.50, 100).per_sample  # CPU at $0.50/h serving 100 inputs/s
    1.388888888888889e-06
    """

    per_sample: float
    seconds_per_sample: float | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if not np.isfinite(self.per_sample) or self.per_sample < 0:
            raise ValueError(f"per-sample price must be a finite number >= 0, got {self.per_sample}")
        if self.seconds_per_sample is not None and not self.seconds_per_sample > 0:
            raise ValueError(f"seconds_per_sample must be > 0, got {self.seconds_per_sample}")

    @classmethod
    def hourly(cls, price_per_hour: float, throughput: float, name: str | None = None) -> StageCost:
        """From an hourly machine price and a throughput in inputs per second."""
        if not throughput > 0:
            raise ValueError(f"throughput must be > 0 inputs/s, got {throughput}")
        if not price_per_hour >= 0:
            raise ValueError(f"price_per_hour must be >= 0, got {price_per_hour}")
        return cls(price_per_hour / (_SECONDS_PER_HOUR * throughput), 1.0 / throughput, name)


@dataclass(frozen=True)
class Savings:
    """Cost of the routed system against the all-last-stage baseline."""

    cost: float
    baseline: float
    n: float

    @property
    def saved(self) -> float:
        return self.baseline - self.cost

    @property
    def fraction(self) -> float:
        """Share of the baseline saved (negative when routing costs more)."""
        return self.saved / self.baseline if self.baseline else 0.0

    def __str__(self) -> str:
        return (
            f"cost {self.cost:,.6g} vs {self.baseline:,.6g} all-last-stage "
            f"for {self.n:,.0f} inputs: saves {self.saved:,.6g} ({self.fraction:.1%})"
        )


class CostModel:
    """Per-stage prices for an N-stage cascade (two stages: primary, fallback).

    Parameters
    ----------
    stages : sequence of StageCost, float or TokenPrice
        One entry per stage, in cascade order; a float is a per-sample price. A
        :class:`TokenPrice` prices the stage by the tokens each input measurably used: a router
        reads the usage its stage's predictor recorded (``predictor.usage(inputs)``, e.g.
        :class:`~confroute.OpenAIPredictor`) as it routes, and :func:`~confroute.evaluate` binds
        the usage of every evaluated input (:meth:`with_usage`), so tables, thresholds and
        savings use the money each input really cost.

    Examples
    --------
    The study's example: $0.001 sparse vs $0.005 dense, 10 M inputs/day, 70% kept by sparse.

    >>> cm = CostModel.per_sample([0.001, 0.005])
    >>> s = cm.savings(coverage=0.7, n=10_000_000)
    >>> round(s.cost), round(s.baseline), f"{s.fraction:.0%}"
    (25000, 50000, '50%')

    The study's hourly form: CPU $0.50/h at 100 inputs/s, GPU $1.50/h at 10 inputs/s.

    >>> hourly = CostModel.hourly([(0.50, 100), (1.50, 10)])
    >>> f"{hourly.savings(coverage=0.7).fraction:.1%}"
    '66.7%'

    An LLM stage priced per million tokens ($0.15 prompt, $0.60 completion), behind a classifier
    at $0.00001 per input; two inputs, both sent to the LLM, used 100 and 250 prompt tokens:

    >>> tokens = CostModel([0.00001, TokenPrice(0.15, 0.60)])
    >>> usage = {"prompt_tokens": [100, 250], "completion_tokens": [1, 1]}
    >>> tokens.per_input(np.ones((2, 2), dtype=bool), usage=[None, usage]).round(10).tolist()
    [2.56e-05, 4.81e-05]
    """

    def __init__(self, stages: Sequence[StageCost | float | TokenPrice]) -> None:
        items = _per_stage_list(stages, "one StageCost or price per stage", "CostModel([0.001, 0.005])")
        for i, stage in enumerate(items):
            if not isinstance(stage, (StageCost, TokenPrice)):
                StageCost(_price(stage, i))  # checks the price: finite, >= 0
        self.stages = stages
        #: Per-input prices, shape ``(n_stages, n)``, when the price depends on the input
        #: (:meth:`from_input_prices`); ``None`` for one price per stage.
        self.input_prices: np.ndarray | None = None

    @classmethod
    def from_input_prices(cls, prices: Sequence[Any], n: int, names: Sequence[str] | None = None) -> CostModel:
        """Prices that may depend on the input: per stage, a number or an array of ``n`` prices.

        Token-priced APIs and deeper cascades have a later stage whose price depends on the input.
        :meth:`per_input` then prices each input at its own prices (so ``reached`` must have ``n``
        columns); :attr:`stage_costs` holds the mean price of each stage.

        Examples
        --------
        >>> cm = CostModel.from_input_prices([1.0, [10.0, 20.0, 30.0]], 3)
        >>> cm.per_input(np.array([[1, 1, 1], [0, 1, 1]], dtype=bool)).tolist()
        [1.0, 21.0, 31.0]
        >>> cm.baseline(3)
        60.0
        """
        items = _per_stage_list(prices, "one price (or array of per-input prices) per stage",
                                "CostModel.from_input_prices([1.0, token_prices], n)")
        matrix = np.stack([_input_prices(p, n, i) for i, p in enumerate(items)]) if n else np.zeros((len(items), 0))
        labels = _names(names, len(items), "prices")
        means = matrix.mean(axis=1) if n else np.zeros(len(items))
        out = cls([StageCost(float(m), None, name) for m, name in zip(means, labels)])
        out.input_prices = matrix
        return out

    @classmethod
    def per_sample(cls, prices: Sequence[float], names: Sequence[str] | None = None) -> CostModel:
        """From one price per input per stage (and, optionally, one name per stage)."""
        items = _per_stage_list(prices, "one price per stage", "CostModel.per_sample([0.001, 0.005])")
        labels = _names(names, len(items), "prices")
        return cls([StageCost(_price(p, i), None, n) for i, (p, n) in enumerate(zip(items, labels))])

    @classmethod
    def hourly(
        cls, stages: Sequence[tuple[float, float]], names: Sequence[str] | None = None
    ) -> CostModel:
        """From ``(price_per_hour, inputs_per_second)`` per stage."""
        example = "CostModel.hourly([(0.50, 100), (1.50, 10)])"
        items = _per_stage_list(stages, "one (price_per_hour, inputs_per_second) pair per stage", example)
        labels = _names(names, len(items), "stages")
        out = []
        for i, (pair, n) in enumerate(zip(items, labels)):
            if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
                raise TypeError(
                    f"stage {i}: give a (price_per_hour, inputs_per_second) pair, got {pair!r}; e.g. {example}"
                )
            out.append(StageCost.hourly(_price(pair[0], i), _price(pair[1], i), n))
        return cls(out)

    @property
    def stage_costs(self) -> np.ndarray:
        """Per-sample price of each stage, shape ``(n_stages,)`` (``nan`` for a stage priced by
        tokens until its usage is bound with :meth:`with_usage`)."""
        return np.array([np.nan if isinstance(s, TokenPrice) else _stage(s).per_sample for s in self.stages],
                        dtype=np.float64)

    @property
    def token_stages(self) -> tuple[int, ...]:
        """The stages priced by tokens (:class:`TokenPrice`), whose price depends on each input."""
        return tuple(i for i, s in enumerate(self.stages) if isinstance(s, TokenPrice))

    def stage_prices(self, stage: int, usage: Mapping[str, Any]) -> np.ndarray:
        """Price of each input at a token-priced ``stage`` from its measured ``usage``
        (``{"prompt_tokens": [...], "completion_tokens": [...]}``; ``nan`` where unknown)."""
        price = self.stages[stage]
        if not isinstance(price, TokenPrice):
            raise ValueError(f"stage {stage} has one price per input, not a TokenPrice")
        return price.per_input(usage)

    def with_usage(self, usage: Sequence[Mapping[str, Any] | None], names: Sequence[str] | None = None) -> CostModel:
        """The per-input prices of ``n`` inputs from the token usage measured on each of them.

        ``usage`` has one entry per stage: ``None`` for a stage with one price, the measured usage
        of the ``n`` inputs (``predictor.usage(inputs)``) for a :class:`TokenPrice` stage. Returns
        a :meth:`from_input_prices` model of those ``n`` inputs; an input without a recorded call
        is an error (its price is unknown, never 0).

        Examples
        --------
        >>> cm = CostModel([1e-5, TokenPrice(0.15, 0.60)])
        >>> bound = cm.with_usage([None, {"prompt_tokens": [100, 250], "completion_tokens": [1, 1]}])
        >>> bound.answered_by(2).round(10).tolist()
        [[1e-05, 1e-05], [2.56e-05, 4.81e-05]]
        """
        if len(usage) != self.n_stages:
            raise ValueError(f"give one usage (or None) per stage ({self.n_stages}), got {len(usage)}")
        priced = {s: self.stage_prices(s, u) for s in self.token_stages if (u := usage[s]) is not None}
        missing = [s for s in self.token_stages if s not in priced]
        if missing:
            raise ValueError(f"stage {missing[0]} is priced by tokens: give the usage measured on its inputs")
        if not priced:
            raise ValueError("no stage of this cost model is priced by tokens: use it as it is")
        n = next(iter(priced.values())).shape[0]
        for s, prices in priced.items():
            if prices.shape != (n,):
                raise ValueError(f"stage {s}: usage of {prices.shape[0]} inputs, other stages have {n}")
            unknown = int(np.isnan(prices).sum())
            if unknown:
                raise ValueError(
                    f"stage {s}: {unknown} of {n} inputs have no recorded call, so their price is unknown "
                    "(run the stage on every input first, e.g. evaluate())"
                )
        per_stage = [priced[s] if s in priced else _stage(p).per_sample for s, p in enumerate(self.stages)]
        labels = list(names) if names is not None else [
            None if isinstance(p, TokenPrice) else _stage(p).name for p in self.stages
        ]
        return CostModel.from_input_prices(per_stage, n, labels)  # type: ignore[arg-type]

    @property
    def n_stages(self) -> int:
        return len(self.stages)

    def check_stages(self, n_stages: int) -> None:
        """Raise ``ValueError`` unless this model prices exactly ``n_stages`` stages."""
        if n_stages != self.n_stages:
            raise ValueError(f"cost model has {self.n_stages} stages but the router has {n_stages}")

    def per_input(self, reached: np.ndarray, usage: Sequence[Mapping[str, Any] | None] | None = None,
                  *, prices: np.ndarray | None = None) -> np.ndarray:
        """Cost of each input from the ``(n_stages, n)`` mask of stages it was sent to.

        The one price rule of the library: every other cost here (:meth:`answer_costs`,
        :meth:`baseline`, the threshold sweep, :meth:`Evaluation.at <confroute.Evaluation.at>`)
        is computed by calling it.

        A stage priced by tokens needs each input's price there: ``usage`` (one entry per stage,
        the measured usage of the ``n`` inputs for a :class:`TokenPrice` stage) or ``prices``
        (``(n_stages, n)``: the price each input paid at each stage, read for the token stages).
        An input that reached a token stage with no known price costs ``nan`` (unknown, never 0).
        """
        reached = np.asarray(reached, dtype=bool)
        self.check_stages(reached.shape[0])
        if self.token_stages:
            return self._token_per_input(reached, usage, prices)
        if self.input_prices is not None:
            if reached.shape != self.input_prices.shape:
                raise ValueError(
                    f"this cost model prices {self.input_prices.shape[1]} inputs; got a mask of shape {reached.shape}"
                )
            return np.asarray((self.input_prices * reached).sum(axis=0), dtype=np.float64)
        return self.stage_costs @ reached

    def _token_per_input(
        self, reached: np.ndarray, usage: Sequence[Mapping[str, Any] | None] | None, prices: np.ndarray | None
    ) -> np.ndarray:
        n = reached.shape[1]
        if prices is None and usage is None:
            raise ValueError(
                f"stage {self.token_stages[0]} is priced by tokens (TokenPrice): its price depends on the tokens "
                "each input used; give the measured usage (per_input(reached, usage=...), or "
                "cost_model.with_usage([...]) for a fixed set of inputs); a router reads it from the stage's "
                "predictor as it routes"
            )
        matrix = np.zeros((self.n_stages, n))
        for s, stage in enumerate(self.stages):
            if not isinstance(stage, TokenPrice):
                matrix[s] = _stage(stage).per_sample
            elif prices is not None:
                matrix[s] = np.asarray(prices, dtype=np.float64)[s]
            else:
                assert usage is not None
                used = usage[s] if len(usage) == self.n_stages else None
                if used is None:
                    raise ValueError(f"give one usage per stage; stage {s} is priced by tokens")
                matrix[s] = self.stage_prices(s, used)
        return np.asarray(np.where(reached, matrix, 0.0).sum(axis=0), dtype=np.float64)

    def answered_by(self, n: int) -> np.ndarray:
        """Cost of each of ``n`` inputs if stage ``s`` answers it, shape ``(n_stages, n)``.

        Row ``s`` is :meth:`per_input` of inputs that reached stages ``0..s``; the threshold
        sweep cumulates the difference of two rows along the threshold path, so it calls
        :meth:`per_input` once per stage on whole vectors.

        Examples
        --------
        >>> CostModel.per_sample([1.0, 10.0]).answered_by(2).tolist()
        [[1.0, 1.0], [11.0, 11.0]]
        """
        k = self.n_stages
        reached = np.arange(k)[:, None] <= np.arange(k)[None, :]  # reached[j, s]: stage j <= s
        return np.stack([self.per_input(np.repeat(reached[:, s:s + 1], n, axis=1)) for s in range(k)])

    @classmethod
    def coerce(cls, cost_model: Any, n_stages: int) -> CostModel | None:
        """A :class:`CostModel` from a cost model or a sequence of per-input prices (``None``
        passes through), checked against the number of stages."""
        if cost_model is None:
            return None
        if not isinstance(cost_model, CostModel) and any(isinstance(p, TokenPrice) for p in _as_list(cost_model)):
            cost_model = cls(list(cost_model))
        if not isinstance(cost_model, CostModel):
            try:
                prices = [float(p) for p in np.asarray(cost_model, dtype=np.float64).reshape(-1)]
            except (TypeError, ValueError):
                raise TypeError(
                    "cost_model must be a CostModel or a sequence of per-input prices, one per stage, "
                    f"got {type(cost_model).__name__}"
                ) from None
            cost_model = cls([StageCost(p) for p in prices])
        if cost_model.n_stages != n_stages:
            raise ValueError(f"need one price per stage ({n_stages}), got {cost_model.stage_costs.tolist()}")
        return cost_model

    def answer_costs(self) -> np.ndarray:
        """Cost of one input answered by each stage: it paid that stage and every earlier one
        (with per-input prices: the mean over inputs)."""
        if self.input_prices is not None:
            n = self.input_prices.shape[1]
            return self.answered_by(n).mean(axis=1) if n else np.zeros(self.n_stages)
        return self.answered_by(1)[:, 0]

    def cost_of_answers(self, answered: Any) -> np.ndarray:
        """Total cost from the number of inputs each stage answered, shape ``(..., n_stages)``."""
        answered = np.asarray(answered, dtype=np.float64)
        if answered.shape[-1] != self.n_stages:
            raise ValueError(f"need counts for {self.n_stages} stages, got shape {answered.shape}")
        return answered @ self.answer_costs()

    def savings_of(self, total_cost: Any, n: int) -> np.ndarray:
        """Savings of a total cost over ``n`` inputs against sending them all to the last stage."""
        base = self.baseline(n)
        with np.errstate(invalid="ignore", divide="ignore"):
            return 1.0 - np.asarray(total_cost, dtype=np.float64) / base if base else np.full(np.shape(total_cost), np.nan)

    def cost(self, result: Any) -> float:
        """Total cost of a :class:`~confroute.RoutingResult` (with stages priced by tokens: the
        per-input costs the router measured as it routed, ``result.cost``)."""
        if self.token_stages and getattr(result, "cost", None) is not None:
            return float(np.sum(result.cost))
        return float(self.per_input(result.reached).sum())

    def expected_cost(self, coverage: float | Sequence[float], n: float = 1.0) -> float:
        """Cost of ``n`` inputs when the first stages answer the given share.

        ``coverage`` is the share the first stage answers (two stages), or, for a cascade, the
        shares answered by each stage but the last (the last answers the rest).
        """
        reach = self.reach_fractions(coverage)
        answered = -np.diff(np.r_[reach, 0.0])  # share answered by each stage
        return float(n * (answered @ self.answer_costs()))

    def reach_fractions(self, coverage: float | Sequence[float]) -> np.ndarray:
        """Share of inputs that reach each stage, from the shares each non-last stage answers."""
        answered = np.atleast_1d(np.asarray(coverage, dtype=np.float64))
        if answered.shape != (self.n_stages - 1,):
            raise ValueError(
                f"give {self.n_stages - 1} answered share(s) for {self.n_stages} stages, got {answered.tolist()}"
            )
        if (answered < 0).any() or answered.sum() > 1 + 1e-12:
            raise ValueError(f"answered shares must be >= 0 and sum to <= 1, got {answered.tolist()}")
        return np.concatenate([[1.0], 1.0 - np.cumsum(answered)])

    def baseline(self, n: float = 1.0) -> float:
        """Cost of sending ``n`` inputs straight to the last stage (with per-input prices: the
        inputs it prices, scaled to ``n``)."""
        m = 1 if self.input_prices is None else self.input_prices.shape[1]
        last_only = np.zeros((self.n_stages, m), dtype=bool)
        last_only[-1] = True
        per = self.per_input(last_only)
        return float(n * per.mean()) if m else 0.0

    def savings(
        self, result: Any = None, *, coverage: float | Sequence[float] | None = None, n: float = 1.0
    ) -> Savings:
        """Savings of a routing result, or of an expected coverage over ``n`` inputs."""
        if result is not None:
            return Savings(self.cost(result), self.baseline(len(result)), float(len(result)))
        if coverage is None:
            raise ValueError("give a RoutingResult or a coverage")
        return Savings(self.expected_cost(coverage, n), self.baseline(n), float(n))

    def time(self, result: Any) -> float:
        """Compute seconds spent on a result (needs ``seconds_per_sample`` on every stage)."""
        spp = [None if isinstance(s, TokenPrice) else _stage(s).seconds_per_sample for s in self.stages]
        if any(v is None for v in spp):
            raise ValueError("time() needs seconds_per_sample (or a throughput) for every stage")
        reached = np.asarray(result.reached, dtype=bool)
        self.check_stages(reached.shape[0])
        return float(np.asarray(spp, dtype=np.float64) @ reached.sum(axis=1))

    def to_dict(self) -> dict[str, Any]:
        return {
            "stages": [
                {"input_per_million": s.input_per_million, "output_per_million": s.output_per_million}
                if isinstance(s, TokenPrice) else
                {"name": _stage(s).name, "per_sample": _stage(s).per_sample,
                 "seconds_per_sample": _stage(s).seconds_per_sample}
                for s in self.stages
            ]
        }

    def __repr__(self) -> str:
        parts = ", ".join(repr(s) if isinstance(s, TokenPrice) else f"{_stage(s).per_sample:.6g}" for s in self.stages)
        per = "mean per_sample" if self.input_prices is not None else "per_sample"
        return f"CostModel({per}=[{parts}])"


def _per_stage_list(values: Any, what: str, example: str) -> list[Any]:
    """``values`` as a list with one entry per stage; a scalar or a string is refused."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise TypeError(f"give {what} (a list, one entry per stage), got {values!r}; e.g. {example}")
    items = list(values)
    if not items:
        raise ValueError(f"a cost model needs at least one stage; give {what}, e.g. {example}")
    return items


def _names(names: Sequence[str] | None, n: int, what: str) -> list[str | None]:
    if names is None:
        return [None] * n
    if isinstance(names, str) or len(names) != n:
        count = 1 if isinstance(names, str) else len(names)
        raise ValueError(
            f"{n} {what} but {count} name{'s' if count != 1 else ''}: give one name per stage (or none)"
        )
    return list(names)


def _price(value: Any, stage: int) -> float:
    """A price (or throughput) of stage ``stage`` as a float; a string or None is refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"stage {stage}: a price must be a number, got {value!r}")
    return float(value)


def _input_prices(value: Any, n: int, stage: int) -> np.ndarray:
    """Stage ``stage``'s price of each of ``n`` inputs: a number for all, or ``n`` numbers."""
    if isinstance(value, (bool, str, bytes)) or value is None:
        raise TypeError(f"stage {stage}: a price must be a number or an array of {n} numbers, got {value!r}")
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"stage {stage}: prices must be a number or have shape ({n},), got {arr.shape}")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError(f"stage {stage}: prices must be finite and >= 0")
    return arr


def _stage(s: Any) -> StageCost:
    return s if isinstance(s, StageCost) else StageCost(float(s))


def _as_list(values: Any) -> list[Any]:
    return list(values) if isinstance(values, (Sequence, np.ndarray)) and not isinstance(values, (str, bytes)) else []


#: An LLM stage's price per input comes from its token usage: no vendor's price table is built in
#: (prices change); the user gives the prices per million prompt and completion tokens, the stage
#: records the usage of every call (``OpenAIPredictor.calls`` / ``.usage(inputs)``), and
#: :meth:`TokenPrice.per_input` gives the per-input stage price that
#: :meth:`CostModel.from_input_prices` charges an input reaching the stage.
@dataclass(frozen=True)
class TokenPrice:
    """Prices per million tokens of one LLM stage.

    Parameters
    ----------
    input_per_million : float
        Price of one million prompt tokens.
    output_per_million : float
        Price of one million completion tokens.

    Examples
    --------
    >>> price = TokenPrice(0.15, 0.60)  # the user's own prices
    >>> price.per_input({"prompt_tokens": [100, 250], "completion_tokens": [1, 1]}).round(10).tolist()
    [1.56e-05, 3.81e-05]
    """

    input_per_million: float
    output_per_million: float

    def __post_init__(self) -> None:
        for name in ("input_per_million", "output_per_million"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite price >= 0, got {value!r}")

    def per_input(self, usage: Mapping[str, Any]) -> np.ndarray:
        """Price of each input: ``prompt_tokens x input + completion_tokens x output`` (per token).

        ``usage`` maps ``prompt_tokens`` and ``completion_tokens`` to one count per input (``nan``
        for an input with no recorded call gives ``nan``: an unknown price is never 0).
        """
        try:
            prompt = np.asarray(usage["prompt_tokens"], dtype=np.float64)
            completion = np.asarray(usage["completion_tokens"], dtype=np.float64)
        except KeyError as exc:
            raise KeyError(f"usage needs 'prompt_tokens' and 'completion_tokens', missing {exc}") from None
        if prompt.shape != completion.shape:
            raise ValueError(f"prompt_tokens {prompt.shape} and completion_tokens {completion.shape} differ in shape")
        if (prompt < 0).any() or (completion < 0).any():
            raise ValueError("token counts must be >= 0")
        return prompt * (self.input_per_million / 1e6) + completion * (self.output_per_million / 1e6)

    def mean_per_input(self, usage: Mapping[str, Any]) -> float:
        """The average price per input over the recorded calls (a flat per-input price)."""
        prices = self.per_input(usage)
        if not np.isfinite(prices).all():
            raise ValueError("some inputs have no recorded usage (nan): price only inputs the stage answered")
        return float(prices.mean()) if prices.size else float("nan")
