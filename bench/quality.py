"""Quality check on a real encoder: SimCSE (this project) vs sentence-transformers, same data and settings.

Encoder: multilingual-e5-small pruned to the shared Korean data, built by ../shared/tools/make_e5_small_ko.py (the
script builds it into --encoder if it is missing). Training data: the 2,500 XNLI-ko dev+test triplets (premise /
entailment / contradiction). Settings for both systems: CLS pooling without MLP, in-batch negatives plus hard negatives
at temperature 0.05 (= MultipleNegativesRankingLoss scale 20), batch 64, lr 5e-5 linear decay, no warm-up, 3 epochs, max
length 64, seeds --seeds (default 42), final model (no dev-set selection). Every model is scored by the same code
(`sts_evaluation`) on KorSTS-test and KLUE-STS dev.

    python bench/quality.py [--encoder models/e5-small-ko] [--epochs 3] [--seeds 42 43 44]   # from the repo root
    python bench/quality.py --systems ours --embedding-chunk-size 16 --output /tmp/chunked.md   # the gradient cache

Prints one Markdown table: every run, the mean per system, and the difference of the means (also written to --output).
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

if __package__ in (None, ""):  # run as `python bench/<name>.py`: make the repo root importable, as `-m` does
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import run_simcse
import sts_evaluation
from bench.common import DATA, ROOT, XNLI, sentence_transformers_trainer
from modeling_simcse import saved_form

SHARED = os.path.dirname(DATA)
SETS = [f"korsts-test={DATA}/korsts/sts-test.tsv", f"klue-sts-dev={DATA}/klue-sts/klue-sts-v1.1_dev.json"]


def ensure_encoder(path: str) -> str:
    if not os.path.isfile(os.path.join(path, "model.safetensors")):
        corpus = (glob.glob(f"{DATA}/korsts/*.tsv") + glob.glob(f"{DATA}/kornli/*.tsv")
                  + [f"{DATA}/klue-sts/klue_sts_train.csv", f"{DATA}/klue-sts/klue-sts-v1.1_dev.json"])
        subprocess.run([sys.executable, os.path.join(SHARED, "tools", "make_e5_small_ko.py"), "--out", path,
                        "--prune-to-corpus", *corpus], check=True)
    return path


def evaluate(model_dir: str) -> dict:
    """A model folder -> its `sts_results` on SETS. An export of run_simcse.py is scored with the embedding it documents
    (its own pooler); any other encoder (the untrained one, sentence-transformers' output) by its CLS state."""
    args = [model_dir, "--max-length", "64"]
    if saved_form(model_dir) is None:
        args += ["--pooler", "cls_before_pooler"]
    for s in SETS:
        args += ["--set", s]
    return sts_evaluation.main(args)


def train_simcse(encoder: str, out: str, epochs: float, seed: int, embedding_chunk_size: int | None = None) -> float:
    config = {
        "model_name_or_path": encoder, "train_data": XNLI, "train_format": "nli", "pooler_type": "cls_before_pooler",
        "temperature": 0.05, "max_seq_length": 64, "output_dir": out, "num_train_epochs": epochs,
        "per_device_train_batch_size": 64, "learning_rate": 5e-5, "lr_scheduler_type": "linear", "warmup_steps": 0,
        "eval_strategy": "no", "save_strategy": "no", "logging_steps": 10, "seed": seed, "use_cpu": True,
        "report_to": "none", "test_data": [], "embedding_chunk_size": embedding_chunk_size,
    }
    path = os.path.join(os.path.dirname(out), "simcse.json")
    with open(path, "w") as f:
        json.dump(config, f)
    start = time.perf_counter()
    run_simcse.main([path])
    return time.perf_counter() - start


def train_sentence_transformers(encoder: str, out: str, epochs: float, seed: int) -> float:
    start = time.perf_counter()
    model, trainer = sentence_transformers_trainer(
        encoder, "cpu",
        output_dir=out + "-checkpoints", num_train_epochs=epochs, per_device_train_batch_size=64, learning_rate=5e-5,
        lr_scheduler_type="linear", warmup_steps=0, seed=seed, save_strategy="no", logging_steps=10, report_to="none",
        use_cpu=True,
    )
    trainer.train()
    seconds = time.perf_counter() - start
    model.save(out)
    return seconds


SYSTEMS = {  # key -> (row name, trainer)
    "st": ("sentence-transformers MNRL (scale 20)", train_sentence_transformers),
    "ours": ("this project: run_simcse.py", train_simcse),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoder", default=os.path.join(ROOT, "models", "e5-small-ko"))
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--systems", nargs="+", choices=["st", "ours"], default=["st", "ours"],
                        help="which trained systems to run (the untrained encoder is always scored)")
    parser.add_argument("--embedding-chunk-size", type=int,
                        help="this project's runs encode a step's sentences this many at a time (the gradient cache)")
    parser.add_argument("--output", default=os.path.join(ROOT, "bench", "quality_table.md"))
    args = parser.parse_args()
    encoder = ensure_encoder(args.encoder)

    runs = {"untrained encoder (CLS)": {None: evaluate(encoder)}}  # system -> seed -> results
    names = {key: name for key, (name, _) in SYSTEMS.items()}
    if args.embedding_chunk_size:
        names["ours"] += f", embedding_chunk_size {args.embedding_chunk_size}"
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for key in args.systems:
                name, train = names[key], SYSTEMS[key][1]
                out = os.path.join(tmp, f"{key}-{seed}")
                chunks = {"embedding_chunk_size": args.embedding_chunk_size} if key == "ours" else {}
                seconds = train(encoder, out, args.epochs, seed, **chunks)
                print(f"{name}, seed {seed}: trained in {seconds:.0f} s (speed: see bench/throughput.py)")
                runs.setdefault(name, {})[seed] = evaluate(out)
    table = quality_table(runs, names["ours"])
    print(table)
    with open(args.output, "w") as f:
        f.write(f"`python {' '.join(sys.argv)}` ({time.strftime('%Y-%m-%d')})\n\n{table}\n")


COLUMNS = [("korsts-test", "avg"), ("korsts-test", "cosine_spearman"), ("klue-sts-dev", "avg"),
           ("klue-sts-dev", "cosine_spearman")]


def quality_table(runs: dict[str, dict[int | None, dict]], ours: str = SYSTEMS["ours"][0]) -> str:
    """{system: {seed: sts results}} -> Markdown: one row per run, the mean over seeds per system, and the difference of
    this project's (the system named `ours`) and sentence-transformers' means with its standard error (Welch), given 2+
    seeds each."""
    def cells(values: list[float]) -> str:
        return " | ".join(f"{v:.2f}" for v in values)

    lines = ["| system | seed | KorSTS-test AVG | KorSTS-test cos Spearman | KLUE-STS dev AVG "
             "| KLUE-STS dev cos Spearman |",
             "|---|---|---|---|---|---|"]
    for name, by_seed in runs.items():
        for seed, result in by_seed.items():
            lines.append(f"| {name} | {'–' if seed is None else seed} | "
                         + cells([result[s][m] for s, m in COLUMNS]) + " |")
    for name, by_seed in runs.items():
        if len(by_seed) > 1:
            means = [statistics.mean(r[s][m] for r in by_seed.values()) for s, m in COLUMNS]
            lines.append(f"| {name}: mean | {len(by_seed)} seeds | " + cells(means) + " |")
    ours, st = runs.get(ours, {}), runs.get(SYSTEMS["st"][0], {})
    if len(ours) > 1 and len(st) > 1:  # a seed does not couple the two systems' randomness: compare the means
        row = []
        for s, m in COLUMNS:
            a, b = [r[s][m] for r in ours.values()], [r[s][m] for r in st.values()]
            error = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
            row.append(f"{statistics.mean(a) - statistics.mean(b):+.2f} ± {error:.2f}")
        lines.append(f"| this project − sentence-transformers (difference of means ± s.e.) | {len(ours)} vs {len(st)} "
                     "seeds | " + " | ".join(row) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
