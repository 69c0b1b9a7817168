"""The version of confroute, in one place (pyproject.toml must agree: tests/test_packaging.py)."""

__version__ = "0.2.0"
