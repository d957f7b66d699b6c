"""Movable Ink erasure connector for Fides."""

__version__ = "0.1.0"
