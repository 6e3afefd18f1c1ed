"""Training and encoding speed: this project vs sentence-transformers, same sentences, model, precision, one run.

    python bench/throughput.py --shape small --device cpu          # 2-core CPU, a few minutes
    python bench/throughput.py --shape bert-base --device cuda     # one GPU

Systems, each in its own process (so peak memory is its own), all on the same randomly initialised BERT encoder of the
chosen shape (`bench.common.SHAPES`) and the same tokenizer. Training data: `bench.common.sampled_triplets`, triplets
made from the sentences of ../shared/data, as many as the warm-up and timed steps take, so the timed steps are all in
one epoch (the steady state of a real run, with no epoch restarts of the data loader in the timing):
  * train, this project: `run_simcse.main` (the real Trainer path) on a config built here, with its defaults (on CUDA
    that is `cuda_graphs`: the compiled layers replayed as CUDA graphs);
  * train, this project + `"compile_layers": true` (an opt-in: each encoder layer under torch.compile, no graphs;
    timed with `--compile-row`);
  * train, this project with `"cuda_graphs": false` (the eager layers; CUDA only, timed by default there,
    `--eager-row`);
  * train, sentence-transformers: `SentenceTransformerTrainer` + `MultipleNegativesRankingLoss(scale=20)`, CLS pooling;
  * encode, this project: `SimCSEModel.encode`; encode, sentence-transformers: `SentenceTransformer.encode`;
    every distinct sentence of the shared KorNLI/KorSTS files; `--encode-batch` sentences a batch (on CUDA, this
    project's batches hold that many at the maximum length and more when shorter: the same padded-token budget).
Same batch, max length 64, learning rate 5e-5; fp32 on CPU; on CUDA both trainers get `CUDA_TRAINING` (bf16, fused
AdamW, 4 DataLoader workers, non-blocking copies) and both encoders are loaded in bf16. Training is timed from the
end of `--warmup` steps to the end of the last step, encoding after one warm-up pass over 512 sentences.

Figures per system: triplets/s (sentences/s for encoding), real (non-padding) tokens/s, TFLOP/s on real tokens,
share of the device's bf16 dense peak (CUDA only), peak memory, and the ratio to sentence-transformers. FLOPs are
counted on real tokens only, per token: training 6*N + 12*L*d*S, encoding 2*N + 4*L*d*S, with N the encoder's
non-embedding parameters, L layers, d hidden size and S = E[len^2]/E[len] over the sentences (the attention terms);
padding adds work that these figures do not credit, and this project's encoding, which runs the last layer for the
CLS token alone (`modeling_simcse.FirstTokenLayer`), is credited with the whole layer's work, as the peer's is: its
TFLOP/s is the rate of the work a whole pass does. The last printed line is `train_vs_st=<x> encode_vs_st=<y>`.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

if __package__ in (None, ""):  # run as `python bench/<name>.py`: make the repo root importable, as `-m` does
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch
from transformers import BertModel, TrainerCallback

from bench.common import (ROOT, SHAPES, all_sentences, bert_config, sampled_triplets, sentence_transformer_cls,
                          sentence_transformers_trainer, synced_clock, tokenizer, write_tsv)
from data_loading import column_values, token_ids

# Both trainers get the same TrainingArguments on a GPU (so the ratio is about the training code, not the settings).
CUDA_TRAINING = {"bf16": True, "optim": "adamw_torch_fused", "dataloader_num_workers": 4,
                 "accelerator_config": {"non_blocking": True}}
# Dense bf16 tensor peaks (NVIDIA's data sheets), matched on whole words of torch.cuda.get_device_name, the more
# specific names first: "NVIDIA H100 PCIe" and "NVIDIA H100 NVL" are slower parts than "NVIDIA H100 80GB HBM3" (SXM).
PEAK_BF16_TFLOPS = {"H100 PCIe": 756.5, "H100 NVL": 835.5, "H200 NVL": 835.5, "H100": 989.4, "H200": 989.4,
                    "A100": 312.0, "L40S": 362.1, "A10": 125.0}


def bf16_peak_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a CUDA device from its name, or None for a device not in PEAK_BF16_TFLOPS."""
    return next((peak for name, peak in PEAK_BF16_TFLOPS.items() if re.search(rf"\b{name}\b", device_name)), None)


class StepTimer(TrainerCallback):
    """Times training from the end of step `warmup` to the end of the last step (two device syncs in all)."""

    def __init__(self, warmup: int, device: str):
        self.warmup, self.device, self.start, self.end, self.steps = warmup, device, None, None, 0

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            self.start = synced_clock(self.device)
        elif state.global_step == state.max_steps:
            self.end, self.steps = synced_clock(self.device), state.global_step - self.warmup


