"""The errors this package raises on purpose; each message names the bad value and what is
allowed."""

from __future__ import annotations


class ForecasterError(Exception):
    """Base of every error this package raises on purpose."""


class InputError(ForecasterError):
    """Input that cannot be used as a whole (a file of the wrong shape, an unknown column)."""


class StoreLockedError(ForecasterError):
    """Another process holds the database file."""


class SchemaVersionError(ForecasterError):
    """The database was written by a newer forecaster than this one."""


class ConfigError(ForecasterError):
    """A setting or configuration file is invalid."""


class RefreshFailedError(ForecasterError):
    """A refresh failed as a whole (it is recorded as a failed run, with why)."""
