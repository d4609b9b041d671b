"""The errors a user is meant to see, in a module that imports nothing heavy, so the command line can catch them
without loading torch. Each message says what is wrong and how to fix it, in one line."""

from __future__ import annotations


class TransferlabError(Exception):
    """An expected failure with a message for the user (bad input, missing weights, unreadable file)."""


class DatasetError(TransferlabError, ValueError):
    """A problem with the photo folder itself, explained in one line."""


class WeightsUnavailable(TransferlabError, RuntimeError):
    """No pretrained weights could be found or fetched; the message says how to fix it."""


class UnreadableImage(TransferlabError):
    """Raised when a file is not a decodable image; the message says why in one line."""
