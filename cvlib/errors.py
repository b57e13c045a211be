"""Errors a user can act on. Each message says what, where, and what to do."""
from __future__ import annotations


class CvlibError(Exception):
    """Base class; `exit_code` is what the command line returns."""

    exit_code = 1


class ParamError(CvlibError):
    """Study parameters are wrong (unknown key, bad value, missing file)."""

    exit_code = 2


class InputDataError(CvlibError):
    """A client file cannot be used as mapped (missing column, unreadable file)."""

    exit_code = 2


class StageError(CvlibError):
    """A stage notebook failed; the message points to its rendered HTML."""

    exit_code = 1


class StageInputError(StageError):
    """A stage notebook stopped on a problem with the input data or parameters (exit code 2)."""

    exit_code = 2


class RunError(CvlibError):
    """A run could not be finished (disk full, read-only folder, a file that vanished); it is recorded as failed."""

    exit_code = 1
