"""Exceptions as one line a user can read: what every "cannot read ...: <why>" message quotes.

Library errors (pydicom, tifffile, torch, zarr, ...) carry several lines,
a traceback's worth of detail or no message at all; the plugin reports one
line, in the widget's notifications, the command line's errors and the
batch summary.
"""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """An exception's message as one line (its first; its type's name when it has none), for a user to read."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def described(exc: BaseException) -> str:
    """An unexpected exception's type and first line: "MemoryError: out of memory" (its type alone if no message)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
