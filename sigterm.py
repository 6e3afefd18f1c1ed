"""SIGTERM (a scheduler's time limit or preemption, `kill`) handled by this process, where Python's default ends it at
once without a word: `SigtermHandler`, the base of a `with` block's handler, and `SigtermRaises` for work that has no
step to end at cleanly (the start-up, the final evaluation, export and push). Training has its own
(`training_guards.Termination`: the step under way ends, then a checkpoint is saved), in a block within the
start-up's. `CtrlC` is Ctrl-C's guard; `StopsHeld` holds their stop to the end of a short step whose outcome must be
known (a push's commit). `take_signal` installs a handler where Python's own handling is in place, and
`raise_between_locks` raises from one where no lock is left wrong (raised anywhere, as Python's KeyboardInterrupt is,
a SIGTERM left a lock taken, and a push hung). `WorkerLeavesSigterm` keeps DataLoader workers alive through a SIGTERM
meant for the run. Around the start-up (`forked_processes_end`), where datasets' process pool tokenizes, the pool's
workers end of SIGTERM once a message they are writing to the pool is written, and those still there `REMIND_AFTER`
seconds after the run's own SIGTERM are sent it again.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.context
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # `python -m hub`, which uses this module, imports no torch
    from torch.utils.data import DataLoader

EXIT_CODE = 143  # a shell's code for a command ended by SIGTERM (128 + 15)
CTRL_C_EXIT_CODE = 130  # ... and by Ctrl-C (128 + 2)
# Seconds from a SIGTERM to a block with `forked_processes_end` until the processes it started that are still there
# are sent it again: a pool's shutdown ends them within a second, and `accelerate launch` passes a SIGTERM on to every
# process of the run and sends SIGKILL 5 s later.
REMIND_AFTER = 2.0


def take_signal(signum: int, handler: Callable) -> Callable | None:
    """Install `handler` for `signum` where Python's own handling of it is in place (SIGINT: raise KeyboardInterrupt;
    others: the default action), or an enclosing block's `SigtermHandler`, and this is the main thread -> the handler
    it replaced, to give back with `signal.signal(signum, earlier)`; None where it left the signal alone (ignored, or
    the caller's own handler; off the main thread, where no handler can be installed)."""
    python_default = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
    current = signal.getsignal(signum)
    ours = isinstance(getattr(current, "__self__", None), SigtermHandler)
    if threading.current_thread() is not threading.main_thread() or (current is not python_default and not ours):
        return None
    return signal.signal(signum, handler)


class SigtermHandler:
    """`with handler:` SIGTERM to this process calls `handler.on_sigterm(first, frame)` (`first`: whether it is the
    first one; `frame`: where the main thread was), and sets `handler.received`. A launcher passes the scheduler's
    SIGTERM on to a process that the scheduler signals itself as well, so a second one is to be expected. A process
    forked within inherits the handler and leaves the signal to its parent (a DataLoader worker, until torch installs
    its own handler over it: `WorkerLeavesSigterm` then takes over), or, with `forked_processes_end`, ends of it as by
    Python's default (a worker of datasets' process pool, which its pool ends with SIGTERM when the work stops), once a
    message it is writing to its pool's queue is written (`_queue_put_under_way`). Blocks nest: an inner one takes the
    signal until it ends. Where `take_signal` leaves SIGTERM alone, nothing changes."""

    def __init__(self, forked_processes_end: bool = False):
        self.received = False
        self.forked_processes_end = forked_processes_end
        self._earlier = self._pid = None
        self._ending = False  # in a forked process, SIGTERM came while it was writing to its pool's queue
        self._ended = threading.Event()

    def __enter__(self) -> SigtermHandler:
        self._pid = os.getpid()
        self._earlier = take_signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        if os.getpid() == self._pid:
            first, self.received = not self.received, True
            if first and self.forked_processes_end:
                threading.Thread(target=self._remind_started_processes, name="sigterm-reminder", daemon=True).start()
            self.on_sigterm(first, frame)
        elif self.forked_processes_end:
            if self._ending or (put := _queue_put_under_way(frame)) is None:
                _end_by_sigterm()
            else:  # ended within, the queue's lock would stay taken: the pool's shutdown waited on it for ever
                self._ending = True  # a second SIGTERM ends it at once
                sys.setprofile(lambda f, event, arg: _end_by_sigterm() if event == "return" and f is put else None)

    def on_sigterm(self, first: bool, frame: FrameType | None) -> None:
        """What SIGTERM does (in the main thread, between two bytecodes of whatever runs there)."""

    def _remind_started_processes(self) -> None:
        """From `REMIND_AFTER` seconds after the first SIGTERM until the block ends, SIGTERM again, every second, to
        each process this one started that is still there. A pool's shutdown ends its workers with SIGTERM and waits
        for them; a worker forked just before (the pool replaced one that a scheduler's SIGTERM to every process of the
        run had ended) was seen waiting for work for ever, its SIGTERM handler still in place: the signal never ran it,
        most likely dropped as it came before Python's after-fork set-up (3 of 18 such SIGTERMs, torch 2.15)."""
        wait = REMIND_AFTER
        while not self._ended.wait(wait):
            for process in _started_processes():
                with contextlib.suppress(ProcessLookupError):  # ended meanwhile
                    os.kill(process.pid, signal.SIGTERM)
            wait = 1.0

    def __exit__(self, *exc_info) -> None:
        self._ended.set()
        if self._earlier is not None:
            signal.signal(signal.SIGTERM, self._earlier)


def _started_processes() -> list:
    """The processes this one started (`multiprocessing`'s, and `multiprocess`'s: datasets' pool) that are still
    there."""
    processes = multiprocessing.active_children()
    with contextlib.suppress(ImportError):  # `python -m hub` runs without datasets' multiprocess
        import multiprocess
        processes += multiprocess.active_children()
    return processes


def _end_by_sigterm() -> None:
    """End this process of SIGTERM, as Python's default does."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _queue_put_under_way(frame: FrameType | None) -> FrameType | None:
    """The frame of a process pool's `SimpleQueue.put` (`multiprocessing`'s or `multiprocess`'s, datasets') that
    `frame` runs within, if any. The put holds the queue's lock, shared by the processes that write to it, until it
    returns: a pool worker ended within it kept the pool's shutdown (`Pool.terminate`, which ends its workers with
    SIGTERM while they may be sending a result) waiting for that lock for ever."""
    while frame is not None:
        if frame.f_code.co_qualname == "SimpleQueue.put" and \
                frame.f_globals.get("__name__") in ("multiprocessing.queues", "multiprocess.queues"):
            return frame
        frame = frame.f_back
    return None


# Frames that take or give back a lock for their caller (a `with` block's, a `try` block's; a condition's wait gives
# its lock back and takes it again): an exception raised within one, once the lock is taken and before the caller's
# block has begun, or before the lock is given back, leaves it taken for ever, or given back twice (CPython issue
# 29988).
LOCK_FRAMES = frozenset({"__enter__", "__exit__", "acquire", "release", "_acquire_restore", "_release_save"})
# Seconds after which an exception waiting for such a frame to return is raised within it: taking a free lock takes
# microseconds, so a frame still under way waits for one, where raising leaves nothing taken (filelock's `acquire`
# polls for a lock that another process may hold while it downloads a model).
LOCK_FRAME_WAIT = 1.0


def _frame_to_leave(frame: FrameType) -> FrameType | None:
    """The frame whose return an exception raised in `frame` must wait for, if any: the outermost `__del__` or weak
    reference callback that `frame` runs within (they run wherever an object is freed, and Python prints their
    exceptions and goes on: the exception would be lost), else `frame` itself where it is one of LOCK_FRAMES."""
    lost, outer = None, frame
    while outer is not None:
        if outer.f_code.co_name == "__del__" or outer.f_globals.get("__name__") in ("weakref", "_weakrefset"):
            lost = outer
        outer = outer.f_back
    return lost or (frame if frame.f_code.co_name in LOCK_FRAMES else None)


def raise_between_locks(exception: BaseException, frame: FrameType | None) -> None:
    """Raise `exception` from a signal handler, whose `frame` is where the main thread was: now, or, where raising
    within that frame breaks (`_frame_to_leave`), at the first call after the frame to leave returned (or within a
    lock frame still under way after LOCK_FRAME_WAIT seconds, which waits for its lock). Raised within a lock's
    `__enter__`, a lock of a thread pool's futures stayed taken, so the pool's threads waited on it for ever, and the
    main thread on them (a push's uploads: the push never ended)."""
    earlier = sys.getprofile()
    if getattr(earlier, "raises", None) is not None:  # one is waiting to be raised already
        return
    under_way = frame and _frame_to_leave(frame)
    if under_way is None:
        raise exception
    since = time.monotonic()

    def raise_at_next_call(called: FrameType, event: str, arg) -> None:
        nonlocal under_way, since
        if under_way is not None:
            if under_way.f_code.co_name not in LOCK_FRAMES or time.monotonic() - since < LOCK_FRAME_WAIT:
                if event == "return" and called is under_way:  # back where it was called (from C: where it was freed)
                    under_way, since = called.f_back and _frame_to_leave(called.f_back), time.monotonic()
                return
            under_way = None  # it waits for a lock
        if event == "call":
            under_way, since = _frame_to_leave(called), time.monotonic()
        if under_way is None and event in ("call", "c_call") and getattr(arg, "__name__", None) not in LOCK_FRAMES:
            sys.setprofile(earlier)
            raise exception

    raise_at_next_call.raises = exception
    sys.setprofile(raise_at_next_call)


class Terminated(BaseException):
    """SIGTERM within `SigtermRaises`; a BaseException, as Ctrl-C's KeyboardInterrupt, so that no `except Exception`
    on its way takes it for an error of the work it stopped."""


class SigtermRaises(SigtermHandler):
    """`with SigtermRaises() as sigterm:` SIGTERM raises `Terminated` where the main thread is (where it leaves no
    lock wrong: `raise_between_locks`), so the work's own clean-up runs (`finally`, `except BaseException`) and the
    caller says what was kept (`sigterm.received`). Raised once: a second SIGTERM must not break into the clean-up of
    the first."""

    def on_sigterm(self, first: bool, frame: FrameType | None) -> None:
        if first:
            raise_stop(Terminated(), frame)


class StopsHeld:
    """`with StopsHeld(note):` a Ctrl-C or SIGTERM that `CtrlC` or `SigtermRaises` would raise within the block is
    noted (`note` goes to stderr) and raised as the block ends, in place of any error the block raised; a second Ctrl-C
    raises at once. For a short step whose outcome the caller must know to say what the stop left: a push's commit,
    which the Hub makes whether or not its answer is read."""

    held: StopsHeld | None = None  # the innermost block under way
    stops = (KeyboardInterrupt, Terminated)

    def __init__(self, note: str):
        self.note, self.pending, self._outer = note, None, None

    def __enter__(self) -> StopsHeld:
        self._outer, StopsHeld.held = StopsHeld.held, self
        return self

    @classmethod
    def hold(cls, stop: BaseException) -> bool:
        """From a signal handler: note `stop` where a block holds stops and has none yet -> whether it did."""
        block = cls.held
        if block is None or block.pending is not None:
            return False
        block.pending = stop
        with contextlib.suppress(OSError):  # fd 2, not sys.stderr: the handler may have interrupted a buffered write
            os.write(2, f"\n{block.note}\n".encode())
        return True

    def __exit__(self, exc_type, exc, tb) -> None:
        StopsHeld.held = self._outer
        if self.pending is not None and not isinstance(exc, self.stops):
            raise self.pending from exc


def raise_stop(stop: BaseException, frame: FrameType | None) -> None:
    """From a signal handler (`frame`: where the main thread was): hold `stop` for the `StopsHeld` block under way, if
    any, else raise it where no lock is left wrong (`raise_between_locks`)."""
    if not StopsHeld.hold(stop):
        raise_between_locks(stop, frame)


class CtrlC:
    """`with CtrlC() as ctrl_c:` notes in `ctrl_c.pressed` whether SIGINT (Ctrl-C) came within, and raises
    KeyboardInterrupt as Python's own handler does, but where it leaves no lock wrong (`raise_between_locks`). A
    terminal signals every process of the job, DataLoader workers too: one stopped while it started ends training with
    torch's "DataLoader worker ... exited unexpectedly" (a RuntimeError) in place of KeyboardInterrupt, which `pressed`
    tells apart from a worker that crashed. SIGINT that is not Python's default (ignored, or the caller's own
    handler), or off the main thread, is left alone."""

    def __init__(self):
        self.pressed = False
        self._earlier = None

    def __enter__(self) -> CtrlC:
        self._earlier = take_signal(signal.SIGINT, self._on_sigint)
        return self

    def _on_sigint(self, signum, frame):
        self.pressed = True
        raise_stop(KeyboardInterrupt(), frame)

    def __exit__(self, *exc_info) -> None:
        if self._earlier is not None:
            signal.signal(signal.SIGINT, self._earlier)


class WorkerLeavesSigterm:
    """A DataLoader's `worker_init_fn` (`init_fn` runs after it): in the worker, SIGTERM from the process that made the
    loader ends the worker, as torch's own handler does with its parent's, and SIGTERM from anyone else is left to
    that process. A scheduler signals every process of a job, DataLoader workers too, and torch's worker died of it:
    a run that went on to the end of its step (or to the step its processes agree on, or through a dev evaluation)
    found its workers gone ("DataLoader worker ... exited unexpectedly") and stopped without its checkpoint. The run
    stops its workers as it stops, and a worker whose parent has died exits of itself (torch's watchdog). Where
    `signal.sigwaitinfo`, which tells the sender, is missing (macOS), torch's handling stays. Use it through
    `workers_leave_sigterm`. A worker started by forkserver (Linux's default from Python 3.14) is guarded so only
    where the fork server started with SIGTERM blocked (`own_forkserver`): else it, and the server, die of it."""

    def __init__(self, init_fn: Callable[[int], None] | None = None):
        self.init_fn, self.parent = init_fn, os.getpid()

    def __call__(self, worker_id: int) -> None:
        if hasattr(signal, "sigwaitinfo"):
            # Blocked in this thread, and so in the threads it starts: the signal waits for `_take_sigterm`'s thread.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
            threading.Thread(target=self._take_sigterm, name="sigterm", daemon=True).start()
        if self.init_fn is not None:
            self.init_fn(worker_id)

    def _take_sigterm(self) -> None:
        while signal.sigwaitinfo({signal.SIGTERM}).si_pid != self.parent:
            pass
        os._exit(0)


if hasattr(signal, "sigwaitinfo"):  # where a worker can tell its parent's SIGTERM (not macOS, not Windows)

    class SpawnProcessSigtermBlocked(multiprocessing.context.SpawnProcess):
        """A spawned process started with SIGTERM blocked in the starting thread, so that every thread of it starts
        with the signal blocked: a spawned DataLoader worker runs threads that its imports start (numpy's OpenBLAS
        pool) before `WorkerLeavesSigterm`, and one of those took the signal, and died of it."""

        @staticmethod
        def _Popen(process_obj):
            earlier = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
            try:
                return multiprocessing.context.SpawnProcess._Popen(process_obj)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, earlier)  # a SIGTERM meanwhile is delivered now

    class SpawnContextSigtermBlocked(multiprocessing.context.SpawnContext):
        Process = SpawnProcessSigtermBlocked

    # A loader's start method -> its replacement. Not forkserver (`own_forkserver`): its server, started so, blocks
    # SIGTERM in every process it starts later, any code's. A forked worker has no thread but the one
    # WorkerLeavesSigterm guards.
    SIGTERM_BLOCKED_CONTEXTS = {"spawn": SpawnContextSigtermBlocked()}
