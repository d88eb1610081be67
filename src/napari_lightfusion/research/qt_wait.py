"""Waiting in scripts that drive napari (the screenshot, the live-latency benchmark).

Tests wait with pytest-qt's ``qtbot.waitUntil``; scripts have no qtbot, so
they process Qt events themselves until a condition holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(condition: Callable[[], bool], timeout: float, what: str = "the condition") -> float:
    """Process Qt events until ``condition()`` is true; the milliseconds it took.

    Raises ``TimeoutError`` naming ``what`` when ``timeout`` seconds pass first.
    """
    from qtpy.QtWidgets import QApplication

    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"{what} did not happen within {timeout:g} s")
        QApplication.processEvents()
        time.sleep(0.001)
    return 1e3 * (time.perf_counter() - start)
