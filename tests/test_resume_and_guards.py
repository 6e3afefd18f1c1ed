"""Kill-and-resume gives the uninterrupted result; a NaN loss stops the run and keeps the last good checkpoint."""

import errno
import json
import logging
import math
import multiprocessing
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import types
from typing import NamedTuple

import pytest
import torch
import transformers
from accelerate.optimizer import AcceleratedOptimizer
from safetensors.torch import load_file
from torch.utils.data import DataLoader
from transformers import Trainer, TrainerCallback, TrainingArguments

import output_folder
import run_simcse
import sigterm
import sts_evaluation
from conftest import ROOT, SAMPLE, SHARED_DATA, logged_losses
from data_collator import SimCSECollator
from data_loading import load_nli_triplets, tokenize_rows
from hub.card import dev_points
from hub.model_dir import ModelDirError, check_export
from modeling_simcse import SimCSEModel
from sigterm import SigtermRaises, Terminated, workers_leave_sigterm
from test_run_simcse import smoke_config
from training_guards import (LastCheckpointKeeper, NonFiniteLossGuard, Termination, TrainingDiverged,
                             best_checkpoint_now, is_complete, last_complete_checkpoint)
from worker_datasets import WorkerPids


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The smoke run with every checkpoint kept, in this process: its results and output folder."""
    whole = tmp_path_factory.mktemp("whole")
    results = run_simcse.main([smoke_config(whole, save_total_limit=None)])
    return results, whole / "out"


def assert_same_export(a_dir, b_dir) -> None:
    a, b = load_file(str(a_dir / "model.safetensors")), load_file(str(b_dir / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0, msg=key)


def test_kill_and_resume_equals_uninterrupted(tmp_path, caplog, uninterrupted):
    results, out = uninterrupted
    assert sorted(os.listdir(out / "checkpoint-12")) and is_complete(str(out / "checkpoint-6"))

    # The same run in another folder, cut back to what a kill during the save of step 9 leaves: checkpoints 3 and 6,
    # a half-written checkpoint-9, no export.
    killed = tmp_path / "killed"
    killed.mkdir()
    run_simcse.main([smoke_config(killed, save_total_limit=None)])
    kept = {"checkpoint-3", "checkpoint-6", "checkpoint-9", "run_args.json"}
    for name in os.listdir(killed / "out"):
        path = killed / "out" / name
        if name not in kept:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for name in os.listdir(killed / "out" / "checkpoint-9"):
        if name != "model.safetensors":
            os.remove(killed / "out" / "checkpoint-9" / name)
    assert last_complete_checkpoint(str(killed / "out")).endswith("checkpoint-6")

    caplog.set_level(logging.INFO, logger="output_folder")
    resumed = run_simcse.main([smoke_config(killed, save_total_limit=None, resume_from_checkpoint="last")])
    assert f"resuming from {killed / 'out' / 'checkpoint-6'} (step 6 of 12)" in caplog.text
    assert (f"removing incomplete checkpoint {killed / 'out' / 'checkpoint-9'} (the run was stopped while saving it)"
            in caplog.text)
    assert "trained to its end" not in caplog.text
    assert is_complete(str(killed / "out" / "checkpoint-9"))  # the half-written one was replaced by a real one
    for name in results:
        assert resumed[name] == pytest.approx(results[name], abs=1e-6)
    assert_same_export(out, killed / "out")
    # The card's training time covers both sessions: the seconds up to checkpoint-6 (recorded in it) and the resumed
    # session's train_runtime (which alone it used to give).
    with open(killed / "out" / "checkpoint-6" / run_simcse.CLOCK_FILE) as f:
        before = json.load(f)["seconds"]
    with open(killed / "out" / "environment.json") as f:
        environment = json.load(f)
    with open(killed / "out" / "train_results.json") as f:
        runtime = json.load(f)["train_runtime"]
    assert before > 0 and environment["resumed_at_step"] == 6
    assert environment["training_seconds"] == pytest.approx(before + runtime, abs=2e-3)
    assert f"| training time | {environment['training_seconds']:.1f} s (resumed at step 6; all sessions) |" in (
        killed / "out" / "README.md").read_text()
    with open(out / "environment.json") as f:
        uninterrupted = json.load(f)
    assert uninterrupted["resumed_at_step"] is None and uninterrupted["training_seconds"] > 0
    # Both sessions on this machine, with these libraries: the card names each once.
    same = {"hardware": environment["hardware"], "versions": environment["versions"]}
    assert environment["sessions"] == [{"from_step": 0, **same}, {"from_step": 6, **same}]
    card = (killed / "out" / "README.md").read_text()
    assert f"| hardware | {environment['hardware']} |" in card
    assert f"| software | torch {torch.__version__}, transformers {transformers.__version__} |" in card


def test_a_run_resumes_with_other_settings_of_how_its_steps_are_computed(tmp_path):
    """After running out of GPU memory (or where torch could not compile), the errors advise embedding_chunk_size,
    activation checkpointing or no compiling, then resuming; the folder refused the resumption as another run. The same
    math (without dropout: the uninterrupted run's losses and scores), so it goes on; the processes of one run must
    still agree on them. Its dev points are the uninterrupted run's too: eval_on_start scored the encoder before
    training, and the resumed session does not score checkpoint-6 a second time."""
    settings = {"dropout": 0.0, "save_total_limit": None, "logging_steps": 1, "eval_on_start": True}
    whole = tmp_path / "whole"
    whole.mkdir()
    results = run_simcse.main([smoke_config(whole, **settings)])
    out = tmp_path / "out"
    out.mkdir()
    shutil.copytree(whole / "out" / "checkpoint-6", out / "checkpoint-6")
    shutil.copy(whole / "out" / "run_args.json", out)
    how = {"embedding_chunk_size": 4, "activation_checkpointing": True, "compile_layers": False}
    resumed = run_simcse.main([smoke_config(tmp_path, **settings, **how, resume_from_checkpoint="last",
                                            overwrite_output_dir=False)])
    for name in results:
        assert resumed[name] == pytest.approx(results[name], abs=1e-4)
    logs = [logged_losses(whole / "out"), logged_losses(out)]
    assert list(logs[0]) == list(range(1, 13)) and logs[1] == pytest.approx(logs[0], abs=1e-5)
    (steps, scores), (resumed_steps, resumed_scores) = (
        zip(*dev_points(json.loads((folder / "trainer_state.json").read_text()), "cosine_spearman"), strict=True)
        for folder in (whole / "out", out))
    assert steps == resumed_steps == (0, 3, 6, 9, 12) and resumed_scores == pytest.approx(scores, abs=1e-4)
    with open(out / "run_args.json") as f:
        assert json.load(f)["embedding_chunk_size"] == 4  # this session's, as the files it wrote are
    saved = {"embedding_chunk_size": None, "seed": 42}
    assert output_folder.changed_arguments(saved, {"embedding_chunk_size": 4, "seed": 42}) == ["embedding_chunk_size"]


def test_a_checkpoint_without_a_clock_record_resumes_with_the_time_before_it_unknown(tmp_path, uninterrupted):
    """A checkpoint of a run from before the training clock (no training_seconds.json in it) resumes to the
    uninterrupted run's scores; the checkpoints after it record no total they cannot know, and environment.json and
    the card give the resumed session's time alone, saying the time before it was not recorded."""
    results, _ = uninterrupted
    run_simcse.main([smoke_config(tmp_path, save_total_limit=None)])
    out = tmp_path / "out"
    for name in os.listdir(out):
        if name not in {"checkpoint-3", "checkpoint-6", "run_args.json"}:
            shutil.rmtree(out / name) if (out / name).is_dir() else (out / name).unlink()
    os.remove(out / "checkpoint-6" / run_simcse.CLOCK_FILE)
    resumed = run_simcse.main([smoke_config(tmp_path, save_total_limit=None, resume_from_checkpoint="last")])
    for name in results:
        assert resumed[name] == pytest.approx(results[name], abs=1e-6)
    assert not (out / "checkpoint-9" / run_simcse.CLOCK_FILE).exists() and (out / "checkpoint-9").is_dir()
    with open(out / "environment.json") as f:
        environment = json.load(f)
    assert environment["training_seconds"] is None and environment["resumed_at_step"] == 6
    with open(out / "train_results.json") as f:
        runtime = json.load(f)["train_runtime"]
    assert f"| training time | {runtime:.1f} s from the resumption at step 6 (before it: not recorded) |" in (
        out / "README.md").read_text()


def run_sigterm_at(config: str, step: int) -> subprocess.CompletedProcess:
    """The job of `config` in a fresh process (tests/sigterm_worker.py) with SIGTERM sent to it as `step` begins."""
    return subprocess.run([sys.executable, os.path.join(ROOT, "tests", "sigterm_worker.py"), config], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=ROOT, KILL_AT=str(step)))


def assert_resumes_as_uninterrupted(tmp_path, uninterrupted, **changes) -> None:
    """The smoke run in tmp_path (with `changes`), resumed from its last checkpoint, ends with the uninterrupted run's
    scores and exported weights."""
    resumed = run_simcse.main([smoke_config(tmp_path, resume_from_checkpoint="last", **changes)])
    results, whole = uninterrupted
    for name in results:
        assert resumed[name] == pytest.approx(results[name], abs=1e-6)
    assert_same_export(whole, tmp_path / "out")