else:
    SIGTERM_BLOCKED_CONTEXTS = {}

# Whether this process is the run's own, and the modules its fork server imports (`own_forkserver`).
_forkserver_is_the_runs = False
_forkserver_preload: list[str] = []


def own_forkserver(preload: Sequence[str] = ()) -> None:
    """Declare this process the run's own (run_simcse's command line, not a notebook that trains in its own process):
    where its DataLoader workers start by forkserver (Linux's default from Python 3.14), `workers_leave_sigterm` then
    starts multiprocessing's fork server with SIGTERM blocked, so that the server and every process it forks start
    with it blocked in every thread, as a spawned worker does (`SpawnProcessSigtermBlocked`). A SIGTERM to the run's
    process group (a scheduler's) killed the workers of a dev evaluation and the server, and the run stopped without
    its checkpoint. Every process the server starts later, any code's, starts so: a process of other code's would not
    end of SIGTERM (a `multiprocessing.Pool`'s `terminate`), hence the run's own process only.

    preload: modules the server imports once, before it forks a worker, so that each worker has them. The server of
    Python 3.11 to 3.13 leaves out the script (`__main__`) it is asked to preload, and every worker of every DataLoader
    iteration (each epoch, each dev evaluation) imported torch, datasets and the run's modules afresh, a second or more
    each; 3.14's imports the script."""
    global _forkserver_is_the_runs
    _forkserver_is_the_runs = True
    _forkserver_preload[:] = preload


