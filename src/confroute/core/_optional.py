"""Optional dependencies, imported on first use with an error that names the extra to install."""

from __future__ import annotations

from typing import Any

__all__ = ["import_pandas"]


def import_pandas() -> Any:
    """The pandas module, or an ImportError telling the user to install ``confroute[pandas]``."""
    try:
        import pandas
    except ImportError:  # pragma: no cover - exercised only without pandas
        raise ImportError("to_pandas() needs pandas: pip install 'confroute[pandas]'") from None
    return pandas
