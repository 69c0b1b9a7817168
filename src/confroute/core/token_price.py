"""Token prices: what each input cost at an LLM stage, from its measured token usage.

No vendor's price table is built in (prices change): the user gives the prices per million
input (prompt) and output (completion) tokens, and the stage records the usage of every call
(``OpenAIPredictor.calls`` / ``.usage(inputs)``). :meth:`TokenPrice.per_input` turns the two into
one price per input, the per-input stage price a :class:`~confroute.CostModel` charges an input
that reaches the stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["TokenPrice"]


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
    >>> [round(x, 10) for x in price.per_input({"prompt_tokens": [100, 250], "completion_tokens": [1, 1]})]
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
