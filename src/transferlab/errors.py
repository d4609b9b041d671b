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


class DatasetError(UsageError):
    """A problem with the photo folder itself, explained in one line."""


class WeightsUnavailable(TransferlabError, RuntimeError):
    """No pretrained weights could be found or fetched; the message says how to fix it."""


class UnreadableImage(TransferlabError):
    """Raised when a file is not a decodable image; the message says why in one line."""


class RunNotFound(TransferlabError, FileNotFoundError):
    """A folder that is not (or not yet) the run or file a command needs."""


class DownloadError(TransferlabError, RuntimeError):
    """A download failed or its file does not check out."""
