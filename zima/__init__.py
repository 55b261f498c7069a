"""Zima: the open control stack of a camera-equipped tracked robot."""

__version__ = "0.1.0"
