"""Coral test suite."""
