"""Tests in the real WebUIs (a package, so its conftest does not shadow tests/conftest.py)."""
