"""Full-epoch rehearsal: a KorNLI-sized supervised epoch end to end through run_simcse.py, with its wall time by phase.

    python bench/epoch_rehearsal.py --shape bert-base --device cuda                 # 277,811 triplets, batch 256
    python bench/epoch_rehearsal.py --shape small --device cpu --triplets 3000 --batch 64   # a CPU check

The triplets are made from the sentences of ../shared/data (the KorNLI train split is not here): triplet i pairs
sentence i with two other sentences drawn with a fixed seed, written as a TSV and read back by the real data path.
The run tokenizes, trains one epoch, scores KorSTS-dev 10 times, keeps the best checkpoint, scores KorSTS-test and
KLUE-STS dev and exports. Prints the wall time of each phase (`environment.json` of the run) and the total;
checkpoint saves and dev evaluations are shown apart (they are part of training). Then the training steps by window
(step 1, steps 2-20, and the steps between two evaluations), which shows where a one-time cost (compiling, recording
CUDA graphs) or a cost after each evaluation lands. Full checkpoints, as the product writes them, unless
`--save-only-model`; with the product's defaults (on CUDA: `cuda_graphs`), or `--no-cuda-graphs` (eager layers), or
`--compile-layers` (compiled layers without graphs). The compile time and the recording of the graphs are part of
training; on a machine that has run it before, the compiler's cache shortens step 1 (set TORCHINDUCTOR_CACHE_DIR to an
empty folder to time a first run).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time

if __package__ in (None, ""):  # run as `python bench/<name>.py`: make the repo root importable, as `-m` does
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch
from transformers import BertModel, TrainerCallback

import run_simcse
from bench.common import DATA, SHAPES, bert_config, sampled_triplets, synced_clock, tokenizer, write_tsv

KORNLI_TRIPLETS = 277_811


class StepWindowTimer(TrainerCallback):
    """Wall time of the training steps in windows: step 1 (where a compiler runs), steps 2 to `first`, then the steps
    up to each evaluation or save (which follow a step's end and are not counted). A window runs from its first step's
    start to its last step's end, read after the device's queued work has finished; the clock waits for the device
    only where a window ends, before an evaluation or save that would wait for it anyway (and at steps 1 and
    `first`). -> `windows`: (first step, last step, seconds)."""

    def __init__(self, device: str, first: int = 20):
        self.device, self.first = device, first
        self.windows: list[tuple[int, int, float]] = []
        self._start: tuple[int, float] | None = None

    def on_step_begin(self, args, state, control, **kwargs):
        if self._start is None:
            self._start = (state.global_step + 1, time.perf_counter())

    def on_step_end(self, args, state, control, **kwargs):
        if (control.should_evaluate or control.should_save or control.should_training_stop
                or state.global_step in (1, self.first)):
            step, start = self._start
            self.windows.append((step, state.global_step, synced_clock(self.device) - start))
            self._start = None


def print_windows(windows: list[tuple[int, int, float]]) -> None:
    """The windows as a table, and how far the steps ran over the median rate of the windows after the first two (the
    steady state), in all and in each of the first two (step 1; steps 2 to 20 or to the first evaluation)."""
    print("| training steps | seconds | ms a step |\n|---|---|---|")
    for first, last, seconds in windows:
        print(f"| {first}-{last} | {seconds:.2f} | {1000 * seconds / (last - first + 1):.1f} |")
    steps = sum(last - first + 1 for first, last, _ in windows)
    total = sum(seconds for *_, seconds in windows)
    later = [seconds / (last - first + 1) for first, last, seconds in windows[2:]]
    if later:
        typical = statistics.median(later)
        extra = [seconds - (last - first + 1) * typical for first, last, seconds in windows[:2]]
        print(f"steps {steps}, {total:.1f} s in all; at the median window's {1000 * typical:.1f} ms a step they would "
              f"take {steps * typical:.1f} s: {total - steps * typical:.1f} s more, of which step 1 {extra[0]:.1f} s "
              f"and steps 2-{windows[1][1]} {extra[1]:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="bert-base")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    parser.add_argument("--triplets", type=int, default=KORNLI_TRIPLETS)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--evaluations", type=int, default=10)
    parser.add_argument("--save-only-model", action="store_true",
                        help="checkpoints without optimizer/scheduler state (faster saves; a resume restarts the "
                             "optimizer)")
    parser.add_argument("--compile-layers", action="store_true", help="the compile_layers opt-in")
    parser.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction,
                        help="cuda_graphs on or off (default: unset, the product's default: on with CUDA)")
    args = parser.parse_args()

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        data = os.path.join(work, "triplets.tsv")
        write_tsv(data, sampled_triplets(args.triplets))
        made = time.perf_counter() - start
        tok = tokenizer()
        encoder = os.path.join(work, "encoder")
        torch.manual_seed(0)
        BertModel(bert_config(args.shape, len(tok))).save_pretrained(encoder)
        tok.save_pretrained(encoder)
        steps = math.ceil(args.triplets / args.batch)
        every = max(1, steps // args.evaluations)
        config = {
            "model_name_or_path": encoder, "train_data": [data], "train_format": "triplet",
            "dev_data": f"{DATA}/korsts/sts-dev.tsv",
            "test_data": [f"korsts-test={DATA}/korsts/sts-test.tsv",
                          f"klue-sts-dev={DATA}/klue-sts/klue-sts-v1.1_dev.json"],
            "max_seq_length": 64, "pooler_type": "cls_before_pooler", "output_dir": os.path.join(work, "out"),
            "num_train_epochs": 1, "per_device_train_batch_size": args.batch, "per_device_eval_batch_size": 512,
            "learning_rate": 5e-5, "eval_strategy": "steps", "eval_steps": every, "save_strategy": "steps",
            "save_steps": every, "save_total_limit": 1, "load_best_model_at_end": True, "logging_steps": every,
            "save_only_model": args.save_only_model, "compile_layers": args.compile_layers,
            "cuda_graphs": args.cuda_graphs, "seed": 42,
            "report_to": "none", "disable_tqdm": True,
            "dataloader_num_workers": 4 if args.device == "cuda" else 0,
            **({"bf16": True, "optim": "adamw_torch_fused", "accelerator_config": {"non_blocking": True}}
               if args.device == "cuda" else {"use_cpu": True}),
        }
        path = os.path.join(work, "config.json")
        with open(path, "w") as f:
            json.dump(config, f)
        windows = StepWindowTimer(args.device)
        run_simcse.main([path], callbacks=[windows])
        total = time.perf_counter() - start
        with open(os.path.join(work, "out", "environment.json")) as f:
            environment = json.load(f)
    processes = environment["tokenization_processes"]
    tokenize = f"tokenize ({processes} process{'es' if processes > 1 else ''})"
    phases = {"make triplets file (not part of a real run)": round(made, 3),
              **{tokenize if phase == "tokenize" else phase: s for phase, s in environment["phase_seconds"].items()}}
    print(f"\n{args.triplets:,} triplets, batch {args.batch}, {steps} steps, {args.evaluations} dev evaluations, "
          f"{'model-only' if args.save_only_model else 'full'} checkpoints, shape {args.shape}, "
          f"{environment['hardware']}, {environment['training_batches']} batches"
          f"{', compile_layers' if args.compile_layers else ''}"
          f"{', cuda_graphs' if environment['cuda_graphs'] else ''}; "
          f"{run_simcse.usable_cpu_count()} of {os.cpu_count()} CPUs usable by this process")
    print("| phase | seconds |\n|---|---|")
    for phase, seconds in phases.items():
        print(f"| {phase.replace('_within_train', ' (part of train)')} | {seconds:.1f} |")
    print(f"| total wall time (this script, including imports after start) | {total:.1f} |")
    print(f"| total without making the triplets file | {total - made:.1f} |\n")
    print_windows(windows.windows)


if __name__ == "__main__":
    main()
