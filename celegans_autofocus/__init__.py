"""celegans_autofocus: one-shot CNN autofocus for C. elegans tracking microscopes."""

__version__ = "0.1.0"
