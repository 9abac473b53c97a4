"""Coral: discover the services of a fleet and run audited operations on them."""

__version__ = "0.1.0"
