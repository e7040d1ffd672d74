"""The package logger; handlers and levels are configured only by ``cli.main``."""

import logging

logger = logging.getLogger("lmforge")
