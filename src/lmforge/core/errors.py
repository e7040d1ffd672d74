"""Exceptions whose message is shown to the user as is (no traceback unless --debug)."""


class LmforgeError(Exception):
    """An error the user can act on: the message says what was wrong, where, and what to do."""


class RecipeError(LmforgeError):
    """A recipe that cannot run: raised before any work starts."""


class DataError(LmforgeError):
    """Input data that is missing, unreadable or empty after filtering."""
