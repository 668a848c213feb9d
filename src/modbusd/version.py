"""The version, in a leaf module every room may import."""

__version__ = "0.1.0"
