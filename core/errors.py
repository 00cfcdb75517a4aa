"""isamap's exception hierarchy, shared by gee_export, training and inference.

Every class inherits a built-in as well, so callers that already catch ``ValueError`` or
``OSError`` keep working. Messages say what is wrong *and* what to do about it. ``exit_code``
is what a command exits with when the error ends it: 2 for bad input (the user can fix the
command line or the files), 1 for the environment (storage, network, a remote service).
"""

from __future__ import annotations


class IsamapError(Exception):
    """Base class of every error isamap raises on purpose."""

    exit_code: int = 2


class ConfigError(IsamapError, ValueError):
    """A parameter or option has a value that cannot work."""


class OptionError(ConfigError):
    """A value out of its option's range: ``key`` (the option's name) and ``rule`` apart.

    The message names the flag (``--tile must be at least 8 pixels, got -256``); a command
    whose config file gave ``key`` tells the same rule naming the file and its key instead
    (:func:`core.config_file.config_file_error`).
    """

    def __init__(self, key: str, rule: str, flag: str | None = None) -> None:
        super().__init__(f"{flag or '--' + key.replace('_', '-')} {rule}")
        self.key = key
        self.rule = rule


class UnknownRegionError(IsamapError, LookupError):
    """A region name is not in the registry."""

    def __str__(self) -> str:  # LookupError would quote the message like a key
        return str(self.args[0]) if self.args else ""


class UnknownBandError(IsamapError, LookupError):
    """A band name is not in the band registry."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class GridError(IsamapError, ValueError):
    """A grid, window or patch request is inconsistent (wrong CRS, outside the grid...)."""


class InputDataError(IsamapError, ValueError):
    """Input rasters are unusable: corrupt, missing a band, wrong CRS, wrong product level."""


class EmptyCompositeError(IsamapError, ValueError):
    """A composite has no valid observation (empty month, all-cloud scene)."""


class StorageError(IsamapError, OSError):
    """Reading or writing a local path or gs:// object failed."""

    exit_code = 1


class StorageCredentialsError(StorageError):
    """Cloud Storage refused the credentials (or none could be handed to GDAL)."""


class ExtraNotInstalledError(IsamapError, ImportError):
    """A package of an optional extra is not installed (exit 1: the environment)."""

    exit_code = 1


class OutputLockedError(IsamapError, RuntimeError):
    """Another run holds the lock of the output folder (or bucket prefix) this run would write."""

    exit_code = 1


class ChecksumMismatchError(StorageError):
    """Bytes that arrived differ from the bytes that were sent."""


class EarthEngineError(IsamapError, RuntimeError):
    """An Earth Engine call failed for a reason other than authentication or quota."""

    exit_code = 1


class AuthenticationError(EarthEngineError):
    """Earth Engine is not authenticated or has no Cloud project."""


class QuotaError(EarthEngineError):
    """Earth Engine kept refusing after the retry budget (HTTP 429 / resource exhausted)."""


class ComputeBudgetError(IsamapError, RuntimeError):
    """A run stopped before its EECU estimate passed ``--max-eecu-hours`` (resumable).

    Exit 1, as a quota: the command was valid, the budget the user set ran out.
    """

    exit_code = 1


class ModelError(IsamapError, ValueError):
    """A model name, checkpoint or model file is unusable."""


class TrainingDivergedError(IsamapError, ArithmeticError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""
