"""SIGTERM (a scheduler's time limit or preemption, `kill`) handled by this process, where Python's default ends it at
once without a word: `take_sigterm` for any handler, `SigtermRaises` for work that has no step to end at cleanly.

Training has its own (`training_guards.Termination`: the step under way ends, then a checkpoint is saved).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

EXIT_CODE = 143  # a shell's code for a command ended by SIGTERM (128 + 15)


def take_sigterm(handler: Callable) -> Callable | None:
    """Install `handler` for SIGTERM where SIGTERM is Python's default and this is the main thread -> the handler it
    replaced, to give back with `signal.signal(signal.SIGTERM, earlier)`; None where it left SIGTERM alone (ignored, or
    the caller's own handler; off the main thread, where no handler can be installed)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        return None
    return signal.signal(signal.SIGTERM, handler)


class Terminated(BaseException):
    """SIGTERM within `SigtermRaises`; a BaseException, as Ctrl-C's KeyboardInterrupt, so that no `except Exception`
    on its way takes it for an error of the work it stopped."""


class SigtermRaises:
    """`with SigtermRaises() as sigterm:` SIGTERM raises `Terminated` where the main thread is, so the work's own
    clean-up runs (`finally`, `except BaseException`) and the caller says what was kept (`sigterm.received`). Raised
    once: a launcher passes the scheduler's SIGTERM on to a process that the scheduler signals itself as well, and a
    second one must not break into the clean-up of the first. A process forked within (a DataLoader worker) leaves
    the signal to its parent, which ends it."""

    def __init__(self):
        self.received = False
        self._earlier = self._pid = None

    def __enter__(self) -> SigtermRaises:
        self._pid = os.getpid()
        self._earlier = take_sigterm(self._on_sigterm)
        return self

    def _on_sigterm(self, signum, frame):
        if os.getpid() == self._pid and not self.received:
            self.received = True
            raise Terminated

    def __exit__(self, *exc_info) -> None:
        if self._earlier is not None:
            signal.signal(signal.SIGTERM, self._earlier)
