"""User-facing errors.

Anything raised as a :class:`TransferLabError` carries a message written for the person at the keyboard
(what went wrong and what to do about it). The CLI prints it and exits non-zero; the app shows it.
Anything else is a bug and keeps its traceback.
"""


class TransferLabError(Exception):
    """An error whose message is meant for the user."""


class DataError(TransferLabError):
    """The dataset is missing, empty, malformed or unsuitable (e.g. one class only)."""


class DownloadError(TransferLabError):
    """A download failed (no network, truncated file, bad archive)."""


class WeightsUnavailable(TransferLabError):
    """Pretrained weights could not be found locally nor downloaded."""


class StorageError(TransferLabError, OSError):
    """A file or folder could not be written: read-only, a full disk, a file where a folder should be. Also an
    OSError, so that code which shrugs off a failed cache write keeps doing so."""


class TrainingDiverged(TransferLabError):
    """The loss stopped being a finite number (NaN or infinity): the learning rate is too high."""


class ConfigError(TransferLabError):
    """A configuration value is out of range or inconsistent."""
