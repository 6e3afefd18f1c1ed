"""The output folder of a training run: which run it holds, and what a launch resumes from it.

`run_args.json` (written by `run_simcse.py` once its inputs are checked) marks a folder as one run's: its arguments and
the SHA-256 of its training, dev and test rows. A launch into a folder that holds another run is refused (or, with
`overwrite_output_dir`, replaces its checkpoints); a launch of the same run may resume from its last complete
checkpoint (`training_guards`).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import shutil

try:
    import fcntl
except ImportError:  # Windows: no advisory locks of this kind
    fcntl = None

from transformers.trainer import TRAINER_STATE_NAME

from hub.model_dir import PUBLISHED_PATTERNS, RUN_ARGS_FILE, ModelDirError, check_export
from training_guards import (CHECKPOINT, holds_training_state, is_complete, last_complete_checkpoint, no_space,
                             remove_incomplete_checkpoints, trainer_state)

logger = logging.getLogger(__name__)

# Arguments that may change between a run and its resumption (or differ between its processes) without making it a
# different run: none of them changes the trained weights (e.g. a smaller evaluation batch after running out of memory).
RESUMABLE_KEYS = {
    # output_dir: the folder whose run_args.json is compared, however this launch names it (a trailing slash, an
    # absolute path, another working directory) or wherever it was moved
    "output_dir",
    # load_best_model_at_end: which checkpoint is exported, not how any is trained (the card says which)
    "load_best_model_at_end",
    "resume_from_checkpoint", "overwrite_output_dir", "logging_dir", "local_rank", "preprocessing_num_workers",
    "dataloader_num_workers", "dataloader_pin_memory", "dataloader_prefetch_factor", "dataloader_persistent_workers",
    "dataloader_multiprocessing_context",
    "per_device_eval_batch_size", "eval_accumulation_steps", "logging_steps", "logging_strategy", "logging_first_step",
    "report_to", "run_name", "disable_tqdm", "log_level", "log_level_replica", "save_total_limit",
    "include_num_input_tokens_seen",  # a logged count (recorded since the tokenizer's keys)
    "push_to_hub", "hub_token", "hub_model_id", "hub_private_repo", "hub_revision", "hub_strategy", "hub_always_push",
    "cache_dir",
    # DDP's search for unused parameters, none of which there are (run_arguments: off where unset, since 2026-12-05)
    "ddp_find_unused_parameters",
}

# Settings of how a step is computed, not of what: the memory it takes (chunks, activation checkpointing) and whether
# its code is compiled. A run resumed after running out of GPU memory, or after torch could not compile it, may take
# them up or drop them, as the errors advise: the same loss and gradients, though from there the run draws its dropout
# masks otherwise (a chunk at a time, in compiled code), as another seed would. Not the processes of one run
# (process_agreement.check_same_run): one that encodes in chunks makes other steps than one that does not.
HOW_COMPUTED_KEYS = {
    "embedding_chunk_size", "activation_checkpointing", "activation_checkpointing_kwargs", "gradient_checkpointing",
    "gradient_checkpointing_kwargs", "cuda_graphs", "compile_layers", "torch_compile", "torch_compile_backend",
    "torch_compile_mode",
}

# Data sources are one run's by their rows, not their paths: the same rows read from elsewhere (the run resumed on
# another machine, its data under another mount) resume it. Each source key with the key of its rows' SHA-256.
SOURCE_DIGESTS = {"train_data": "train_rows_sha256", "dev_data": "dev_rows_sha256", "test_data": "test_rows_sha256"}


# Keys that records of earlier versions lack (they left out every key holding "token"): such a record is compared
# without them.
RECORDED_SINCE_TOKENIZER_KEYS = {"tokenizer_name", "tokenizer_revision", "train_tokenizer_vocab_size",
                                 "average_tokens_across_devices", "include_num_input_tokens_seen"}


def changed_arguments(saved: dict, run_args: dict, may_change: set[str] = RESUMABLE_KEYS) -> list[str]:
    """The keys of a run_args.json record in which this launch's `run_args` make another run than the `saved` one:
    any but `may_change` (those of a resumption, default RESUMABLE_KEYS), a model or tokenizer folder only where it is
    another folder, and a data source's paths only where its rows' digest changed too (or was not recorded)."""
    changed = {k for k in set(saved) | set(run_args) if k not in may_change and saved.get(k) != run_args.get(k)}
    if "tokenizer_name" not in saved:
        changed -= RECORDED_SINCE_TOKENIZER_KEYS
    for key in ("model_name_or_path", "tokenizer_name"):  # one folder, named otherwise (./, a trailing slash, a link)
        then, now = saved.get(key), run_args.get(key)
        if isinstance(then, str) and isinstance(now, str) and os.path.isdir(then) and os.path.isdir(now) and \
                os.path.samefile(then, now):
            changed.discard(key)
    for source, digest in SOURCE_DIGESTS.items():
        if digest not in saved:  # a record of an earlier version: the paths decide
            changed.discard(digest)
        elif digest not in changed:
            changed.discard(source)
    return sorted(changed)


# resume_from_checkpoint values that mean the output folder's newest complete checkpoint.
RESUME_LAST = ("last", "latest", "true")


def resumes_in(output_dir: str, resume: str | None) -> bool:
    """Whether resume_from_checkpoint names a checkpoint of `output_dir` (its newest, or one by its path)."""
    if not resume:
        return False
    if resume.lower() in RESUME_LAST:
        return True
    # The folder's path with links resolved: a checkpoint named through a link to the output folder is one of it.
    return os.path.realpath(os.path.dirname(os.path.abspath(resume.rstrip("/\\")))) == os.path.realpath(output_dir)


# The output folders this process holds the lock of: real path -> the folder's open descriptor.
_HELD: dict[str, int] = {}


def hold_output_dir(output_dir: str, each_node: bool = False) -> None:
    """Lock `output_dir` until `release_output_dirs` or this process's end, killed or not (flock on the folder itself:
    nothing is written into it); SystemExit where another launch holds it, or, with save_on_each_node (`each_node`),
    another node of this one, where the nodes share the folder's disk. Two launches into one folder deleted each
    other's checkpoints and both failed. A folder not made yet is left for a call once it is; where the file system
    cannot lock a folder (NFS may not), the launch goes on unguarded."""
    path = os.path.realpath(output_dir)
    if fcntl is None or path in _HELD or not os.path.isdir(path):
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        node = (" Or it is another node of this launch: with save_on_each_node, the first process of each node saves "
                "into output_dir, which must then be on a disk of each node's own; on a disk the nodes share, leave "
                "save_on_each_node off" if each_node else "")
        raise SystemExit(f"error: output_dir {output_dir} is in use: another launch into it is still running (it holds "
                         f"the folder's lock). Let it end or stop it, or choose another folder.{node}") from None
    except OSError as e:
        os.close(fd)
        logger.info("output_dir %s cannot be locked here (%s): a second launch into it would not be refused",
                    output_dir, e)
        return
    _HELD[path] = fd


def release_output_dirs() -> None:
    """Release the locks `hold_output_dir` took."""
    while _HELD:
        os.close(_HELD.popitem()[1])


def check_output_dir(output_dir: str, run_args: dict, overwrite: bool, resume: str | None = None) -> bool:
    """Refuse an output folder that holds anything but this same run, unless overwrite; returns whether the folder's
    checkpoints are another run's, for `remove_checkpoints` to delete once nothing else can stop the run. A launch that
    resumes from the folder's checkpoints (`resume`) is refused where they are another run's: a resumption keeps the
    run's arguments (all but RESUMABLE_KEYS and HOW_COMPUTED_KEYS), and overwrite_output_dir would delete the checkpoint
    it names."""
    names = os.listdir(output_dir) if os.path.isdir(output_dir) else []
    if not names:
        return False
    if names == [RUN_ARGS_FILE]:  # a run that stopped before its first checkpoint (out of GPU memory)
        logger.info("output_dir %s holds only the %s of a run that saved nothing; starting afresh", output_dir,
                    RUN_ARGS_FILE)
        return False
    saved_path = os.path.join(output_dir, RUN_ARGS_FILE)
    if os.path.isfile(saved_path):
        with open(saved_path, encoding="utf-8") as f:
            saved = json.load(f)
        changed = changed_arguments(saved, run_args, RESUMABLE_KEYS | HOW_COMPUTED_KEYS)
        if not changed:
            return False
        problem = f"holds a different run ({RUN_ARGS_FILE} differs in: {', '.join(changed[:8])})"
        if "world_size" in changed and "world_size" in saved:
            problem += (f"; it ran in {saved.get('world_size')} process(es) and this launch has "
                        f"{run_args.get('world_size')}: resume it with as many")
        if "train_rows_sha256" in changed and "train_rows_sha256" in saved:
            problem += (f"; it trained on other rows than train_data {', '.join(run_args.get('train_data'))} holds now "
                        f"({saved.get('train_rows')} rows then, {run_args.get('train_rows')} now)")
        if {"dev_rows_sha256", "test_rows_sha256"} & set(changed):
            problem += "; dev_data or test_data hold other rows than the run's"
    else:
        problem = f"is not empty and holds no {RUN_ARGS_FILE}"
        if overwrite and (mine := written_over(output_dir, names)):
            raise SystemExit(f"error: output_dir {output_dir} holds no {RUN_ARGS_FILE}, so no run of this job, but "
                             f"files that the run would write over ({', '.join(mine[:6])}"
                             f"{', ...' if len(mine) > 6 else ''}): overwrite_output_dir replaces a run's folder only; "
                             "move those files away, or choose an empty or new folder")
    resuming_here = resumes_in(output_dir, resume)
    if resuming_here and not overwrite and os.path.isfile(saved_path):
        raise SystemExit(f"error: output_dir {output_dir} {problem}, so resume_from_checkpoint={resume} cannot "
                         "continue that run: a resumption keeps its arguments, but for those that leave the weights "
                         "alone (evaluation batch, logging, data loading, save_total_limit, Hub settings) and those of "
                         "how a step is computed (embedding_chunk_size, activation_checkpointing, cuda_graphs, "
                         "compile_layers, torch_compile). Launch it "
                         f"with the arguments of its {RUN_ARGS_FILE}, or start this run in another folder")
    if resuming_here and resume.lower() not in RESUME_LAST:
        raise SystemExit(f"error: resume_from_checkpoint {resume} is a checkpoint of the run output_dir {output_dir} "
                         f"holds, which overwrite_output_dir would delete: the folder {problem}. Leave "
                         "resume_from_checkpoint out to start afresh, or resume with the run's arguments")
    if not overwrite:
        raise SystemExit(f"error: output_dir {output_dir} {problem}; choose another folder or set overwrite_output_dir")
    doing = "overwriting it" if os.path.isfile(saved_path) else \
        "writing the run beside its files (none of them a file the run writes)"
    logger.warning("output_dir %s %s; %s%s", output_dir, problem, doing,
                   f", and training from step 0 (resume_from_checkpoint={resume} resumes only the same run)"
                   if resuming_here else "")
    return True


# What a run writes into its output folder besides the export's files (PUBLISHED_PATTERNS) and its checkpoints.
RUN_FILES = ("trainer_state.json", "train_results.json", "environment.json")
MODULE_FOLDERS = "[0-9]_*"  # sentence-transformers' module folders (1_Pooling/): an export replaces them


def written_over(folder: str, names: list[str]) -> list[str]:
    """The names among `folder`'s entries `names` that a run would write over (or delete: checkpoint-*)."""
    return sorted(name for name in names if CHECKPOINT.match(name) or
                  any(fnmatch.fnmatch(name, pattern) for pattern in (*PUBLISHED_PATTERNS, *RUN_FILES)) or
                  (fnmatch.fnmatch(name, MODULE_FOLDERS) and os.path.isdir(os.path.join(folder, name))))