def test_sigterm_while_training_saves_a_checkpoint_to_resume_from(tmp_path, uninterrupted):
    """A scheduler's time limit or preemption (SIGTERM) at step 5: the step ends, checkpoint-5 is saved and kept beside
    the best one (checkpoint-3; save_total_limit 1 and load_best_model_at_end, as the published configs, where
    Trainer would delete it as training ends), the run says how to resume and exits with 143; resumed, it ends with the
    uninterrupted run's weights."""
    proc = run_sigterm_at(smoke_config(tmp_path), 5)
    out = tmp_path / "out"
    assert proc.returncode == 143, proc.stderr[-3000:]
    assert "SIGTERM: saving a checkpoint of step 5 and stopping" in proc.stderr
    assert proc.stderr.endswith(f"SIGTERM: stopped at step 5 of 12; {out} holds checkpoint-5 (step 5): add "
                                "--resume_from_checkpoint last (or set \"resume_from_checkpoint\": true) to continue "
                                "from it\n"), proc.stderr[-3000:]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-5"]
    assert is_complete(str(out / "checkpoint-5")) and not (out / "config.json").exists()

    assert_resumes_as_uninterrupted(tmp_path, uninterrupted)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-6"]  # the best one, as uninterrupted


def test_sigterm_at_a_scored_step_under_save_strategy_best_stops_after_the_next_step_with_its_checkpoint(
        tmp_path, uninterrupted):
    """save_strategy "best": Trainer saves a step it scores only if its dev score is a new best, so a stop at step 9
    (scored every 3 steps, not the best) saved nothing, though the log said it did, and a resumption trained steps 7-9
    again. The stop goes to step 10, which is saved; resumed, the run ends with the uninterrupted run's weights."""
    proc = run_sigterm_at(smoke_config(tmp_path, save_strategy="best"), 9)
    out = tmp_path / "out"
    assert proc.returncode == 143, proc.stderr[-3000:]
    assert ("SIGTERM: step 9 is scored, and save_strategy best saves it only if its dev score is a new best: stopping "
            "after the next step, with its checkpoint") in proc.stderr
    assert "SIGTERM: saving a checkpoint of step 10 and stopping" in proc.stderr
    assert proc.stderr.endswith(f"SIGTERM: stopped at step 10 of 12; {out} holds checkpoint-10 (step 10): add "
                                "--resume_from_checkpoint last (or set \"resume_from_checkpoint\": true) to continue "
                                "from it\n"), proc.stderr[-3000:]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-10", "checkpoint-6"]

    assert_resumes_as_uninterrupted(tmp_path, uninterrupted, save_strategy="best")


def test_sigterm_at_the_last_step_under_save_strategy_best_stops_there(tmp_path):
    """No step follows the last one to take the stop: the run stops there (the step, not a new best, unsaved), with the
    best checkpoint to resume from, rather than go on to the final evaluation and export as if no SIGTERM had come."""
    proc = run_sigterm_at(smoke_config(tmp_path, save_strategy="best"), 12)
    out = tmp_path / "out"
    assert proc.returncode == 143, proc.stderr[-3000:]
    assert ("SIGTERM: stopping after step 12, which save_strategy best saves only if its dev score is a new best"
            in proc.stderr)
    assert proc.stderr.endswith(f"SIGTERM: stopped at step 12 of 12; {out} holds checkpoint-6 (step 6): add "
                                "--resume_from_checkpoint last (or set \"resume_from_checkpoint\": true) to continue "
                                "from it\n"), proc.stderr[-3000:]
    assert not (out / "model.safetensors").exists()


