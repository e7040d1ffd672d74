"""``lmforge improve RUN_DIR``: learn from the corrections users sent to ``lmforge serve``."""
