"""User-facing errors.

Every error a user can cause by bad input or missing files derives from :class:`AdvmetaError`.
The CLI prints ``str(err)`` as one line and exits with code 2; library users catch the class.
"""

from __future__ import annotations


class AdvmetaError(Exception):
    """Base class of errors caused by the user's input or environment (never a bug)."""


class ConfigError(AdvmetaError, ValueError):
    """An invalid name, value or combination of settings."""


class DataNotFoundError(AdvmetaError, FileNotFoundError):
    """A dataset's files are missing; the message names the files and every place looked."""


class CorruptDataError(AdvmetaError):
    """A data file failed its checksum or could not be decoded."""


class ResourceError(AdvmetaError):
    """The requested compute resources (e.g. a GPU) do not exist."""


class NonFiniteLossError(AdvmetaError, FloatingPointError):
    """Training produced a NaN or infinite loss."""