@pytest.mark.parametrize("start", ["fork", "forkserver"])
def test_sigterm_to_every_process_of_the_run_leaves_its_dataloader_workers_to_it(tmp_path, start):
    """A scheduler signals every process of a job, DataLoader workers too (a group SIGTERM from another process, in a
    dev evaluation of 12 batches at step 3, 4 of them fetched ahead): torch's workers died of it, and the evaluation,
    finding them gone, stopped the run at step 3 before its checkpoint ("before any checkpoint was saved"). They leave
    it to the run now: the evaluation ends, checkpoint-3 is saved, step 4 trains and its checkpoint ends the run.
    Workers started by fork (Linux's default up to Python 3.13) and by forkserver (from 3.14), whose server the run's
    process starts with SIGTERM blocked (`sigterm.own_forkserver`; before, the server and its workers died of it)."""
    config = smoke_config(tmp_path, dataloader_num_workers=2, per_device_eval_batch_size=2,
                          dataloader_multiprocessing_context=start)
    run = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "sigterm_worker.py"), config], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                           env=dict(os.environ, PYTHONPATH=ROOT, KILL_AT="3", KILL_GROUP="1"))
    _, stderr = run.communicate(timeout=300)
    out = tmp_path / "out"
    assert run.returncode == 143, stderr[-3000:]
    assert stderr.endswith(f"SIGTERM: stopped at step 4 of 12; {out} holds checkpoint-4 (step 4): add "
                           "--resume_from_checkpoint last (or set \"resume_from_checkpoint\": true) to continue from "
                           "it\n"), stderr[-3000:]
    assert is_complete(str(out / "checkpoint-4"))
    deadline = time.monotonic() + 10  # a fork server (and the resource tracker) ends once it reads the run's end
    while live_processes(group=run.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not live_processes(group=run.pid)  # no worker, nor the server, outlived the run


def test_the_runs_fork_server_gives_its_workers_the_runs_modules(tmp_path):
    """A DataLoader worker that the run's fork server starts has the run's modules loaded already (the server imported
    them once). Under Python 3.11 to 3.13 each worker of each DataLoader iteration imported torch, datasets and
    transformers afresh, and the smoke run with 2 workers took 54 s, against 11 s since (7 s forked)."""
    script = tmp_path / "run.py"
    # Nothing imported at the top: a forkserver worker runs this script's top level again (as __mp_main__).
    script.write_text(textwrap.dedent("""
        def main(callbacks=None):  # where the run would train: one loader with a worker started by forkserver
            from torch.utils.data import DataLoader

            from sigterm import workers_leave_sigterm
            from worker_datasets import ModulesOfWorker

            loader = DataLoader(ModulesOfWorker(), batch_size=None, num_workers=1, multiprocessing_context="forkserver")
            print(" ".join(next(iter(workers_leave_sigterm(loader)))))

        if __name__ == "__main__":
            import run_simcse

            run_simcse.main = main
            run_simcse.run_script()
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests")])))
    assert proc.returncode == 0, proc.stderr[-3000:]
    modules = proc.stdout.split()
    assert {"torch", "worker_datasets"} <= set(modules)  # what unpickling its dataset imports
    assert {"run_simcse", "transformers", "datasets"} <= set(modules)  # what it had from the server


class ProcessState(NamedTuple):
    state: str  # "Z": ended, not yet waited for
    parent: int
    group: int


def process_state(pid: int | str) -> ProcessState | None:
    """Process `pid`'s state, parent and process group, from /proc; None where gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state, parent, group = f.read().rsplit(")", 1)[1].split()[:3]
    except FileNotFoundError:
        return None
    return ProcessState(state, int(parent), int(group))


def live_processes(**which: int) -> list[int]:
    """The processes that have not ended, of the parent or group that `which` names (`parent=PID`, `group=PGID`)."""
    states = {int(pid): process_state(pid) for pid in filter(str.isdigit, os.listdir("/proc"))}
    return [pid for pid, state in states.items()
            if state and state.state != "Z" and all(getattr(state, key) == value for key, value in which.items())]


def ended(pid: int) -> bool:
    """Whether process `pid` has ended: gone, or a zombie not yet waited for."""
    state = process_state(pid)
    return state is None or state.state == "Z"


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_a_dataloader_worker_ends_on_its_parents_sigterm_only(start):
    """`workers_leave_sigterm`: SIGTERM to the workers from another process leaves them at work, every batch comes; the
    parent's own (torch's way of ending a worker that did not stop, and multiprocessing's at exit) ends one. A spawned
    worker runs threads before `worker_init_fn` (numpy's OpenBLAS pool), one of which took it."""
    loader = DataLoader(WorkerPids(), batch_size=2, num_workers=2, multiprocessing_context=start)
    batches = iter(workers_leave_sigterm(loader))
    pids = {int(pid) for pid in next(batches)} | {int(pid) for pid in next(batches)}
    for pid in pids:
        subprocess.run([sys.executable, "-c", f"import os, signal; os.kill({pid}, signal.SIGTERM)"], check=True)
    assert len([next(batches) for _ in range(8)]) == 8
    worker = min(pids)
    os.kill(worker, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while not ended(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ended(worker)
    del batches


def test_a_dataloader_worker_that_leaves_sigterm_ends_with_its_loader(monkeypatch):
    """A worker's thread that waits for its parent's SIGTERM does not keep the worker from ending at the loader's end
    (a daemon thread): as one that Python waits for at exit, it would, until torch's wait for the worker (5 s) ran out
    and torch terminated it."""
    terminated = []
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "terminate", lambda self: terminated.append(self.pid))
    batches = iter(workers_leave_sigterm(DataLoader(list(range(8)), batch_size=2, num_workers=1)))
    assert len(list(batches)) == 4
    assert batches._workers[0].exitcode == 0 and terminated == []


def in_a_fork(check) -> str | None:
    """`check()` (-> what went wrong, or None) in a fork of this process, so that a signal that ends it cannot end
    pytest -> what went wrong there, or None."""
    read, write = os.pipe()
    run = os.fork()
    if run == 0:
        os.close(read)
        said = "an exception"
        try:
            said = check() or ""
        finally:
            os.write(write, said.encode())
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        said = f.read()
    status = os.waitpid(run, 0)[1]
    return f"ended by signal {status & 0x7f}" if status & 0x7f else said or None


def forked_worker_outlives_sigterm() -> bool:
    """Fork a DataLoader worker (0.5 s of work), send it SIGTERM -> whether it ran to its end (not ended by the signal
    or an exception the handler raised)."""
    started, starting = os.pipe()
    worker = os.fork()
    if worker == 0:
        status = 8
        try:
            os.write(starting, b".")  # at work (a signal sooner would meet the fork's own start-up)
            time.sleep(0.5)
            status = 7
        finally:
            os._exit(status)
    os.read(started, 1)
    os.close(started)
    os.close(starting)
    os.kill(worker, signal.SIGTERM)
    return os.waitpid(worker, 0)[1] == 7 << 8


def test_sigterm_again_and_in_forked_workers_changes_nothing():
    """A launcher passes the scheduler's SIGTERM on to a process that got it from the scheduler too: the second one
    must not end it. A DataLoader worker forked within leaves the signal to its parent."""
    def check() -> str | None:
        with Termination() as termination:
            worker_ran_to_its_end = forked_worker_outlives_sigterm()
            for _ in range(2):
                signal.raise_signal(signal.SIGTERM)
        restored = signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        return ("the worker was ended" if not worker_ran_to_its_end else "not received" if not termination.received
                else "the handler was not restored" if not restored else None)

    assert in_a_fork(check) is None


def test_sigterm_where_training_is_over_raises_once_and_leaves_forked_workers_alone():
    """`SigtermRaises` (the final evaluation, export and push): SIGTERM raises `Terminated` in this process once, so a
    second one (a launcher passing on the scheduler's) cannot break into the clean-up of the first; a DataLoader worker
    forked within is left to its parent."""
    def check() -> str | None:
        raised = 0
        with SigtermRaises() as sigterm:
            worker_ran_to_its_end = forked_worker_outlives_sigterm()
            for _ in range(2):
                try:
                    signal.raise_signal(signal.SIGTERM)
                    time.sleep(0.01)  # the handler runs, and raises, within
                except Terminated:
                    raised += 1
                    signal.raise_signal(signal.SIGTERM)  # again, while the first is handled
                    time.sleep(0.01)
        restored = signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        return ("the worker was ended" if not worker_ran_to_its_end
                else f"raised {raised} times" if raised != 1 or not sigterm.received
                else "the handler was not restored" if not restored else None)

    assert in_a_fork(check) is None


class SignalWithinLocking:
    """A context manager that takes a lock in Python code, as `threading.Condition` does, and gets `signum` where
    the handler runs within its `__enter__` (the lock taken, the caller's block not begun) or within its `__exit__`
    (the lock not yet given back)."""

    def __init__(self, signum: int, within: str):
        self.lock, self.signum, self.within = threading.Lock(), signum, within

    def __enter__(self):
        self.lock.acquire()
        if self.within == "__enter__":
            signal.raise_signal(self.signum)  # handled as the call returns, here

    def __exit__(self, *exc_info):
        if self.within == "__exit__":
            signal.raise_signal(self.signum)
        self.lock.release()


class SignalWhenFreed:
    """An object that gets `signum` as it is freed: its handler runs within `__del__`, whose exceptions Python prints
    and forgets."""

    def __init__(self, signum: int):
        self.signum = signum

    def __del__(self):
        signal.raise_signal(self.signum)


@pytest.mark.parametrize("within", ["__enter__", "__exit__", "__del__"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SigtermRaises", "CtrlC"])
def test_a_signal_raises_where_it_leaves_no_lock_taken_and_is_not_lost(signum, within):
    """SIGTERM in `SigtermRaises` (and Ctrl-C in `CtrlC`) raised where the main thread was: within a lock's `__enter__`
    it left the lock taken for ever (a `concurrent.futures` future's: the threads of a push's upload pool, then the
    push itself, waited on it for ever: 3 hangs and 2 "release unlocked lock" errors in 56,611 SIGTERMs at a thread
    pool), within `__exit__` too, and within `__del__` it was lost. Now it is raised at the first call after such a
    frame returned."""
    def check() -> str | None:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal: a background job ignores it
        expected = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        guard = SigtermRaises() if signum == signal.SIGTERM else sigterm.CtrlC()
        locking = SignalWithinLocking(signum, within)
        got = None
        with guard:
            try:
                if within == "__del__":
                    SignalWhenFreed(signum)  # freed at once
                    time.sleep(0)
                else:
                    with locking:
                        time.sleep(0)
                time.sleep(0)
            except expected as e:
                got = e
        return ("not raised" if got is None else "the lock was left taken" if locking.lock.locked()
                else "a profile function was left in place" if sys.getprofile() is not None else None)

    assert in_a_fork(check) is None


def test_a_signal_within_a_wait_for_a_lock_is_raised_there_within_a_second():
    """... but not after a lock frame that is still under way after `LOCK_FRAME_WAIT` (1 s): it waits for its lock,
    as filelock's `acquire` polls for one another process holds, and the signal would wait as long."""
    def acquire():  # named as a lock's: a frame of LOCK_FRAMES
        signal.raise_signal(signal.SIGTERM)
        waited = time.monotonic() + 10
        while time.monotonic() < waited:
            time.sleep(0.01)

    def check() -> str | None:
        began = time.monotonic()
        with SigtermRaises():
            try:
                acquire()
            except Terminated:
                took = time.monotonic() - began
                return None if sigterm.LOCK_FRAME_WAIT <= took < 3 else f"raised after {took:.2f} s"
        return "not raised"

    assert in_a_fork(check) is None


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SigtermRaises", "CtrlC"])
def test_a_stop_within_a_held_block_is_raised_as_it_ends_in_place_of_its_error(signum):
    """`StopsHeld` (around a push's commit, whose outcome the push must know to say what a stop left): a stop within it
    is raised as the block ends, in place of the block's error (a failed commit is not tried again after a stop); a
    second Ctrl-C raises at once."""
    def check() -> str | None:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal: a background job ignores it
        expected = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        ran_on = got = None
        with SigtermRaises() if signum == signal.SIGTERM else sigterm.CtrlC():
            try:
                with sigterm.StopsHeld("held"):
                    signal.raise_signal(signum)
                    time.sleep(0)
                    ran_on = True
                    raise ConnectionError("the answer was lost")
            except expected as e:
                got = e
        if not ran_on or got is None or not isinstance(got.__cause__, ConnectionError):
            return f"ran on: {ran_on}; raised: {got!r}, from {got.__cause__!r}" if got else f"ran on: {ran_on}"
        if signum == signal.SIGINT:
            with sigterm.CtrlC():
                try:
                    with sigterm.StopsHeld("held"):
                        signal.raise_signal(signum)
                        signal.raise_signal(signum)
                        time.sleep(0)
                        return "a second Ctrl-C waited for the block's end"
                except KeyboardInterrupt as e:
                    if e.__cause__ is not None:
                        return "the second Ctrl-C was not raised at once"
        return None

    assert in_a_fork(check) is None


@pytest.mark.parametrize("signals", [1, 2])
def test_a_pool_worker_sigtermed_while_it_writes_to_its_queue_ends_once_the_message_is_written(signals):
    """datasets' pool ends its workers with SIGTERM (`Pool.terminate`) while one may be sending a result: ended within
    the write, it kept the queue's lock (shared by the processes that write to it) for ever, and the pool's shutdown,
    waiting for it, hung the run (3 of 28 SIGTERMs during tokenization under torch 2.15). The worker now ends as the
    write returns, the message whole and the lock free; a second SIGTERM ends it at once."""
    def check() -> str | None:
        queue = multiprocessing.SimpleQueue()
        message = b"x" * 1_000_000  # more than a pipe holds: the write waits for the reader, with the lock taken
        with SigtermRaises(forked_processes_end=True):
            worker = os.fork()
            if worker == 0:
                try:
                    queue.put(message)
                finally:
                    os._exit(7)
            if not queue._reader.poll(30):
                return "the worker wrote nothing"
            time.sleep(0.2)  # within the write, the pipe full
            for _ in range(signals):
                os.kill(worker, signal.SIGTERM)
                time.sleep(0.3)
            pid, status = os.waitpid(worker, os.WNOHANG)
            if signals == 2:
                return None if pid and os.WIFSIGNALED(status) else f"a second SIGTERM did not end it ({pid}, {status})"
            if pid:
                return f"the worker ended within its write (status {status})"
            whole = queue.get() == message
            status = os.waitpid(worker, 0)[1]
            lock_free = queue._wlock.acquire(timeout=5)
        return ("the message was not whole" if not whole
                else f"the worker did not end of SIGTERM (status {status})"
                if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM)
                else "the queue's lock stayed taken" if not lock_free else None)

    assert in_a_fork(check) is None


def misses_its_first_sigterm(ready) -> None:
    """A started process that misses its first SIGTERM (as one that the signal reached before Python's after-fork
    set-up) and ends of the second, exit status 3 (4 where none came within 30 s)."""
    received = []
    signal.signal(signal.SIGTERM, lambda *_: os._exit(3) if received else received.append(1))
    ready.set()
    time.sleep(30)
    os._exit(4)


def test_processes_started_in_the_start_up_block_are_sent_sigterm_again_until_they_end():
    """A SIGTERM to every process of a run as datasets' pool tokenized: the pool replaced the workers it ended and
    ended the new ones with SIGTERM, and one of those, the signal missed, left the pool's shutdown waiting for it for
    ever (3 of 18 runs, torch 2.15). `REMIND_AFTER` seconds after the first SIGTERM, the start-up block sends SIGTERM
    again, every second, to each process it started that is still there."""
    def check() -> str | None:
        sigterm.REMIND_AFTER = 0.2
        fork = multiprocessing.get_context("fork")
        ready = fork.Event()
        child = fork.Process(target=misses_its_first_sigterm, args=(ready,))
        with SigtermRaises(forked_processes_end=True):
            child.start()
            if not ready.wait(30):
                return "the process did not start"
            os.kill(child.pid, signal.SIGTERM)  # the pool's, which it misses
            try:
                signal.raise_signal(signal.SIGTERM)
                time.sleep(1)
                return "SIGTERM did not raise"
            except Terminated:
                pass
            child.join(10)
        return None if child.exitcode == 3 else f"the process was not sent SIGTERM again (exit code {child.exitcode})"

    assert in_a_fork(check) is None


def test_a_pool_worker_sigtermed_while_it_waits_for_work_ends_at_once():
    """Only a write to the queue holds SIGTERM back: a worker waiting for work (within the queue's `get`, of the same
    module) would wait for that call to return, and the pool's shutdown for it."""
    def check() -> str | None:
        queue = multiprocessing.SimpleQueue()
        with SigtermRaises(forked_processes_end=True):
            worker = os.fork()
            if worker == 0:
                try:
                    queue.get()
                finally:
                    os._exit(7)
            time.sleep(0.3)  # within the read, the pipe empty
            os.kill(worker, signal.SIGTERM)
            for _ in range(50):
                pid, status = os.waitpid(worker, os.WNOHANG)
                if pid:
                    break
                time.sleep(0.1)
            else:
                os.kill(worker, signal.SIGKILL)
                os.waitpid(worker, 0)
                return "the worker did not end within 5 s of SIGTERM"
        return None if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM else f"status {status}"

    assert in_a_fork(check) is None


def ends_of_sigterm(ready) -> None:
    """A started process that ends of SIGTERM (Python's default), exit status -15; 4 where none came within 30 s."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    ready.set()
    time.sleep(30)
    os._exit(4)


def test_only_the_start_up_block_sends_its_processes_sigterm_again():
    """Training's block (a `SigtermHandler` without forked_processes_end) goes on to its checkpoint after a SIGTERM,
    with the processes it started (DataLoader workers) left alone: none is sent the signal again."""
    def check() -> str | None:
        sigterm.REMIND_AFTER = 0.2
        fork = multiprocessing.get_context("fork")
        ready = fork.Event()
        child = fork.Process(target=ends_of_sigterm, args=(ready,))
        with sigterm.SigtermHandler() as training:
            child.start()
            if not ready.wait(30):
                return "the process did not start"
            signal.raise_signal(signal.SIGTERM)
            time.sleep(1)
        alive = child.is_alive()
        child.kill()
        child.join(10)
        return None if training.received and alive else f"the process was sent SIGTERM (exit code {child.exitcode})"

    assert in_a_fork(check) is None


def test_a_handler_is_taken_only_from_pythons_own_handling_in_the_main_thread():
    """`take_signal` installs its handler where SIGTERM has Python's default (or an enclosing block's handler); an
    ignored signal, the caller's own handler, or a call off the main thread (where installing one raises) is left
    alone, and None returned."""
    def check() -> str | None:
        def ours(signum, frame):
            pass

        def callers_own(signum, frame):
            pass

        off_main = []
        thread = threading.Thread(target=lambda: off_main.append(sigterm.take_signal(signal.SIGTERM, ours)))
        thread.start()
        thread.join()
        if off_main != [None] or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return f"off the main thread: {off_main}, {signal.getsignal(signal.SIGTERM)}"
        for other in (signal.SIG_IGN, callers_own):
            signal.signal(signal.SIGTERM, other)
            if sigterm.take_signal(signal.SIGTERM, ours) is not None or signal.getsignal(signal.SIGTERM) is not other:
                return f"{other} was replaced"
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        earlier = sigterm.take_signal(signal.SIGTERM, ours)
        if earlier is not signal.SIG_DFL or signal.getsignal(signal.SIGTERM) is not ours:
            return "Python's default was not replaced"
        return None

    assert in_a_fork(check) is None


def test_sigterm_blocks_nest_and_the_start_up_block_ends_forked_processes():
    """`SigtermRaises(forked_processes_end=True)`, around a run's start-up, where datasets' process pool tokenizes: a
    process forked within ends of SIGTERM, as by Python's default (the pool ends its workers so); a block within it
    (training's `Termination`) takes the signal until it ends, then gives it back."""
    def check() -> str | None:
        raised = False
        with SigtermRaises(forked_processes_end=True) as start_up:
            worker_ran_to_its_end = forked_worker_outlives_sigterm()
            with Termination() as termination:
                signal.raise_signal(signal.SIGTERM)
                time.sleep(0.01)
            taken = termination.received and not start_up.received
            given_back = signal.getsignal(signal.SIGTERM) == start_up._handle
            try:
                signal.raise_signal(signal.SIGTERM)
                time.sleep(0.01)
            except Terminated:
                raised = True
        restored = signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        return ("the worker outlived SIGTERM" if worker_ran_to_its_end
                else "the inner block did not take the signal" if not taken
                else "the inner block did not give the signal back" if not given_back
                else "the outer block did not raise" if not raised
                else "the handler was not restored" if not restored else None)

    assert in_a_fork(check) is None


@pytest.mark.parametrize("to_every_process", [False, True])
def test_sigterm_while_a_process_pool_tokenizes_ends_the_pool_too(tmp_path, to_every_process, temporary_folder):
    """SIGTERM to the run alone (`kill PID`) as datasets' process pool tokenized its 300,000 rows: Python's default
    ended the run's process without a word and left the pool's workers (and its queue's manager) waiting for work, for
    ever, and the copy of the rows that they read (34 MB) on the disk. The run says it stopped before training, and
    they end with it. The same where the signal goes to every process of the run, as a scheduler sends it (the pool
    replaces the workers it ends, and ends the new ones: `sigterm.REMIND_AFTER`)."""
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("".join(f"{i}번째 문장은 조금 길게 씁니다.\n" for i in range(300_000)), encoding="utf-8")
    config = smoke_config(tmp_path, train_data=[str(sentences)], train_format="text", preprocessing_num_workers=2)
    stderr = tmp_path / "stderr"  # a file: the workers left behind held a pipe's end open for ever
    # Where the rows are saved for the pool (data_loading.file_backed); a short path: the pool's manager listens on a
    # socket in it. tmp_path under pytest-xdist is longer than a socket's path may be, and a folder in the session's
    # temporary folder may be on macOS (whose TMPDIR has 49 bytes): beside it, as short as the machine's own.
    scratch = pathlib.Path(tempfile.mkdtemp(dir=os.path.dirname(temporary_folder)))
    with open(stderr, "wb") as f:
        run = subprocess.Popen([sys.executable, "run_simcse.py", config], cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=f, start_new_session=True, env=dict(os.environ, TMPDIR=str(scratch)))
    children = []
    try:
        deadline = time.monotonic() + 120
        while (b"Tokenizing (num_proc=2)" not in stderr.read_bytes() or len(children) < 2) and \
                time.monotonic() < deadline:
            time.sleep(0.05)
            children = live_processes(parent=run.pid)
        time.sleep(0.2)
        children = live_processes(parent=run.pid)  # the pool's 2 workers, and the manager of the queue they answer to
        assert len(children) >= 2, stderr.read_text()[-3000:]
        if to_every_process:
            os.killpg(run.pid, signal.SIGTERM)
        else:
            run.send_signal(signal.SIGTERM)
        run.wait(timeout=60)
        deadline = time.monotonic() + 10
        while not all(map(ended, children)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(map(ended, children)), [(pid, process_state(pid)) for pid in children]
        assert live_processes(group=run.pid) == []  # and any the pool started meanwhile
        said = stderr.read_text()
        assert run.returncode == 143, said[-3000:]
        assert said.endswith("\nSIGTERM: stopped before training began, so this launch trained nothing; launch it "
                             "again\n")
        assert not list(scratch.iterdir())  # the rows' copy removed at the exit, which Python's default did not reach
    finally:
        for pid in live_processes(group=run.pid):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(scratch, ignore_errors=True)


def test_sigterm_between_the_stages_after_training_stops_with_a_line(tmp_path, capsys, monkeypatch):
    """SIGTERM in a moment between the stages after training that say where they stopped (here as the run lets its
    last checkpoint go), which the start-up's handler takes: a line and exit code 143, not a traceback."""
    def terminated(*args):
        raise Terminated

    monkeypatch.setattr(LastCheckpointKeeper, "release", terminated)
    with pytest.raises(SystemExit) as stopped:
        run_simcse.main([smoke_config(tmp_path)])
    assert stopped.value.code == 143
    assert capsys.readouterr().err.endswith("\nSIGTERM: stopped after training\n")


def test_sigterm_after_training_says_how_to_evaluate_and_export_without_training(tmp_path, capsys, monkeypatch):
    """SIGTERM in the export, after all the training: Python's default ended the run without a word, the scratch
    folder of the export left in the output folder. Now the export's clean-up runs and the run says how to finish
    without training again, as for Ctrl-C
    (`test_ctrl_c_after_training_says_how_to_evaluate_and_export_without_training`, which also resumes such a run)."""
    def export_encoder(self, folder, *args, **kwargs):
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "model.safetensors"), "wb") as f:
            f.write(b"\0" * 1024)
        # Python's default here would end this test session.
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL, "SIGTERM would end the process in the export"
        signal.raise_signal(signal.SIGTERM)
        time.sleep(10)  # the handler raises before this ends

    monkeypatch.setattr("modeling_simcse.SimCSEModel.export_encoder", export_encoder)
    out = tmp_path / "out"
    try:
        with pytest.raises(SystemExit) as stopped:
            run_simcse.main([smoke_config(tmp_path, overwrite_output_dir=False)])
    except Terminated:
        pytest.fail("SIGTERM ended the run with a traceback")
    assert stopped.value.code == 143 and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert capsys.readouterr().err.endswith(f"\nSIGTERM: {AFTER_TRAINING.format(step=12, out=out)}\n")
    assert not {"config.json", "model.safetensors", ".export-in-progress"} & set(os.listdir(out))
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-12", "checkpoint-6"]  # last and best


def test_resume_last_without_a_complete_checkpoint_starts_from_the_beginning(tmp_path, caplog):
    """"last" in a config that every launch of a run uses: its first launch (no checkpoint yet, or only one a kill left
    half-written) trains from step 0, saying so."""
    (tmp_path / "checkpoint-3").mkdir()  # no trainer_state.json: killed while saving
    assert output_folder.resolve_resume(str(tmp_path), "last") is None
    assert not (tmp_path / "checkpoint-3").exists()
    assert [r.getMessage() for r in caplog.records] == [
        f"removing incomplete checkpoint {tmp_path / 'checkpoint-3'} (the run was stopped while saving it)",
        f"resume_from_checkpoint=last: no checkpoint in {tmp_path}; starting from the beginning"]


def test_resume_from_an_incomplete_checkpoint_is_refused(tmp_path):
    (tmp_path / "broken").mkdir()
    with pytest.raises(SystemExit, match="not a complete checkpoint"):
        run_simcse.main([smoke_config(tmp_path, resume_from_checkpoint=str(tmp_path / "broken"))])


class KillAfterSaving(TrainerCallback):
    """Test helper: stop the run as a kill would, right after the checkpoint of a given step is written."""

    def __init__(self, step):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


def test_resume_from_a_weights_only_checkpoint_is_refused(tmp_path):
    """save_only_model checkpoints hold no optimizer, schedule or random state: resuming from one would silently
    restart them (Trainer does), so it is refused, whether named or found as the last one."""
    config = smoke_config(tmp_path, save_only_model=True, save_total_limit=None, overwrite_output_dir=False)
    with pytest.raises(SystemExit):
        run_simcse.main([config], callbacks=[KillAfterSaving(6)])
    checkpoint = tmp_path / "out" / "checkpoint-6"
    assert is_complete(str(checkpoint)) and not (checkpoint / "optimizer.pt").exists()
    for resume in ("last", str(checkpoint)):
        resumed = smoke_config(tmp_path, save_only_model=True, save_total_limit=None, overwrite_output_dir=False,
                               resume_from_checkpoint=resume)
        with pytest.raises(SystemExit, match=f"error: resume_from_checkpoint: {checkpoint} holds the weights only"):
            run_simcse.main([resumed])


def test_resume_from_a_runs_output_folder_names_its_checkpoints(tmp_path, uninterrupted):
    """A run's output folder named as the checkpoint: its trainer_state.json (the end's) made it read as a checkpoint
    "written with save_only_model"."""
    whole = uninterrupted[1]
    with pytest.raises(SystemExit, match=re.escape(f"error: resume_from_checkpoint {whole} is a run's output folder, "
                                                   "not one of its checkpoints: name one (checkpoint-12 is its newest "
                                                   "complete one), or set output_dir to that folder")):
        run_simcse.main([smoke_config(tmp_path, resume_from_checkpoint=str(whole))])
    assert not (tmp_path / "out").exists()


def test_resume_from_a_checkpoint_it_cannot_use_is_refused_before_tokenizing(tmp_path, monkeypatch):
    """A checkpoint whose optimizer holds two parameters more than the model trains, as this project's did before the
    encoder's own pooler was frozen, or with a damaged file: refused at start-up, saying which (Trainer stopped with a
    traceback once the data were tokenized), the checkpoint kept."""
    config = smoke_config(tmp_path, save_total_limit=None, overwrite_output_dir=False)
    with pytest.raises(SystemExit):
        run_simcse.main([config], callbacks=[KillAfterSaving(3)])
    checkpoint = tmp_path / "out" / "checkpoint-3"
    state = torch.load(checkpoint / "optimizer.pt", weights_only=True)
    trained = sum(len(group["params"]) for group in state["param_groups"])
    state["param_groups"][0]["params"] += [trained, trained + 1]
    torch.save(state, checkpoint / "optimizer.pt")
    tokenized = []
    monkeypatch.setattr(run_simcse, "tokenize_rows", lambda *args, **kwargs: tokenized.append(args))
    resumed = smoke_config(tmp_path, save_total_limit=None, overwrite_output_dir=False, resume_from_checkpoint="last")
    said = (f"error: resume_from_checkpoint {checkpoint}: its optimizer state is for {trained + 2} parameter tensors, "
            f"and this model trains {trained}, so the run cannot go on from it")
    with pytest.raises(SystemExit, match=re.escape(said)):
        run_simcse.main([resumed])
    assert not tokenized and sorted(p.name for p in (tmp_path / "out").glob("checkpoint-*")) == ["checkpoint-3"]
    # A damaged file (a disk error, a copy cut short), one byte short: named, where torch's zip reader or safetensors
    # stopped the resumption after the tokenization, in a traceback.
    for name, said in (("optimizer.pt", "BadZipFile: File is not a zip file"),
                       ("rng_state.pth", "BadZipFile: File is not a zip file"),
                       ("model.safetensors", "SafetensorError: Error while deserializing header")):
        kept = tmp_path / name
        shutil.copyfile(checkpoint / name, kept)
        (checkpoint / name).write_bytes(kept.read_bytes()[:-1])
        with pytest.raises(SystemExit, match=re.escape(f"error: resume_from_checkpoint {checkpoint}: {name} could not "
                                                       f"be read ({said}")):
            run_simcse.main([resumed])
        shutil.copyfile(kept, checkpoint / name)
    assert not tokenized


class CtrlCAt(TrainerCallback):
    """Test helper: send this process the signal Ctrl-C sends at the end of a given step (before its checkpoint); with
    `then`, raise that in place of the KeyboardInterrupt, as torch does where the signal stopped a DataLoader worker
    while it started."""

    def __init__(self, step, then: Exception | None = None):
        self.step, self.then = step, then

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(10)  # the handler raises before this ends
            except KeyboardInterrupt:
                if self.then is None:
                    raise
                raise self.then from None


WORKER_GONE = "DataLoader worker (pid(s) 4242) exited unexpectedly"


@pytest.mark.parametrize("step, then, said", [
    (2, None, "before any checkpoint was saved: a new launch starts at step 0"),
    (7, None, "holds checkpoint-6 (step 6): add --resume_from_checkpoint last"),
    (7, RuntimeError(WORKER_GONE), "holds checkpoint-6 (step 6): add --resume_from_checkpoint last"),
])
def test_ctrl_c_while_training_says_where_the_run_stands(tmp_path, capsys, step, then, said):
    """Ctrl-C ended a run with a traceback from within a training step, which said neither what was kept nor how to
    go on; or, where the signal had stopped a DataLoader worker too, with torch's error that the worker had gone."""
    # As in a terminal: a process started in the background by a non-interactive shell (`pytest ... &`) ignores SIGINT.
    earlier = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(SystemExit) as stopped:
            run_simcse.main([smoke_config(tmp_path, save_total_limit=None)], callbacks=[CtrlCAt(step, then)])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C ended the run with a traceback")
    finally:
        signal.signal(signal.SIGINT, earlier)
    assert stopped.value.code == 130  # what a shell gives a command stopped by Ctrl-C
    said_before = capsys.readouterr().err
    assert f"\nstopped at step {step} of 12" in said_before and said in said_before
    assert signal.getsignal(signal.SIGINT) is earlier


class WorkerGoneAt(TrainerCallback):
    """Test helper: torch's error for a DataLoader worker that died, at step 2, with no Ctrl-C."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 2:
            raise RuntimeError(WORKER_GONE)


def test_a_worker_that_crashed_without_ctrl_c_is_reported_as_it_is(tmp_path):
    with pytest.raises(RuntimeError, match=re.escape(WORKER_GONE)):
        run_simcse.main([smoke_config(tmp_path)], callbacks=[WorkerGoneAt()])


class DiskFullAt(TrainerCallback):
    """Test helper: a full disk while a given step's checkpoint is saved (`error`, as it reaches Trainer), which leaves
    the checkpoint without the trainer_state.json Trainer writes last."""

    def __init__(self, step, error):
        self.step, self.error = step, error

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.remove(os.path.join(args.output_dir, f"checkpoint-{self.step}", "trainer_state.json"))
            raise self.error


# torch's writer of optimizer.pt on a full disk (a 4 MiB tmpfs, 2026-12-04).
TORCH_FULL_DISK = "[enforce fail at inline_container.cc:672] . unexpected pos 582656 vs 582548"


@pytest.mark.parametrize("error, free, said", [
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "optimizer.pt"), 2**19,
     "the disk of {out} is full (0.5 MiB free, and a checkpoint (the weights and the optimizer's state) takes about "
     "{mib} MiB; OSError: [Errno 28] No space left on device: 'optimizer.pt')"),
    (RuntimeError(TORCH_FULL_DISK), 2**19,
     "the disk of {out} is full (0.5 MiB free, and a checkpoint (the weights and the optimizer's state) takes about "
     f"{{mib}} MiB; RuntimeError: {TORCH_FULL_DISK})"),
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/tmp/x"), 2**30,  # another disk: its file is named
     "a disk is full (OSError: [Errno 28] No space left on device: '/tmp/x')"),
    # A quota reached (a cluster's home folder), with room left on the disk: a full disk too (training_guards.no_space).
    (OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), "/tmp/x"), 2**30,
     f"a disk is full (OSError: [Errno {errno.EDQUOT}] {os.strerror(errno.EDQUOT)}: '/tmp/x')"),
])
def test_a_full_disk_while_training_says_what_was_kept_and_how_to_resume(tmp_path, monkeypatch, error, free, said):
    """A traceback from within Trainer's checkpoint save named neither the checkpoint to resume from nor how; torch's
    own error for a full disk does not say that the disk is full."""
    monkeypatch.setattr("output_folder.shutil.disk_usage", lambda path: types.SimpleNamespace(free=free))
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stopped:
        run_simcse.main([smoke_config(tmp_path, save_total_limit=None)], callbacks=[DiskFullAt(6, error)])
    weights = load_file(str(out / "checkpoint-3" / "model.safetensors"))  # a checkpoint: 3x the weights, in fp32
    mib = 3 * sum(t.numel() * t.element_size() for t in weights.values()) / 2**20
    said = said.format(out=out, mib=f"{mib:.1f}")
    assert stopped.value.code == (f"error: {said}; free some, then resume: stopped at step 6 of 12; {out} holds "
                                  "checkpoint-3 (step 3): add --resume_from_checkpoint last (or set "
                                  "\"resume_from_checkpoint\": true) to continue from it")


def interrupted_loading(*args, **kwargs):
    raise KeyboardInterrupt


def interrupted_tokenization(*args, **kwargs):
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:  # as datasets' process pool answers Ctrl-C in a multi-process map
        raise TimeoutError from None


@pytest.mark.parametrize("stage, stop", [("load_training_set", interrupted_loading),
                                         ("tokenize_rows", interrupted_tokenization)])
def test_ctrl_c_before_training_says_nothing_was_trained(tmp_path, monkeypatch, capsys, stage, stop):
    """Ctrl-C while the data loaded or was tokenized ended the run with a traceback (of datasets' process pool's
    TimeoutError, exit status 1) that did not say what had happened."""
    monkeypatch.setattr(run_simcse, stage, stop)
    try:
        with pytest.raises(SystemExit) as stopped:
            run_simcse.main([smoke_config(tmp_path)])
    except (KeyboardInterrupt, TimeoutError):  # uncaught, a KeyboardInterrupt would end the whole test session
        pytest.fail("Ctrl-C ended the run with a traceback")
    assert stopped.value.code == 130
    assert capsys.readouterr().err.endswith("\nstopped before training began, so this launch trained nothing; "
                                            "launch it again\n")
    assert not (tmp_path / "out" / "run_args.json").exists()


class StopsTheFinalEvaluation(TrainerCallback):
    """Test helper: `error` as the final evaluation scores its first test set (the dev set's scores, "eval_*", come in
    training); KeyboardInterrupt through a real SIGINT."""

    def __init__(self, error: BaseException | type[BaseException]):
        self.error = error

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not any(key.startswith("eval_") for key in metrics):
            if self.error is KeyboardInterrupt:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(10)  # the handler raises before this ends
            raise self.error


AFTER_TRAINING = ("stopped after training to its end (step {step}), before the final evaluation and export were "
                  "complete; {out} holds checkpoint-{step} (step {step}): add --resume_from_checkpoint last (or set "
                  "\"resume_from_checkpoint\": true) to evaluate and export it without training again")


def test_ctrl_c_after_training_says_how_to_evaluate_and_export_without_training(tmp_path, capsys, caplog):
    """Ctrl-C in the final evaluation or export, after all the training, ended the run with a traceback that did not
    say that the trained run was kept, nor how to finish it without training it again; and with save_total_limit 1
    (the smoke and published configs) Trainer had deleted the last checkpoint, so the resumption trained the steps
    after the best one (step 6 of 12 here) again."""
    config = smoke_config(tmp_path, overwrite_output_dir=False)
    out = tmp_path / "out"
    earlier = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (see the test above)
    try:
        with pytest.raises(SystemExit) as stopped:
            run_simcse.main([config], callbacks=[StopsTheFinalEvaluation(KeyboardInterrupt)])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C ended the run with a traceback")
    finally:
        signal.signal(signal.SIGINT, earlier)
    assert stopped.value.code == 130
    assert capsys.readouterr().err.endswith(f"\n{AFTER_TRAINING.format(step=12, out=out)}\n")
    assert not {"config.json", "model.safetensors", "sts_results.json", "README.md"} & set(os.listdir(out))
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-12", "checkpoint-6"]  # last and best
    # Resumed as it says: no step trained again, and the scores of the run as if it had not been stopped.
    resumed = run_simcse.main([config, "--resume_from_checkpoint", "last"])
    assert "this launch trains no step, then evaluates and exports the run again" in caplog.text
    # This session's training metrics: no step, so no training loss (Trainer's 0.0 would read as one).
    session = json.loads((out / "train_results.json").read_text())
    assert session["train_loss"] is None and session["train_runtime"] < 5
    (tmp_path / "whole").mkdir()
    whole = run_simcse.main([smoke_config(tmp_path / "whole")])
    assert resumed == whole
    assert json.loads((out / "sts_results.json").read_text()) == whole
    # Exported, each run keeps the best checkpoint only, as Trainer leaves a finished run with save_total_limit 1.
    for folder in (out, tmp_path / "whole" / "out"):
        assert [p.name for p in folder.glob("checkpoint-*")] == ["checkpoint-6"]
        assert json.loads((folder / "trainer_state.json").read_text())["best_model_checkpoint"].endswith("checkpoint-6")


def test_a_run_without_load_best_model_at_end_keeps_its_last_checkpoint_until_exported(tmp_path):
    """Trainer deletes every checkpoint but the best as training ends wherever save_total_limit is 1 and a dev metric
    recorded a best, load_best_model_at_end or not: with it off, a run stopped before its export kept checkpoint-6
    alone and trained steps 7-12 again when resumed. A launch resumed at the last step, stopped there again, keeps both
    too."""
    config = smoke_config(tmp_path, load_best_model_at_end=False, overwrite_output_dir=False)
    out = tmp_path / "out"
    for resume in ([], ["--resume_from_checkpoint", "last"]):
        with pytest.raises(SystemExit):
            run_simcse.main([config] + resume, callbacks=[StopsTheFinalEvaluation(OUT_OF_MEMORY)])
        assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-12", "checkpoint-6"]
    run_simcse.main([config, "--resume_from_checkpoint", "last"])
    assert json.loads((out / "train_results.json").read_text())["train_loss"] is None  # no step trained again
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-6"]  # as Trainer leaves it


def test_a_run_without_a_dev_set_ends_with_its_last_checkpoint(tmp_path):
    """No dev scores, so no best checkpoint: the finished run keeps its last checkpoint, as Trainer leaves it."""
    run_simcse.main([smoke_config(tmp_path, num_train_epochs=1, eval_strategy="no", load_best_model_at_end=False,
                                  dev_data=None)])
    assert [p.name for p in (tmp_path / "out").glob("checkpoint-*")] == ["checkpoint-3"]


OUT_OF_MEMORY = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 6.00 GiB.")


def full_disk_in_the_export(monkeypatch):
    """The export's weights cut short by a full disk, with 64 KiB left on the disk."""
    monkeypatch.setattr("output_folder.shutil.disk_usage", lambda path: types.SimpleNamespace(free=2**16))

    def export_encoder(self, folder, *args, **kwargs):
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "model.safetensors"), "wb") as f:
            f.write(b"\0" * 1024)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("modeling_simcse.SimCSEModel.export_encoder", export_encoder)


@pytest.mark.parametrize("stop, said", [
    (OUT_OF_MEMORY, "error: out of memory after training, in the final evaluation (4 pairs a batch on each device): "
                    + AFTER_TRAINING.format(step=3, out="{out}") + ", with a smaller per_device_eval_batch_size (add "
                    f"--per_device_eval_batch_size 2). torch: {OUT_OF_MEMORY}"),
    (full_disk_in_the_export, "error: the disk of {out} is full (0.1 MiB free, and the export (its weights) takes "
                              "about {mib} MiB; OSError: [Errno 28] No space left on device); free some, then resume: "
                              + AFTER_TRAINING.format(step=3, out="{out}")),
])
def test_a_run_stopped_after_training_says_how_to_finish_it(tmp_path, monkeypatch, stop, said):
    """A GPU out of memory in the final evaluation (in fp32, where the dev scores were in the training's precision),
    or a full disk in the export, ended the run with a traceback that did not say that the trained run was kept."""
    callbacks = []
    if isinstance(stop, BaseException):
        callbacks.append(StopsTheFinalEvaluation(stop))
    else:
        stop(monkeypatch)
    config = smoke_config(tmp_path, num_train_epochs=1, per_device_eval_batch_size=4)
    with pytest.raises(SystemExit) as stopped:
        run_simcse.main([config], callbacks=callbacks)
    out = tmp_path / "out"
    weights = load_file(str(out / "checkpoint-3" / "model.safetensors"))
    mib = sum(t.numel() * t.element_size() for t in weights.values()) / 2**20
    assert stopped.value.code == said.format(out=out, mib=f"{mib:.1f}")
    assert not {".export-in-progress", "config.json", "model.safetensors", "sts_results.json"} & set(os.listdir(out))


def test_an_export_cut_short_has_no_config_so_nothing_loads_it(tmp_path, monkeypatch, capsys):
    """Ctrl-C while the export's files were moved in from the folder they were written to left a folder of some of
    them: with its config.json, a client would load weights and tokenizer of two different exports."""
    config = smoke_config(tmp_path, num_train_epochs=1)
    run_simcse.main([config])  # an export there already, of this same run
    out, replace, moved = tmp_path / "out", os.replace, []

    def stopped_before_the_last_file(source, target):
        if ".export-in-progress" in str(source):
            if len(os.listdir(os.path.dirname(source))) == 1:
                raise KeyboardInterrupt
            moved.append(os.path.basename(source))
        replace(source, target)

    monkeypatch.setattr(os, "replace", stopped_before_the_last_file)
    with pytest.raises(SystemExit) as stopped:
        run_simcse.main([config])
    assert stopped.value.code == 130
    assert "before the final evaluation and export were complete" in capsys.readouterr().err
    names = set(os.listdir(out))
    assert set(moved) <= names and "config.json" not in names and ".export-in-progress" not in names
    with pytest.raises(ValueError, match="Unrecognized model"):
        transformers.AutoModel.from_pretrained(out)
    with pytest.raises(ModelDirError, match="no config.json"):
        check_export(str(out))  # `hub push` refuses it


@pytest.mark.parametrize("kept, said", [
    # save_strategy "best": no checkpoint of the last step where it was not the best.
    ([4], "{out} holds checkpoint-4 (step 4): add --resume_from_checkpoint last (or set \"resume_from_checkpoint\": "
          "true) to train steps 5-8 again from it, then evaluate and export"),
    ([4, 8], "{out} holds checkpoint-8 (step 8): add --resume_from_checkpoint last (or set \"resume_from_checkpoint\": "
             "true) to evaluate and export it without training again"),
    ([], "no checkpoint is kept: a new launch trains it again from step 0"),  # save_strategy "no"
])
def test_a_run_stopped_after_training_is_told_what_resuming_it_does(tmp_path, kept, said):
    for step in kept:
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    assert output_folder.interruption_note(str(tmp_path), 8, 8, trained=True) == (
        "stopped after training to its end (step 8), before the final evaluation and export were complete; "
        + said.format(out=tmp_path))


@pytest.mark.parametrize("state", [
    {"global_step": 5, "max_steps": 8},  # a launch that a callback stopped before its last step
    {"global_step": 8},  # no step count
    {"global_step": 0, "max_steps": 0},
])
def test_a_state_at_the_folders_top_that_shows_steps_left_is_no_finished_run(tmp_path, state):
    """finished_state takes the folder's trainer_state.json for a run trained to its end only where it shows every step
    trained, and was written after the last checkpoint."""
    checkpoint = tmp_path / "checkpoint-4"
    checkpoint.mkdir()
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 4, "max_steps": 8}))
    os.utime(checkpoint / "trainer_state.json", (time.time() - 60, time.time() - 60))
    (tmp_path / "trainer_state.json").write_text(json.dumps({"global_step": 8, "max_steps": 8}))
    assert output_folder.finished_state(str(tmp_path), str(checkpoint)) == {"global_step": 8, "max_steps": 8}
    (tmp_path / "trainer_state.json").write_text(json.dumps(state))
    assert output_folder.finished_state(str(tmp_path), str(checkpoint)) is None


