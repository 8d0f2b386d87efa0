"""The dataset's two failure kinds: the whole dataset, or one stack."""
from __future__ import annotations


class DatasetError(ValueError):
    """The dataset as a whole cannot be used (missing directory, unreadable labels.csv)."""


class StackError(ValueError):
    """One stack cannot be labelled; the message names it and the reason."""
