"""Choosing thresholds, with or without a finite-sample guarantee."""