def test_a_run_resumed_in_its_moved_folder_exports_its_best_checkpoint(tmp_path, caplog, uninterrupted):
    """The output folder named otherwise than at the first launch (moved; or a trailing slash, an absolute path) was "a
    different run (run_args.json differs in: output_dir)"; and with that allowed, Trainer dropped the best checkpoint
    recorded under the old path, so a run stopped after training exported the last step's weights (checkpoint-12), not
    the best checkpoint's (checkpoint-6)."""
    first = tmp_path / "first"
    first.mkdir()
    with pytest.raises(SystemExit):
        run_simcse.main([smoke_config(first, save_total_limit=None, overwrite_output_dir=False)],
                        callbacks=[StopsTheFinalEvaluation(OUT_OF_MEMORY)])
    moved = tmp_path / "moved"
    shutil.move(first / "out", moved)
    caplog.set_level(logging.INFO, logger="training_guards")
    resumed = run_simcse.main([smoke_config(first, output_dir=f"{moved}/", save_total_limit=None,
                                            overwrite_output_dir=False, resume_from_checkpoint="last")])
    results, whole = uninterrupted
    for name in results:
        assert resumed[name] == pytest.approx(results[name], abs=1e-6)
    assert_same_export(whole, moved)
    assert f"the run's best checkpoint (step 6) is {moved}/checkpoint-6" in caplog.text