def _start_forkserver() -> None:
    """Start multiprocessing's fork server, where it is not running yet (`ensure_running` leaves a running one as it
    is), with the run's modules imported (`own_forkserver`) and, where a worker can tell who sent a SIGTERM, that
    signal blocked."""
    from multiprocessing import forkserver, resource_tracker

    if _forkserver_preload:
        multiprocessing.set_forkserver_preload(["__main__", *_forkserver_preload])  # "__main__": the default's
    if not hasattr(signal, "sigwaitinfo"):  # macOS: torch's handling of SIGTERM stays (`WorkerLeavesSigterm`)
        forkserver.ensure_running()
        return
    resource_tracker.ensure_running()  # first: starting the tracker unblocks SIGTERM in this thread, blocked or not
    earlier = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        forkserver.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, earlier)


def workers_leave_sigterm(loader: DataLoader) -> DataLoader:
    """`loader`, its workers (if any) leaving SIGTERM to this process (`WorkerLeavesSigterm`); spawned ones started
    with SIGTERM blocked (`SIGTERM_BLOCKED_CONTEXTS`), and those of a fork server where the process is the run's own
    (`own_forkserver`)."""
    iterated = getattr(loader, "base_dataloader", loader)  # accelerate's prepared loader wraps the one it iterates
    if not iterated.num_workers or isinstance(iterated.worker_init_fn, WorkerLeavesSigterm):
        return loader
    iterated.worker_init_fn = WorkerLeavesSigterm(iterated.worker_init_fn)
    method = (iterated.multiprocessing_context or multiprocessing.get_context()).get_start_method()
    if method in SIGTERM_BLOCKED_CONTEXTS:
        iterated.multiprocessing_context = SIGTERM_BLOCKED_CONTEXTS[method]
    elif method == "forkserver" and _forkserver_is_the_runs:
        _start_forkserver()
    return loader


def stopped_by(signal_exception: KeyboardInterrupt | Terminated) -> tuple[str, int]:
    """Ctrl-C's KeyboardInterrupt or SIGTERM's `Terminated` -> the prefix of the line the stopped work says ("" or
    "SIGTERM: ") and its exit code."""
    return ("SIGTERM: ", EXIT_CODE) if isinstance(signal_exception, Terminated) else ("", CTRL_C_EXIT_CODE)
