"""Calciphylaxis decision support for dialysis care: a CDS Hooks 2.0 service."""

__version__ = "0.1.0"