def test_the_best_checkpoint_is_looked_for_where_this_launch_would_find_it(tmp_path):
    """In output_dir as this launch names it, first (where Trainer looks at each save); then where it was recorded; then
    the resumed checkpoint itself (copied alone to resume elsewhere, when it is the best)."""
    out, old, elsewhere = tmp_path / "out", tmp_path / "old", tmp_path / "elsewhere"
    for folder in (out / "checkpoint-6", old / "checkpoint-6", elsewhere / "checkpoint-9"):
        folder.mkdir(parents=True)
    assert best_checkpoint_now(6, str(old / "checkpoint-6"), str(out), None) == str(out / "checkpoint-6")
    assert best_checkpoint_now(6, str(old / "checkpoint-6"), str(tmp_path / "new"), None) == str(old / "checkpoint-6")
    resumed = str(elsewhere / "checkpoint-9")
    assert best_checkpoint_now(9, str(old / "checkpoint-9"), str(tmp_path / "new"), resumed) == resumed
    assert best_checkpoint_now(3, str(old / "checkpoint-3"), str(out), resumed) is None
    assert best_checkpoint_now(None, None, str(out), resumed) is None


def test_a_run_whose_best_checkpoint_is_gone_is_refused_or_exports_its_last_step_as_such(tmp_path):
    """Its best checkpoint deleted (by hand; or left behind when the last checkpoint alone was copied), a run resumed to
    export ended with the last step's weights, under a card whose plot marked the best step as the one kept."""
    with pytest.raises(SystemExit):
        run_simcse.main([smoke_config(tmp_path, save_total_limit=None, overwrite_output_dir=False)],
                        callbacks=[StopsTheFinalEvaluation(OUT_OF_MEMORY)])
    out = tmp_path / "out"
    shutil.rmtree(out / "checkpoint-6")
    left = sorted(os.listdir(out))
    with pytest.raises(SystemExit, match=re.escape(
            f"error: resume_from_checkpoint {out / 'checkpoint-12'}: the run's best checkpoint so far, checkpoint-6 "
            f"(dev score ") + r"\d+\.\d\d\), is gone: not in output_dir " + re.escape(f"{out}; without it the run")):
        run_simcse.main([smoke_config(tmp_path, save_total_limit=None, overwrite_output_dir=False,
                                      resume_from_checkpoint="last")])
    assert sorted(os.listdir(out)) == left
    # Exported as what it is: the last step's model.
    resumed = run_simcse.main([smoke_config(tmp_path, save_total_limit=None, overwrite_output_dir=False,
                                            resume_from_checkpoint="last", load_best_model_at_end=False)])
    last = sts_evaluation.main([str(out / "checkpoint-12"), "--set", f"sample-sts={SAMPLE}/sts.tsv"])
    assert resumed["sample-sts"] == pytest.approx(last["sample-sts"], abs=1e-6)
    assert "| model selection | final model |" in (out / "README.md").read_text()


