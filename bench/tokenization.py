"""Tokenization of a KorNLI-sized training set by process count: where the epoch rehearsal's tokenize phase goes.

    python bench/tokenization.py                                   # 277,811 triplets; 1, 2, 4, 8 and all usable CPUs
    python bench/tokenization.py --triplets 20000 --processes 1 2   # a quick check

Times `data_loading.tokenize_rows` (the call run_simcse.py makes, `datasets.map` over `num_proc` processes) on the
epoch rehearsal's triplets (`bench.common.sampled_triplets`, held in memory as run_simcse.py holds a file it read) with
the benchmark tokenizer, each setting in a fresh Python process, as a run starts: with the tokenizer's own Rust
thread pool as it comes (`TOKENIZERS_PARALLELISM` unset) and without it (`false`), since several processes that
each start a pool of every CPU's threads may crowd each other. Prints one row a setting (wall seconds, CPU seconds of
the process and its tokenizing workers, their ratio: how many CPUs were busy on average, sentences a second) and which
process count `run_simcse.py` picks by default on this machine. Usable CPUs are `run_simcse.usable_cpu_count`'s
(affinity and container quota).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

if __package__ in (None, ""):  # run as `python bench/<name>.py`: make the repo root importable, as `-m` does
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import ROOT, sampled_triplets, tokenizer
from bench.epoch_rehearsal import KORNLI_TRIPLETS


def time_one(tokenizer_dir: str, triplets: int, processes: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) `tokenize_rows` takes on `triplets` sampled triplets with `processes` processes (this
    process): CPU time of this process and of the worker processes it waited for, user and system."""
    import datasets
    from transformers import AutoTokenizer

    from data_loading import tokenize_rows

    datasets.disable_progress_bars()
    datasets.disable_caching()  # a second setting must not find the first one's result in the cache
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    rows = sampled_triplets(triplets)
    cpu_start, start = cpu_seconds(), time.perf_counter()
    out = tokenize_rows(rows, tok, rows.column_names, 64, num_proc=None if processes == 1 else processes)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
    assert len(out) == triplets
    return seconds, cpu


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its children that have ended so far."""
    usages = map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return sum(u.ru_utime + u.ru_stime for u in usages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--triplets", type=int, default=KORNLI_TRIPLETS)
    parser.add_argument("--processes", type=int, nargs="+",
                        help="process counts to time (default: 1, 2, 4, 8 and the usable CPUs, up to those)")
    parser.add_argument("--one", nargs=2, metavar=("TOKENIZER_DIR", "PROCESSES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # a child: one setting, its seconds as JSON on the last line
        seconds, cpu = time_one(args.one[0], args.triplets, int(args.one[1]))
        print(json.dumps({"seconds": seconds, "cpu_seconds": cpu}))
        return

    import run_simcse  # not in a child, which needs the tokenizer alone (its import is seconds of the time it takes)

    cpus = run_simcse.usable_cpu_count()
    counts = args.processes or sorted({p for p in (1, 2, 4, 8, cpus) if p <= cpus})
    default = run_simcse.tokenization_processes(args.triplets, None) or 1
    sentences = 3 * args.triplets
    print(f"{args.triplets:,} triplets ({sentences:,} sentences), max length 64, benchmark tokenizer; {cpus} of "
          f"{os.cpu_count()} CPUs usable; run_simcse.py's default: {default} process{'es' if default > 1 else ''}")
    print("| processes | TOKENIZERS_PARALLELISM | seconds | CPU seconds | CPUs busy | sentences/s |\n"
          "|---|---|---|---|---|---|")
    results = {}
    with tempfile.TemporaryDirectory() as work:
        tokenizer().save_pretrained(work)
        for processes in counts:
            for parallelism in (None, "false"):
                env = {k: v for k, v in os.environ.items() if k != "TOKENIZERS_PARALLELISM"}
                if parallelism:
                    env["TOKENIZERS_PARALLELISM"] = parallelism
                run = subprocess.run([sys.executable, os.path.abspath(__file__), "--triplets", str(args.triplets),
                                      "--one", work, str(processes)], cwd=ROOT, env=env, capture_output=True,
                                     text=True)
                if run.returncode:
                    raise SystemExit(f"{processes} process(es), TOKENIZERS_PARALLELISM={parallelism}:\n{run.stderr}")
                timed = json.loads(run.stdout.strip().splitlines()[-1])
                seconds, cpu = timed["seconds"], timed["cpu_seconds"]
                results[(processes, parallelism or "unset")] = seconds
                print(f"| {processes} | {parallelism or 'unset'} | {seconds:.2f} | {cpu:.2f} | {cpu / seconds:.1f} | "
                      f"{sentences / seconds:,.0f} |", flush=True)
    (best_processes, best_parallelism), best = min(results.items(), key=lambda kv: kv[1])
    timed = f"{results[(default, 'unset')]:.2f} s" if (default, "unset") in results else "not timed"
    print(f"fastest: {best_processes} process(es), TOKENIZERS_PARALLELISM {best_parallelism}, {best:.2f} s; "
          f"run_simcse.py's default ({default}, unset): {timed}")


if __name__ == "__main__":
    main()
