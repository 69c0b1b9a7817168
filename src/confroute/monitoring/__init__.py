"""Monitoring a deployed router: shadow audits, label requests, anytime-valid certificates."""