def test_the_length_grouped_order_is_the_seeds_and_the_epochs_alone():
    """group_by_length's order comes from the seed and the epoch, whatever torch's random state (which a resumed run
    has not restored when it draws the order), and another epoch draws another order."""
    lengths = [3 + (i * 7) % 29 for i in range(64)]
    epoch = 0
    sampler = run_simcse.EpochSeededLengthGroupedSampler(lengths, 4, seed=42, epoch=lambda: epoch)
    torch.manual_seed(0)
    first = list(sampler)
    torch.manual_seed(1)
    assert list(sampler) == first and sorted(first) == list(range(64))
    epoch = 1
    assert list(sampler) != first


def test_a_length_grouped_run_resumed_within_an_epoch_equals_uninterrupted(tmp_path):
    """group_by_length, 48 triplets in batches of 8, resumed at step 8 (the 2nd of the 2nd epoch): the same losses and
    weights as the run it continues (it drew that epoch's order from torch's random state before Trainer restored it,
    and trained on other batches)."""
    settings = dict(train_data=[os.path.join(SHARED_DATA, "kornli", "xnli.dev.ko.tsv")], max_train_samples=48,
                    train_sampling_strategy="group_by_length", num_train_epochs=2, logging_steps=1, save_steps=4,
                    eval_steps=4, save_total_limit=None, load_best_model_at_end=False)
    losses = {}
    for name in ("whole", "resumed"):
        (tmp_path / name).mkdir()
        run_simcse.main([smoke_config(tmp_path / name, **settings)])
    out = tmp_path / "resumed" / "out"
    for path in out.iterdir():
        if path.name not in {"checkpoint-4", "checkpoint-8", "run_args.json"}:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    run_simcse.main([smoke_config(tmp_path / "resumed", **settings, resume_from_checkpoint="last")])
    for name in ("whole", "resumed"):
        losses[name] = logged_losses(tmp_path / name / "out")
    assert len(losses["whole"]) == 12 and losses["resumed"] == pytest.approx(losses["whole"], abs=1e-6), losses
    assert_same_export(tmp_path / "whole" / "out", out)


