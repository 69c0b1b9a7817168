"""Moved to :mod:`confroute.selection.cascade` (a public module); kept so old imports work."""

from __future__ import annotations

from .cascade import CascadeChoice, choose_cascade

__all__ = ["CascadeChoice", "choose_cascade"]