def remove_checkpoints(output_dir: str) -> None:
    """Delete the checkpoint-* folders of `output_dir`."""
    for name in os.listdir(output_dir):
        if name.startswith("checkpoint-"):
            shutil.rmtree(os.path.join(output_dir, name))


def resolve_resume(output_dir: str, resume: str | None) -> str | None:
    """'last' (or 'latest'/'true'): the newest complete checkpoint, after deleting half-written ones (None: start
    afresh); a path must be a complete checkpoint. Either must hold its training state (not `save_only_model`)."""
    if not resume:
        warn_of_checkpoints_left(output_dir)
        return None
    if resume.lower() in RESUME_LAST:
        remove_incomplete_checkpoints(output_dir)
        found = last_complete_checkpoint(output_dir)
        if found is None:
            logger.warning("resume_from_checkpoint=%s: no checkpoint in %s; starting from the beginning", resume,
                           output_dir)
            return None
    elif os.path.isfile(os.path.join(resume, RUN_ARGS_FILE)):  # a run's folder: its trainer_state.json is the end's
        newest = last_complete_checkpoint(resume)
        name = f"name one ({os.path.basename(newest)} is its newest complete one), or " if newest else ""
        raise SystemExit(f"error: resume_from_checkpoint {resume} is a run's output folder, not one of its "
                         f"checkpoints: {name}set output_dir to that folder and resume_from_checkpoint to \"last\"")
    elif is_complete(resume):
        found = resume
    else:
        raise SystemExit(f"error: resume_from_checkpoint {resume} is not a complete checkpoint (no readable "
                         "trainer_state.json)")
    if not holds_training_state(found):
        raise SystemExit(f"error: resume_from_checkpoint: {found} holds the weights only (written with "
                         "save_only_model: no optimizer, learning-rate schedule or random state), so the run cannot go "
                         "on as it was; start afresh (overwrite_output_dir), and leave save_only_model off for a run "
                         "you may resume")
    tell_resumption(output_dir, found)
    return found