def test_resume_is_decided_by_the_data_rows_not_their_paths(tmp_path):
    """A training file edited since the checkpoint makes another run: resuming would mix two datasets' batches, so it
    is refused before anything is touched, as is a dev set of other rows. The same rows under other paths (the run
    resumed on another machine, its data under another mount) resume it."""
    here, there = tmp_path / "here", tmp_path / "there"
    for folder in (here, there):
        folder.mkdir()
        for name in ("nli.tsv", "sts.tsv"):
            shutil.copy(os.path.join(SAMPLE, name), folder / name)

    def config(data, **changes):
        return smoke_config(tmp_path, train_data=[str(data / "nli.tsv")], dev_data=str(data / "sts.tsv"),
                            test_data=[f"sample-sts={data / 'sts.tsv'}"], save_total_limit=None,
                            overwrite_output_dir=False, **changes)

    with pytest.raises(SystemExit):
        run_simcse.main([config(here)], callbacks=[KillAfterSaving(6)])
    saved = sorted(os.listdir(tmp_path / "out"))
    assert saved == ["checkpoint-3", "checkpoint-6", "run_args.json"]

    train = here / "nli.tsv"
    original = train.read_text(encoding="utf-8")
    rows = len(load_nli_triplets([str(train)]))
    # One hypothesis changed, as many rows.
    train.write_text(original.replace("밖에서 공을", "운동장에서 공을", 1), encoding="utf-8")
    with pytest.raises(SystemExit, match=rf"differs in: train_rows_sha256\); it trained on other rows than train_data "
                                         rf"{re.escape(str(train))} holds now \({rows} rows then, {rows} now\)"):
        run_simcse.main([config(here, resume_from_checkpoint="last")])
    assert sorted(os.listdir(tmp_path / "out")) == saved

    dev = there / "sts.tsv"
    scored = dev.read_text(encoding="utf-8")
    lines = scored.splitlines(keepends=True)
    fields = lines[1].split("\t")
    # One gold score (the columns: ..., score, sentence1, sentence2).
    fields[-3] = "0.5" if fields[-3] != "0.5" else "1.5"
    dev.write_text("".join([lines[0], "\t".join(fields), *lines[2:]]), encoding="utf-8")
    with pytest.raises(SystemExit, match=r"differs in: dev_data, dev_rows_sha256, test_data, test_rows_sha256\); "
                                         r"dev_data or test_data hold other rows than the run's"):
        run_simcse.main([config(there, resume_from_checkpoint="last")])
    assert sorted(os.listdir(tmp_path / "out")) == saved

    dev.write_text(scored, encoding="utf-8")
    # The first session as if on a GPU machine with another torch: the card names both machines and both versions,
    # each with the step it took over from.
    clock = tmp_path / "out" / "checkpoint-6" / run_simcse.CLOCK_FILE
    record = json.loads(clock.read_text())
    assert [session["from_step"] for session in record["sessions"]] == [0]
    clock.write_text(json.dumps({**record, "sessions": [{
        "from_step": 0, "hardware": "1 x NVIDIA H100 80GB HBM3",
        "versions": {"torch": "2.11.0+cu130", "transformers": transformers.__version__}}]}))
    run_simcse.main([config(there, resume_from_checkpoint="last")])
    assert (tmp_path / "out" / "sts_results.json").exists()
    with open(tmp_path / "out" / "environment.json") as f:
        environment = json.load(f)
    assert environment["resumed_at_step"] == 6
    card = (tmp_path / "out" / "README.md").read_text()
    assert f"| hardware | 1 x NVIDIA H100 80GB HBM3 from step 0; {environment['hardware']} from step 6 |" in card
    assert (f"| software | torch 2.11.0+cu130, transformers {transformers.__version__} from step 0; torch "
            f"{torch.__version__}, transformers {transformers.__version__} from step 6 |") in card
    with open(tmp_path / "out" / "run_args.json") as f:
        assert json.load(f)["train_data"] == [str(there / "nli.tsv")]


