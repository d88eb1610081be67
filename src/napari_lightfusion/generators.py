"""Driving a generator that yields progress and returns a result.

The long jobs (resampling, fine-tuning) are generators: they yield progress
(for a worker thread to report, or for Cancel to stop between steps) and
``return`` their result, which a ``for`` loop would drop. :class:`Steps`
keeps it; :func:`run_to_end` runs a job without a worker.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import Any, Generic, TypeVar

Y = TypeVar("Y")
R = TypeVar("R")


class Steps(Generic[Y, R]):
    """A generator's yields to loop over, and what it returned (:attr:`value`) once the loop has ended."""

    def __init__(self, generator: Generator[Y, Any, R]):
        self._generator = generator
        self.value: R | None = None

    def __iter__(self) -> Iterator[Y]:
        self.value = yield from self._generator


def run_to_end(generator: Generator[Y, Any, R], each: Callable[[Y], object] | None = None) -> R:
    """Run ``generator`` to its end, handing every yielded value to ``each`` (if given); return its result."""
    steps = Steps(generator)
    for update in steps:
        if each is not None:
            each(update)
    return steps.value