def tell_resumption(output_dir: str, checkpoint: str) -> None:
    """Log the step a launch resumes from. Where the folder's run had trained to its end, warn that the launch trains
    again from that step (save_total_limit may have kept only the best checkpoint, an earlier one) or, from the last
    step, trains no step, and evaluates and exports again either way."""
    state = trainer_state(checkpoint)
    step = state.get("global_step")
    last = last_complete_checkpoint(output_dir)
    finished = finished_state(output_dir, last) if last else None
    if not finished:
        logger.info("resuming from %s (step %s of %s)", checkpoint, step, state.get("max_steps"))
        return
    end = finished["global_step"]
    trains = "trains no step" if step >= end else f"trains steps {step + 1}-{end} again"
    logger.warning("output_dir %s holds this run, trained to its end (step %s); resuming from %s (step %s), this "
                   "launch %s, then evaluates and exports the run again %s", output_dir, end, checkpoint, step, trains,
                   export_hint(output_dir))


def warn_of_checkpoints_left(output_dir: str) -> None:
    """Log a warning when a launch that does not resume finds complete checkpoints of its own run (check_output_dir
    refused any other run's): it trains from step 0 and replaces them, where a user re-launching a stopped job likely
    meant to continue it."""
    last = last_complete_checkpoint(output_dir)
    if last is None:
        return
    if finished := finished_state(output_dir, last):
        logger.warning("output_dir %s holds this run, trained to its end (step %s); this launch trains it again from "
                       "step 0 and replaces its checkpoints, export and results %s", output_dir,
                       finished["global_step"], export_hint(output_dir))
        return
    state = trainer_state(last)
    step, end = state.get("global_step"), state.get("max_steps")
    logger.warning("output_dir %s holds checkpoints of this run up to step %s of %s (%s); this launch trains again "
                   "from step 0 and replaces them. To continue from step %s instead, set \"resume_from_checkpoint\": "
                   "true (or add --resume_from_checkpoint last)", output_dir, step, end, os.path.basename(last), step)