class PoisonWeightsAt(TrainerCallback):
    """Test helper: make the weights NaN at the end of a given step."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            with torch.no_grad():
                model.encoder.embeddings.word_embeddings.weight.fill_(float("nan"))


def test_nan_guard_stops_before_saving_a_bad_checkpoint(encoder_dir, tokenizer, tmp_path):
    triplets = load_nli_triplets([os.path.join(SAMPLE, "nli.tsv")])
    rows = tokenize_rows(triplets, tokenizer, ["sent0", "sent1", "hard_neg"], 32)
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=10, save_steps=2,
                             logging_steps=5, logging_nan_inf_filter=False, use_cpu=True, report_to="none",
                             remove_unused_columns=False, disable_tqdm=True)
    trainer = Trainer(model=SimCSEModel.from_encoder(encoder_dir), args=args, train_dataset=rows,
                      data_collator=SimCSECollator(tokenizer.pad_token_id),
                      callbacks=[NonFiniteLossGuard(), PoisonWeightsAt(3)])
    kept = re.escape(str(tmp_path / "checkpoint-2"))
    with pytest.raises(TrainingDiverged,
                       match=rf"loss is nan at step 4; training stopped. The last good checkpoint is {kept} \(`python "
                             rf"sts_evaluation.py {kept}` scores it\); resuming from it would train the same steps "
                             r"again, with the run's arguments and data, which a resumption keeps. Lower the learning "
                             r"rate or mend the data, and train again in another output_dir"):
        trainer.train()
    assert is_complete(str(tmp_path / "checkpoint-2")) and not (tmp_path / "checkpoint-4").exists()
    weights = load_file(str(tmp_path / "checkpoint-2" / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())


class OptimizerAtLog(TrainerCallback):
    """Test helper: keeps the `optimizer` each log is told of."""

    def __init__(self):
        self.seen = []

    def on_log(self, args, state, control, optimizer=None, **kwargs):
        self.seen.append(optimizer)


def test_nan_guard_lets_fp16_loss_scaling_skip_a_step(encoder_dir, tokenizer, tmp_path):
    """fp16's loss scaler skips a step whose scaled gradients overflow (inf gradient norm) and lowers its scale, in a
    healthy run too: the guard stopped such a run where a log fell on that step. It tells that step by the optimizer
    Trainer hands to callbacks (accelerate's, whose step_was_skipped says it). A loss that is not finite still stops a
    run, and an inf gradient norm of a step that was taken (no scaler: bf16, fp32) too."""
    triplets = load_nli_triplets([os.path.join(SAMPLE, "nli.tsv")])
    rows = tokenize_rows(triplets, tokenizer, ["sent0", "sent1", "hard_neg"], 32)
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=2, logging_steps=1,
                             save_strategy="no", use_cpu=True, report_to="none", remove_unused_columns=False,
                             disable_tqdm=True)
    seen = OptimizerAtLog()
    trainer = Trainer(model=SimCSEModel.from_encoder(encoder_dir), args=args, train_dataset=rows,
                      data_collator=SimCSECollator(tokenizer.pad_token_id), callbacks=[NonFiniteLossGuard(), seen])
    trainer.train()
    assert seen.seen and all(o is trainer.optimizer and o.step_was_skipped is False for o in seen.seen)

    # accelerate's optimizer with a loss scaler (on the CPU, which Trainer gives none), as fp16 on a GPU has it.
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = AcceleratedOptimizer(torch.optim.SGD([weight], lr=0.1), scaler=torch.amp.GradScaler("cpu"))
    guard, state = NonFiniteLossGuard(), transformers.TrainerState(global_step=7)

    def step_and_log(gradient_scale: float, logs: dict) -> None:
        optimizer.zero_grad()
        optimizer.scaler.scale((weight * gradient_scale).sum()).backward()
        optimizer.step()
        guard.on_log(args, state, transformers.TrainerControl(), logs=logs, optimizer=optimizer)

    step_and_log(float("inf"), {"loss": 1.5, "grad_norm": float("inf")})
    assert optimizer.step_was_skipped and weight.tolist() == [1.0, 1.0, 1.0]  # skipped: no weight changed
    with pytest.raises(TrainingDiverged, match="loss is nan at step 7"):
        step_and_log(float("inf"), {"loss": float("nan"), "grad_norm": float("inf")})
    with pytest.raises(TrainingDiverged, match="grad_norm is inf at step 7"):
        step_and_log(1.0, {"loss": 1.5, "grad_norm": float("inf")})  # a step taken with it
    assert not optimizer.step_was_skipped
    for silent in (torch.optim.SGD([weight], lr=0.1), None):  # no word of a skipped step: it was taken
        with pytest.raises(TrainingDiverged, match="grad_norm is inf at step 7"):
            guard.on_log(args, state, transformers.TrainerControl(), logs={"grad_norm": float("inf")}, optimizer=silent)


def test_diverging_run_exits_with_a_clear_message(tmp_path, capsys):
    # Diverges in a few steps. (1e38 did too under torch 2.8 and newer; torch 2.6's AdamW refused its step size, lr over
    # the bias correction, as beyond float32's range.)
    config = smoke_config(tmp_path, learning_rate=1e30, max_grad_norm=0.0, save_total_limit=None)
    with pytest.raises(SystemExit, match=r"^error: loss is nan at step 3; training stopped. No checkpoint was saved "
                                         r"yet. Lower the learning rate or mend the data, and train again in another "
                                         r"output_dir \(or with overwrite_output_dir, which deletes this run's "
                                         r"checkpoints\)$") as raised:
        run_simcse.main([config])
    # The training's progress bar ended its line before the error (printed after it) while the error, and the run's
    # frames, are still held (as here; Python 3.13 held them until the error was printed).
    assert re.search(r"\d+/12 \[[^\n\r]*\]\n$", capsys.readouterr().err) and raised.value
    for checkpoint in os.listdir(tmp_path / "out"):
        if checkpoint.startswith("checkpoint-"):
            weights = load_file(str(tmp_path / "out" / checkpoint / "model.safetensors"))
            assert all(torch.isfinite(w).all() for w in weights.values()), checkpoint
    assert not (tmp_path / "out" / "sts_results.json").exists()
    # As it says: a lower rate, over the folder (the smoke config overwrites it).
    results = run_simcse.main([smoke_config(tmp_path, learning_rate=5e-4, max_grad_norm=0.0, save_total_limit=None)])
    assert all(math.isfinite(value) for metrics in results.values() for value in metrics.values())


class PoisonWeightsAtTheEnd(TrainerCallback):
    """Test helper: make the weights NaN once training has ended (after the best checkpoint has loaded)."""

    def on_train_end(self, args, state, control, model=None, **kwargs):
        with torch.no_grad():
            model.encoder.embeddings.word_embeddings.weight.fill_(float("nan"))


def test_undefined_final_scores_are_named_and_never_written(tmp_path, capsys):
    """NaN scores (a model whose embeddings are not finite, or all the same) were written into sts_results.json, and the
    card then failed on them with a traceback after the export. Scored without --output, the table of nan came with no
    word of why."""
    with pytest.raises(SystemExit, match=r"similarities are not finite or all the same, so these scores are undefined "
                                         r"\(sample-sts: avg, cosine_pearson, .*\): its embeddings have diverged or "
                                         r"collapsed. It is exported in "):
        run_simcse.main([smoke_config(tmp_path)], callbacks=[PoisonWeightsAtTheEnd()])
    out = tmp_path / "out"
    assert (out / "model.safetensors").exists()
    assert not (out / "sts_results.json").exists() and not (out / "README.md").exists()
    with pytest.raises(SystemExit, match=r"undefined scores \(s: avg, .*\).*; .*scores.json not written"):
        sts_evaluation.main([str(out), "--set", f"s={SAMPLE}/sts.tsv", "--output", str(tmp_path / "scores.json")])
    assert not (tmp_path / "scores.json").exists()
    capsys.readouterr()
    sts_evaluation.main([str(out), "--set", f"s={SAMPLE}/sts.tsv"])
    said = capsys.readouterr()
    assert "| s | nan | nan |" in said.out
    assert re.search(r"^note: undefined scores \(s: avg, cosine_pearson, .*\): the model's similarities are not finite "
                     r"or all the same \(its embeddings have diverged or collapsed\)$", said.err, re.MULTILINE)