def peak_memory_mib(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_ours(encoder: str, work: str, device: str, batch: int, warmup: int, steps: int, rows: int,
               compile_layers: bool = False, cuda_graphs: bool | None = None) -> dict:
    import run_simcse

    data = os.path.join(work, "triplets.tsv")
    write_tsv(data, sampled_triplets(rows))
    config = {
        "model_name_or_path": encoder, "train_data": [data], "train_format": "triplet",
        "pooler_type": "cls_before_pooler",
        "max_seq_length": 64, "output_dir": os.path.join(work, "ours"), "overwrite_output_dir": True,
        "per_device_train_batch_size": batch, "learning_rate": 5e-5, "max_steps": warmup + steps,
        "eval_strategy": "no", "save_strategy": "no", "logging_steps": 10_000, "report_to": "none", "seed": 42,
        "disable_tqdm": True, "compile_layers": compile_layers, "cuda_graphs": cuda_graphs,
        **(CUDA_TRAINING if device == "cuda" else {"use_cpu": True}),
    }
    path = os.path.join(work, "ours.json")
    with open(path, "w") as f:
        json.dump(config, f)
    timer = StepTimer(warmup, device)
    run_simcse.main([path], callbacks=[timer])
    return {"seconds": timer.end - timer.start, "items": timer.steps * batch}


def train_sentence_transformers(encoder: str, work: str, device: str, batch: int, warmup: int, steps: int,
                                rows: int) -> dict:
    timer = StepTimer(warmup, device)
    _, trainer = sentence_transformers_trainer(
        encoder, device, callbacks=[timer], rows=sampled_triplets(rows),
        output_dir=os.path.join(work, "st"), per_device_train_batch_size=batch, learning_rate=5e-5,
        max_steps=warmup + steps, save_strategy="no", logging_steps=10_000, report_to="none", seed=42,
        disable_tqdm=True,
        **(CUDA_TRAINING if device == "cuda" else {"use_cpu": True}),
    )
    trainer.train()
    return {"seconds": timer.end - timer.start, "items": timer.steps * batch}


def encode_ours(encoder: str, work: str, device: str, batch: int, **_) -> dict:
    from transformers import AutoTokenizer

    from modeling_simcse import SimCSEModel

    sentences, tok = all_sentences(), AutoTokenizer.from_pretrained(encoder)
    kwargs = {"dtype": torch.bfloat16} if device == "cuda" else {}  # the peer's precision (below)
    model = SimCSEModel.from_exported(encoder, pooler_type="cls_before_pooler", **kwargs).to(device)
    model.encode(sentences[:512], tok, batch_size=batch)
    start = time.perf_counter()
    model.encode(sentences, tok, batch_size=batch)
    return {"seconds": time.perf_counter() - start, "items": len(sentences)}


def encode_sentence_transformers(encoder: str, work: str, device: str, batch: int, **_) -> dict:
    sentences = all_sentences()
    kwargs = {"model_kwargs": {"dtype": torch.bfloat16}} if device == "cuda" else {}
    model = sentence_transformer_cls(encoder, device, **kwargs)
    model.encode(sentences[:512], batch_size=batch)
    start = synced_clock(device)
    model.encode(sentences, batch_size=batch, convert_to_tensor=True)
    return {"seconds": synced_clock(device) - start, "items": len(sentences)}


COMPILED = "train: this project + compile_layers (opt-in)"
EAGER = "train: this project, cuda_graphs off (eager layers)"
OPT_IN = (COMPILED, EAGER)  # rows whose failure is reported, not fatal
SYSTEMS = {
    "train: this project": train_ours,
    COMPILED: functools.partial(train_ours, compile_layers=True),
    EAGER: functools.partial(train_ours, cuda_graphs=False),
    "train: sentence-transformers": train_sentence_transformers,
    "encode: this project": encode_ours,
    "encode: sentence-transformers": encode_sentence_transformers,
}


def flops_per_token(shape: str, lengths: list[int], training: bool) -> float:
    s = SHAPES[shape]
    layers, d, ff = s["num_hidden_layers"], s["hidden_size"], s["intermediate_size"]
    n = layers * (4 * d * d + 2 * d * ff)  # attention projections + feed-forward matmuls
    attention_span = sum(x * x for x in lengths) / sum(lengths)
    return (6 * n + 12 * layers * d * attention_span) if training else (2 * n + 4 * layers * d * attention_span)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="small")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch", type=int, help="triplets per training step (default 64 on CPU, 256 on CUDA)")
    parser.add_argument("--encode-batch", type=int, default=256,
                        help="sentences per encode batch (this project on CUDA: at the maximum length; more when "
                             "shorter, within the same padded-token budget)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, help="timed training steps (default 10 on CPU, 60 on CUDA)")
    parser.add_argument("--compile-row", action=argparse.BooleanOptionalAction, default=False,
                        help="also time this project with compile_layers (no graphs; it did not pay, "
                             "bench/RESULTS.md); 10 warm-up steps for it, the first of which waits for the compiler")
    parser.add_argument("--eager-row", action=argparse.BooleanOptionalAction,
                        help="also time this project with cuda_graphs off (default: on with cuda, where the "
                             "default row runs CUDA graphs)")
    parser.add_argument("--train-only", action="store_true",
                        help="skip the encoding rows (the last line then gives train_vs_st only)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one system in this process
    args = parser.parse_args()
    eager_row = args.device == "cuda" if args.eager_row is None else args.eager_row
    batch = args.batch or (64 if args.device == "cpu" else 256)
    steps = args.steps or (10 if args.device == "cpu" else 60)

    if args.one:
        spec = json.loads(args.one)
        name = spec.pop("system")
        result = SYSTEMS[name](**spec)
        result["peak_mib"] = peak_memory_mib(spec["device"])
        print("RESULT " + json.dumps(result))
        return

    # Compiled rows warm up for longer: the first steps compile; under CUDA graphs (this project's default on CUDA)
    # each new batch shape (a handful: modeling_simcse.CUDA_GRAPH_ROWS) is run once and recorded once before it replays.
    warmups = {COMPILED: max(args.warmup, 10)}
    if args.device == "cuda":
        warmups["train: this project"] = max(args.warmup, 30)
    train_rows = (max(warmups.values()) + steps) * batch  # every timed step in the first epoch, for every row
    tok = tokenizer()
    with tempfile.TemporaryDirectory() as work:
        encoder = os.path.join(work, "encoder")
        torch.manual_seed(0)
        BertModel(bert_config(args.shape, len(tok))).save_pretrained(encoder)
        tok.save_pretrained(encoder)
        results = {}
        failed = {}
        for name in SYSTEMS:
            if (name == COMPILED and not args.compile_row) or (name == EAGER and not eager_row):
                continue
            if args.train_only and name.startswith("encode"):
                continue
            is_train = name.startswith("train")
            spec = {"system": name, "encoder": encoder, "work": work, "device": args.device,
                    "batch": batch if is_train else args.encode_batch}
            if is_train:
                spec.update(warmup=warmups.get(name, args.warmup), steps=steps,
                            rows=train_rows)
            proc = subprocess.run([sys.executable, "-m", "bench.throughput", "--one", json.dumps(spec)], cwd=ROOT,
                                  capture_output=True, text=True)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                if name not in OPT_IN:
                    raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
                # The opt-in rows: report a failure and keep the rest.
                failed[name] = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
                print(f"{name} failed:\n{proc.stderr[-3000:]}", file=sys.stderr, flush=True)
                continue
            results[name] = json.loads(lines[-1][7:])
            print(f"{name}: {results[name]}", file=sys.stderr, flush=True)

    rows = sampled_triplets(train_rows)
    triplet_lengths = [len(x) for col in ("sent0", "sent1", "hard_neg")
                       for x in token_ids(tok, column_values(rows, col), 64)]
    tokens_per_triplet = sum(triplet_lengths) / len(rows)
    sentence_lengths = [len(x) for x in token_ids(tok, all_sentences(), 64)]
    tokens_per_sentence = sum(sentence_lengths) / len(sentence_lengths)
    peak = None
    if args.device == "cuda":
        name = torch.cuda.get_device_name(0)
        peak = bf16_peak_tflops(name)
        device_name = name
    else:
        device_name = f"CPU, {os.cpu_count()} cores"

    print(f"\nshape {args.shape} ({SHAPES[args.shape]}), device {device_name}, training batch {batch} triplets, "
          f"encode batch {args.encode_batch}, max length 64, {'bf16' if args.device == 'cuda' else 'fp32'}")
    print("| system | items/s | real tokens/s | TFLOP/s (real tokens) | share of bf16 peak | peak MiB "
          "| vs sentence-transformers |")
    print("|---|---|---|---|---|---|---|")
    ratio = {}
    for name, r in results.items():
        training = name.startswith("train")
        rate = r["items"] / r["seconds"]
        tokens = rate * (tokens_per_triplet if training else tokens_per_sentence)
        lengths = triplet_lengths if training else sentence_lengths
        tflops = tokens * flops_per_token(args.shape, lengths, training) / 1e12
        peer = results[name.split(":")[0] + ": sentence-transformers"]
        ratio[name] = rate / (peer["items"] / peer["seconds"])
        share = f"{100 * tflops / peak:.1f}%" if peak else "n/a"
        unit = "triplets/s" if training else "sentences/s"
        print(f"| {name} | {rate:,.0f} {unit} | {tokens:,.0f} | {tflops:.3f} | {share} | {r['peak_mib']:,.0f} | "
              f"{ratio[name]:.2f}x |")
    for name, error in failed.items():
        print(f"| {name} | failed: {error} | | | | | |")
    last = f"train_vs_st={ratio['train: this project']:.2f}"
    if not args.train_only:
        last += f" encode_vs_st={ratio['encode: this project']:.2f}"
    print(last)


if __name__ == "__main__":
    main()
