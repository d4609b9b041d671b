"""The errors a user is meant to see, in a module that imports nothing heavy, so the command line can catch them
without loading torch. Each message says what is wrong and how to fix it, in one line.

The command line exits 2 for a `UsageError` (a bad option or argument, a photo folder that cannot be used),
1 for any other `TransferlabError` (weights that cannot be had, a run folder without a model, a failed download),
and shows the traceback of anything else: that is a bug, and hiding it would hide where it is.
"""

from __future__ import annotations


class TransferlabError(Exception):
    """An expected failure with a message for the user."""


class UsageError(TransferlabError, ValueError):
    """A bad option or argument (the command line exits 2)."""


class Conflict(UsageError):
    """A request that another one, under way or just finished, makes impossible now (a page answers 409): a second
    training, a second change to the same photo."""


class InvalidSetting(UsageError):
    """A setting outside what it may be, named as the caller wrote it: `str()` says `seeds must be at least 1` to a
    Python caller, and the command line prints `as_flag()`, `--seeds must be at least 1`. Settings are checked once,
    where the Python API and the command line both pass (the config dataclasses and the API functions)."""

    def __init__(self, name: str, problem: str):
        self.name, self.problem = name, problem
        super().__init__(f"{name} {problem}")

    def as_flag(self) -> str:
        return f"--{self.name.replace('_', '-')} {self.problem}"


def at_least(name: str, value: float | None, least: float) -> None:
    """Raise `InvalidSetting` when `value` (None: not set) is below `least`."""
    if value is not None and value < least:
        raise InvalidSetting(name, f"must be at least {least}, got {value}")


def above(name: str, value: float, bound: float) -> None:
    """Raise `InvalidSetting` unless `value` is more than `bound`."""
    if not value > bound:
        raise InvalidSetting(name, f"must be more than {bound}, got {value}")


def one_of(name: str, value: object, choices: tuple[str, ...]) -> None:
    """Raise `InvalidSetting` unless `value` is one of `choices`."""
    if value not in choices:
        raise InvalidSetting(name, f"must be one of {', '.join(choices)}, got '{value}'")


class DatasetError(UsageError):
    """A problem with the photo folder itself, explained in one line."""


class WeightsUnavailable(TransferlabError, RuntimeError):
    """No pretrained weights could be found or fetched; the message says how to fix it."""


def first_line(error: BaseException) -> str:
    """An exception's message in one short line (a library's error can run to many)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:120]


class DamagedFile(TransferlabError):
    """A file transferlab wrote and cannot read back: emptied, cut short, overwritten, or not what it should be."""

    def __init__(self, path: object, problem: str, remedy: str):
        self.path = path
        super().__init__(f"{path} {problem}: {remedy}")


class UnreadableImage(TransferlabError):
    """Raised when a file is not a decodable image; the message says why in one line."""


class RunNotFound(TransferlabError, FileNotFoundError):
    """A folder that is not (or not yet) the run or file a command needs."""


class DownloadError(TransferlabError, RuntimeError):
    """A download failed or its file does not check out."""
