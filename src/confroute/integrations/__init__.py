"""Integrations: data frames and Arrow tables, Ray Data, file loading."""
