"""lmforge: the whole large-model lifecycle from one YAML recipe and one CLI."""

__version__ = "0.1.0"