def interruption_note(output_dir: str, step: int, max_steps: int, trained: bool) -> str:
    """What a launch stopped (Ctrl-C, a full disk) while training, or after it (`trained`: in the final evaluation,
    export or card) says: the step it reached, and what a resumed launch does from the folder's last complete
    checkpoint, or that none was kept (a checkpoint cut short is not one: resuming removes it)."""
    last = last_complete_checkpoint(output_dir)
    resume = "add --resume_from_checkpoint last (or set \"resume_from_checkpoint\": true) to"
    if not trained:
        if last is None:
            return (f"stopped at step {step} of {max_steps}, before any checkpoint was saved: a new launch starts at "
                    "step 0")
        return (f"stopped at step {step} of {max_steps}; {output_dir} holds {os.path.basename(last)} (step "
                f"{checkpoint_step(last)}): {resume} continue from it")
    stopped = f"stopped after training to its end (step {step}), before the final evaluation and export were complete"
    if last is None:
        return f"{stopped}; no checkpoint is kept: a new launch trains it again from step 0"
    at = checkpoint_step(last)
    then = ("evaluate and export it without training again" if at >= step
            else f"train steps {at + 1}-{step} again from it, then evaluate and export")
    return f"{stopped}; {output_dir} holds {os.path.basename(last)} (step {at}): {resume} {then}"


