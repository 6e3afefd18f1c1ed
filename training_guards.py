"""Safety around long runs: resume only from complete checkpoints, keep the last one until the export, stop on a
non-finite loss, save and stop on SIGTERM.

A Trainer checkpoint is complete once its `trainer_state.json` exists and parses: Trainer writes it after the
weights, optimizer, scheduler and RNG states. A run killed while saving leaves a checkpoint without it.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import re
import shutil
import zipfile

import torch
from safetensors import safe_open
from transformers import TrainerCallback, TrainingArguments
from transformers.trainer import OPTIMIZER_NAME, TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, SaveStrategy

from sigterm import SigtermHandler

logger = logging.getLogger(__name__)
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
NO_ROOM = (errno.ENOSPC, errno.EDQUOT)  # a full disk, a disk quota reached


class TrainingDiverged(RuntimeError):
    """The loss or gradient norm became NaN/inf; the message names the step and the last good checkpoint."""


def trainer_state(folder: str) -> dict:
    """The `trainer_state.json` of a checkpoint (or of a run's output folder, written at the end), parsed; OSError or
    ValueError where it is missing or unreadable."""
    with open(os.path.join(folder, TRAINER_STATE_NAME)) as f:
        return json.load(f)


def is_complete(checkpoint_dir: str) -> bool:
    """Whether a checkpoint folder was saved to the end: Trainer writes its `trainer_state.json` last."""
    try:
        trainer_state(checkpoint_dir)
        return True
    except (OSError, ValueError):
        return False


def holds_training_state(checkpoint_dir: str) -> bool:
    """Whether a checkpoint can continue its run as it was: Trainer wrote the optimizer, learning-rate scheduler and
    random states beside the weights (the random states, `rng_state*.pth`, last of them), which `save_only_model`
    leaves out."""
    return any(name.startswith("rng_state") and name.endswith(".pth") for name in os.listdir(checkpoint_dir))


def checkpoint_problem(checkpoint_dir: str, model: torch.nn.Module) -> str | None:
    """Why a complete checkpoint cannot go on training `model`, or None: a file that Trainer reads back is damaged (a
    disk error, a copy cut short: torch's zip reader or safetensors would stop the resumption once the data were
    tokenized), or its optimizer state holds another number of parameter tensors than the model trains (Trainer: "loaded
    state dict contains a parameter group that doesn't match the size of optimizer's group"). Reads each file's index
    (a zip's central directory, a safetensors header) and the optimizer's parameter groups, not the tensors."""
    for name in sorted(os.listdir(checkpoint_dir)):
        path = os.path.join(checkpoint_dir, name)
        try:
            if name.endswith(".safetensors"):
                with safe_open(path, "pt") as f:
                    f.keys()
            elif name.endswith((".pt", ".pth")):  # torch.save's zip archives: the optimizer, scheduler, random states
                zipfile.ZipFile(path).close()
        except Exception as e:
            return (f"{checkpoint_dir}: {name} could not be read ({type(e).__name__}: "
                    f"{(str(e).splitlines() or [''])[0]}), so the run cannot go on from it; resume from another "
                    "checkpoint, or start afresh (overwrite_output_dir)")
    path = os.path.join(checkpoint_dir, OPTIMIZER_NAME)
    if not os.path.isfile(path):
        return None
    saved = sum(len(group["params"]) for group in
                torch.load(path, map_location="cpu", mmap=True, weights_only=True)["param_groups"])
    trained = sum(p.requires_grad for p in model.parameters())
    if saved == trained:
        return None
    return (f"{checkpoint_dir}: its optimizer state is for {saved} parameter tensors, and this model trains "
            f"{trained}, so the run cannot go on from it (this project's checkpoints from before 2026-12-05 also gave "
            "the optimizer the encoder's own pooler, which no pooler type trains: resume those with the version that "
            "wrote them); start afresh (overwrite_output_dir)")


def checkpoints(output_dir: str) -> list[str]:
    """checkpoint-* folders of `output_dir`, oldest step first."""
    if not os.path.isdir(output_dir):
        return []
    found = [(int(m.group(1)), name) for name in os.listdir(output_dir) if (m := CHECKPOINT.match(name))]
    return [os.path.join(output_dir, name) for _, name in sorted(found)]


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The path of the latest complete checkpoint in `output_dir` (`is_complete`), or None."""
    return next((c for c in reversed(checkpoints(output_dir)) if is_complete(c)), None)


def best_checkpoint(output_dir: str) -> str | None:
    """The checkpoint of `output_dir` that its newest complete checkpoint records as the best on the dev set so far,
    where it is still there; else None (no dev scores, or a run that keeps no best)."""
    last = last_complete_checkpoint(output_dir)
    try:
        state = trainer_state(last) if last else None
    except (OSError, ValueError):
        return None
    recorded = state.get("best_model_checkpoint") if isinstance(state, dict) else None
    # Recorded as the path the run was given: the folder may have moved since.
    path = os.path.join(output_dir, os.path.basename(recorded.rstrip("/\\"))) if isinstance(recorded, str) else None
    return path if path and os.path.isdir(path) else None


def remove_incomplete_checkpoints(output_dir: str) -> list[str]:
    """Delete checkpoint folders a kill left half-written; returns their paths."""
    removed = [c for c in checkpoints(output_dir) if not is_complete(c)]
    for path in removed:
        logger.warning("removing incomplete checkpoint %s (the run was stopped while saving it)", path)
        shutil.rmtree(path)
    return removed


class Termination(TrainerCallback, SigtermHandler):
    """`with Termination() as termination:` around `Trainer.train`, with the object among Trainer's callbacks: SIGTERM
    (a scheduler's time limit or preemption, `kill`) lets the step under way end, then Trainer saves a checkpoint and
    stops training (`termination.stopped`), where Python's default ends the process at once and loses the steps since
    the last save. A SIGTERM again changes nothing (SIGKILL ends a run at once). Several processes decide together
    (one collective, at each step Trainer logs, evaluates or saves and every `AGREE_EVERY` steps), so every process
    stops after the same step whichever of them got the signal; under save_strategy "best" a stop agreed at a step
    that is scored goes to the next step (below). The handler only sets `received` (`SigtermHandler`,
    which says which SIGTERM it takes): nothing is written there, as the signal may come while the main thread writes
    to the same stream (a progress bar), where a write from the handler raises "reentrant call" within that write."""

    AGREE_EVERY = 10

    def __init__(self):
        super().__init__()
        self.stopped = False
        self.deferred = False  # the stop, agreed at a step that save_strategy "best" might not save, to the next one

    def on_step_end(self, args, state, control, **kwargs):
        stop = self.received or self.deferred
        if args.world_size > 1 and not self.deferred:
            # Where Trainer syncs anyway (its logged loss, evaluation, save), and often enough for a grace period.
            if not (control.should_log or control.should_evaluate or control.should_save
                    or state.global_step % self.AGREE_EVERY == 0):
                return control
            flag = torch.tensor([int(stop)], device=args.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            stop = bool(flag.item())
        if not stop:
            return control
        # Under save_strategy "best", Trainer saves a step it scores only if the dev score is a new best, whatever
        # should_save says: the stop goes to the next step, which it saves as any other (the score is kept, so a
        # resumption chooses the checkpoint as the whole run would).
        if args.save_strategy == SaveStrategy.BEST and control.should_evaluate:
            if not (self.deferred or control.should_training_stop):
                self.deferred = True
                logger.warning("SIGTERM: step %d is scored, and save_strategy best saves it only if its dev score is a "
                               "new best: stopping after the next step, with its checkpoint", state.global_step)
                return control
            logger.warning("SIGTERM: stopping after step %d, which save_strategy best saves only if its dev score is "
                           "a new best", state.global_step)
        else:
            logger.warning("SIGTERM: saving a checkpoint of step %d and stopping", state.global_step)
        self.stopped = True
        control.should_save = control.should_training_stop = True
        return control


def raised_within(error: BaseException | None, kinds: type | tuple[type, ...]) -> BaseException | None:
    """The first of `error` and the errors it was raised from or while handling that is one of `kinds`, or None:
    Ctrl-C's KeyboardInterrupt where datasets' process pool, stopped in a multi-process `map`, answers it with a
    TimeoutError; a refused connection under a download's error."""
    seen = set()
    while error is not None and id(error) not in seen:  # a chain may loop (`raise e from e`)
        if isinstance(error, kinds):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def no_space(error: BaseException | None) -> OSError | None:
    """The OSError of a full disk (or of a disk quota reached) that `error` was raised from, or None."""
    found = raised_within(error, OSError)
    return found if found is not None and found.errno in NO_ROOM else None


class TrainingBegan(TrainerCallback):
    """`began`: whether Trainer has begun to train (its `on_train_begin`), to tell an interruption before it."""

    def __init__(self):
        self.began = False

    def on_train_begin(self, *args, **kwargs):
        self.began = True


class NonFiniteLossGuard(TrainerCallback):
    """Stop training with `TrainingDiverged` when the logged loss or gradient norm is NaN/inf.

    The check reads only what Trainer already logs (no extra device sync per step). A log is forced right before
    every save, and Trainer logs before it saves, so a checkpoint is never written after the loss went bad: the
    last checkpoint on disk is good. `logging_nan_inf_filter` must be off, or Trainer would hide a NaN loss.
    An inf/NaN gradient norm of a step that fp16's loss scaler skipped passes: that is the scaler's work (its scale was
    too high for that step's gradients; it changed no weight and lowers the scale), in a healthy run too (torch's
    GradScaler starts at 2^16 and doubles its scale after every 2,000 steps without an overflow).
    """

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_save:
            control.should_log = True
        return control

    def on_log(self, args, state, control, logs=None, optimizer=None, **kwargs):
        for key in ("loss", "grad_norm"):
            value = (logs or {}).get(key)
            if isinstance(value, (int, float)) and not math.isfinite(value):
                # The logged norm is the last step's, and so is accelerate's optimizer's step_was_skipped.
                if key == "grad_norm" and getattr(optimizer, "step_was_skipped", False):
                    continue
                # Not "resume with a lower learning rate": the output folder refuses a resumption with other
                # arguments or data as another run, and with the same ones it would train the same steps again.
                last = last_complete_checkpoint(args.output_dir)
                kept = (f"The last good checkpoint is {last} (`python sts_evaluation.py {last}` scores it); resuming "
                        "from it would train the same steps again, with the run's arguments and data, which a "
                        "resumption keeps. " if last else "No checkpoint was saved yet. ")
                raise TrainingDiverged(
                    f"{key} is {value} at step {state.global_step}; training stopped. {kept}Lower the learning rate "
                    "or mend the data, and train again in another output_dir (or with overwrite_output_dir, which "
                    "deletes this run's checkpoints)"
                )
        return control


def best_checkpoint_now(step: int | None, recorded: str | None, output_dir: str, resumed: str | None) -> str | None:
    """Where a resumed run's best checkpoint (its state's best_global_step, recorded as best_model_checkpoint) is now:
    in output_dir as this launch names it (where Trainer looks at each save), where it was recorded, or the resumed
    checkpoint itself; None where it is in none of them, or no best was recorded."""
    if step is None:
        return None
    name = f"{PREFIX_CHECKPOINT_DIR}-{step}"
    itself = resumed if resumed and os.path.basename(resumed.rstrip("/\\")) == name else None
    return next((path for path in (os.path.join(output_dir, name), recorded, itself) if path and os.path.isdir(path)),
                None)


def best_checkpoint_problem(checkpoint_dir: str, output_dir: str) -> str | None:
    """Why a run that loads its best checkpoint at the end cannot go on from `checkpoint_dir`, or None: the best
    checkpoint its state records is gone (deleted by hand; left behind when the checkpoint alone was copied), which
    Trainer would drop, ending the run with the last step's weights under a card that calls them the best."""
    state = trainer_state(checkpoint_dir)
    step, recorded, score = state.get("best_global_step"), state.get("best_model_checkpoint"), state.get("best_metric")
    if step is None or best_checkpoint_now(step, recorded, output_dir, checkpoint_dir):
        return None
    score = f" (dev score {score:.2f})" if isinstance(score, (int, float)) else ""
    here = os.path.join(output_dir, f"{PREFIX_CHECKPOINT_DIR}-{step}")
    elsewhere = f" nor at {recorded}" if recorded and os.path.abspath(recorded) != os.path.abspath(here) else ""
    return (f"{checkpoint_dir}: the run's best checkpoint so far, {PREFIX_CHECKPOINT_DIR}-{step}{score}, is gone: not "
            f"in output_dir {output_dir}{elsewhere}; without it the run would export the last step's weights as its "
            "best. Put that checkpoint back in output_dir, or resume with load_best_model_at_end false to export the "
            "last step's weights as such")


class ResumedBestCheckpoint(TrainerCallback):
    """Give a resumed run the best checkpoint where it is now (`best_checkpoint_now`), as Trainer does at each save.

    Trainer records it as the path the run was given (`outputs/run/checkpoint-6`), and resuming drops that path where it
    is no folder (the output folder moved, or named from another working directory: "does not exist anymore"). A launch
    that then saved nothing before the end (a run stopped after training, resumed to evaluate and export) exported the
    last step's weights, not the best checkpoint's.
    """

    def __init__(self, resumed: str | None):
        self.resumed = resumed

    def on_train_begin(self, args, state, control, **kwargs):  # called once Trainer has loaded the resumed state
        found = best_checkpoint_now(state.best_global_step, state.best_model_checkpoint, args.output_dir, self.resumed)
        if found and found != state.best_model_checkpoint:
            logger.info("the run's best checkpoint (step %d) is %s", state.best_global_step, found)
            state.best_model_checkpoint = found


class LastCheckpointKeeper(TrainerCallback):
    """Keep the last step's checkpoint until the run is exported, where Trainer would delete it as training ends.

    With `save_total_limit` 1 (the published configs), Trainer deletes every checkpoint but the best once training ends
    (where a dev metric recorded one, with `load_best_model_at_end` or without), before the final evaluation and export:
    a run stopped there (Ctrl-C, a full disk, a GPU out of memory, a kill) could only be resumed from the best
    checkpoint, and trained the steps after it again.
    From the last step's save (or a launch resumed at the last step, or the save of a step where training was stopped:
    `Termination`) to `release`, Trainer is given no limit, so it deletes nothing; `release`, once the export is
    written, deletes what Trainer would have. Disk: the last checkpoint stays beside the best one through the final
    evaluation and export, as the newest did between saves in training.
    """

    def __init__(self):
        self.kept = False

    def _keep(self, args, state, control) -> None:
        last = state.global_step >= state.max_steps or control.should_training_stop  # or stopped there (SIGTERM)
        if last and args.save_total_limit == 1:
            args.save_total_limit, self.kept = None, True

    def on_train_begin(self, args, state, control, **kwargs):  # a launch resumed at the last step saves nothing
        self._keep(args, state, control)

    def on_save(self, args, state, control, **kwargs):  # after Trainer's rotation of this save
        self._keep(args, state, control)

    def release(self, args: TrainingArguments, best: str | None) -> None:
        """Give Trainer's limit back and delete every checkpoint but `best` (the run's best checkpoint), as Trainer does
        at the end of training with `save_total_limit` 1 (nothing where no best checkpoint was chosen)."""
        if not self.kept:
            return
        args.save_total_limit, self.kept = 1, False
        if not args.should_save or best is None or not os.path.isdir(best):
            return
        for checkpoint in checkpoints(args.output_dir):
            if not os.path.samefile(checkpoint, best):
                shutil.rmtree(checkpoint, ignore_errors=True)
