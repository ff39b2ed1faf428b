"""Error types shared by every BMS-Flux package.

Every error a user can act on is a :class:`BMSError`; tool layers turn it into an
``status: "error"`` envelope with its message. Anything else is a bug and is
reported as an internal error with the exception type.
"""

from __future__ import annotations


class BMSError(Exception):
    """An error with a message a user can act on."""


class InputError(BMSError, ValueError):
    """The input data or an argument is wrong (missing column, bad value, ...)."""


class PathError(BMSError, PermissionError):
    """A path is missing, or outside the workspace and the allowed directories."""


class ModelError(BMSError, LookupError):
    """A registered model is missing, corrupt, or does not match the data."""