def full_disk(output_dir: str, error: BaseException, needed_bytes: int, needed_for: str) -> str | None:
    """Where `error` came from a full disk, what to say of it; else None. A full disk is an OSError ENOSPC (or EDQUOT, a
    quota reached) in the error's chain (`training_guards.no_space`), or any error with less room left on the disk of
    `output_dir` than what was being written takes (`needed_bytes`, for `needed_for`, e.g. "a checkpoint"): torch's
    writer of optimizer.pt reports it as a RuntimeError ("unexpected pos ...", after "basic_ios::clear: iostream
    error")."""
    try:
        free = shutil.disk_usage(output_dir).free
    except OSError:
        free = None
    room_left = free is not None and free >= needed_bytes
    if no_space(error) is None and (free is None or room_left):
        return None
    said = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
    if room_left:  # another disk filled: the cache's, a temporary folder's (the error names the file)
        return f"a disk is full ({said})"
    room = f"{free / 2**20:.1f} MiB free" if free is not None else "its room unknown"
    return (f"the disk of {output_dir} is full ({room}, and {needed_for} takes about {needed_bytes / 2**20:.1f} MiB; "
            f"{said})")


def export_hint(output_dir: str) -> str:
    """How to score a finished run's export without training: where its launch was stopped after training, before the
    export was written (the final evaluation and the export come after trainer_state.json), say that instead."""
    try:
        check_export(output_dir)  # what `hub` publishes: config.json, safetensors weights (sharded too), tokenizer
        exported = (os.path.getmtime(os.path.join(output_dir, "config.json"))
                    >= os.path.getmtime(os.path.join(output_dir, TRAINER_STATE_NAME)))
    except (ModelDirError, OSError):
        exported = False
    if exported:
        return f"(`python sts_evaluation.py {output_dir}` scores the export without training)"
    return "(its export is missing or older than its training: the launch that trained it stopped before exporting)"


def finished_state(output_dir: str, last_checkpoint: str) -> dict | None:
    """The trainer_state.json that `run_simcse.py` writes into `output_dir` once training has ended, where it shows
    every step trained and was written after the folder's last complete checkpoint (not left by a launch before the
    one that saved that checkpoint); else None."""
    try:
        state = trainer_state(output_dir)
        written_after = (os.path.getmtime(os.path.join(output_dir, TRAINER_STATE_NAME))
                         >= os.path.getmtime(os.path.join(last_checkpoint, TRAINER_STATE_NAME)))
    except (OSError, ValueError):
        return None
    ended = isinstance(state, dict) and state.get("max_steps") and state.get("global_step") == state["max_steps"]
    return state if ended and written_after else None


def checkpoint_step(checkpoint: str) -> int:
    """The training step a complete checkpoint was written at (its trainer_state.json's global_step)."""
    return trainer_state(checkpoint)["global_step"]
