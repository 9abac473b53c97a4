"""Test support: harnesses and fixtures shared by the test folders and bench/."""
