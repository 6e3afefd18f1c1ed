"""Start-up agreement between the processes of one launch (several GPUs, several machines with their own files).

Each process reads and checks its own inputs; these helpers make the processes stop together, each with the reason,
where one of them fails or where they would not train one run, instead of waiting for each other at the next
collective operation (or training apart).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from collections.abc import Iterator
from typing import Any

import torch
from accelerate import PartialState

from output_folder import SOURCE_DIGESTS, changed_arguments, checkpoint_step

logger = logging.getLogger(__name__)
# Arguments that name each machine's own folders, which may lie under other paths on other machines (the encoder's
# files are not compared; the data's rows are, through their digests).
PER_MACHINE_PATHS = {"output_dir", "model_name_or_path", "tokenizer_name"}


def gathered(value: Any) -> list:
    """Every process's `value`, in rank order ([value] in a single process)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [value]
    values = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(values, value)
    return values


def join_the_other_processes(timeout: datetime.timedelta = datetime.timedelta(minutes=5)) -> None:
    """Join the process group of a launch of several processes (WORLD_SIZE) where this process has not: its arguments
    failed before TrainingArguments, which joins it, were made (the JSON file missing or another on this machine), and
    the other processes wait for it there, with no end in sight (two launchers on a CPU: still waiting after 200 s,
    their `ddp_timeout` 20 s). Joins as TrainingArguments does by default (accelerate's choice of backend); gives up
    after `timeout`. Where TrainingArguments tried to join and failed, nothing is tried again: accelerate's
    `PartialState` counts as made once it has begun."""
    if int(os.environ.get("WORLD_SIZE", "1")) < 2 or not torch.distributed.is_available() or \
            torch.distributed.is_initialized():
        return
    try:
        PartialState(timeout=timeout)
    except Exception as e:  # the failure itself is what this process reports
        # An error, not a warning: this process's own, which the other processes' logs keep (project_errors_only).
        logger.error("could not join the other processes to tell them why this one stops (%s)", e)


@contextlib.contextmanager
def stopping_together() -> Iterator[None]:
    """Start-up work that every process does (on several machines, each with its own files): where it fails in one
    process, every process stops, the others with that process's message, rather than waiting for it at the next
    collective operation (on two gloo processes, a 'Connection closed by peer' traceback; under NCCL, a wait for its
    timeout). The block must hold no collective operation that a failure would leave some processes out of."""
    failure = caught = None
    try:
        yield
    except SystemExit as e:  # a message, or argparse's status 2 after its own message
        failure = e.code.removeprefix("error: ") if isinstance(e.code, str) else f"exit status {e.code}"
        caught = e
    except Exception as e:
        failure, caught = f"{type(e).__name__}: {e}", e
    if caught is not None:
        join_the_other_processes()
        with contextlib.suppress(Exception):  # telling the others is best effort; this process's failure stands
            gathered(failure)
        raise caught
    failures = gathered(failure)
    if stopped := [(rank, text) for rank, text in enumerate(failures) if text is not None]:
        rank, text = stopped[0]
        raise SystemExit(f"error: process {rank} of {len(failures)} stopped at start-up, so this one stops too: {text}")


def check_same_run(run_args: dict) -> None:
    """Refuse a launch of several processes that would not train one run (machines each with its own copy of the data
    files or of the config, the copies not the same): other rows train on mixed data, or, with other row counts, hang;
    other arguments train the replicas apart (two learning rates did, to the end, without a word). Processes agree as a
    run and its resumption must (`output_folder.changed_arguments`: data by its rows' digests), but for the paths of
    each machine's own folders (PER_MACHINE_PATHS)."""
    everyone = gathered(run_args)
    differ = sorted({key for other in everyone[1:] for key in changed_arguments(everyone[0], other)}
                    - PER_MACHINE_PATHS)
    if digests := [key for key in differ if key in SOURCE_DIGESTS.values()]:
        raise SystemExit(f"error: the processes read other rows ({', '.join(digests)} differ between them), as where "
                         f"each machine reads its own copy of the data files and the copies differ: make them the same")
    if differ:
        raise SystemExit(f"error: the processes were given other arguments ({', '.join(differ[:8])} "
                         f"{'differs' if len(differ) == 1 else 'differ'} between them), as where each machine reads "
                         "its own copy of the config and the copies differ: make them the same")


def check_same_resumption(resume: str | None) -> None:
    """Refuse a launch of several processes that found different checkpoints to resume from (None: none; machines with
    their own disks where only the first one's holds the checkpoints): they would train from different steps (a
    2-process run hung)."""
    if len(set(steps := gathered(checkpoint_step(resume) if resume else 0))) > 1:
        raise SystemExit("error: resume_from_checkpoint: the processes found different checkpoints to resume from (the "
                         f"step of each process, 0 for none: {', '.join(map(str, steps))}), as where the checkpoints "
                         "are on one machine's disk only; they would train from different steps. Put output_dir on "
                         "storage every machine sees, or copy the checkpoint to the same path on every machine (and "
                         "train with \"save_on_each_node\": true where each machine has only its own disk)")
