"""Checkpoint converters: turn third-party weights into this package's diffusers-format folders.

Each converter is a module runnable with ``python -m`` and exposed as a console script; none is
imported by the package at import time.
"""
