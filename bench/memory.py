"""Peak memory of one SimCSE training step: plain path vs the cached (chunked, recomputed) path and vs activation
checkpointing (TrainingArguments' `activation_checkpointing`: each encoder layer recomputed in backward).

    python bench/memory.py [--shape small] [--device cpu] [--batches 256 1024] [--chunk 128] [--layout packed]

Each measurement runs in a fresh process: one forward+backward of a batch of triplets (3 x batch sentences, max length
64) from the shared XNLI-ko data. CPU: peak resident memory of the process during the step minus before it (getrusage);
CUDA: torch.cuda.max_memory_allocated during the step minus before it. A step the machine cannot hold (the process is
killed) is reported as out of memory. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # bench.common's, which imports torch
if __package__ in (None, ""):  # run as `python bench/<name>.py`: make the repo root importable, as `-m` does
    sys.path.insert(0, ROOT)


def one_step(shape: str, device: str, batch: int, chunk: int | None, layout: str, checkpointing: bool = False) -> float:
    """Peak MiB added by one training step (checkpointing: as Trainer enables `activation_checkpointing`). Imported
    here: the parent process, which only starts one process a measurement, spares the import of torch (5 s)."""
    import torch
    from transformers import AutoModel

    from bench.common import bert_config, tokenizer, triplets
    from data_collator import SimCSECollator
    from data_loading import tokenize_rows
    from modeling_simcse import SimCSEModel

    tok = tokenizer()
    rows = tokenize_rows(triplets(), tok, ["sent0", "sent1", "hard_neg"], 64)
    features = [rows[i % len(rows)] for i in range(batch)]
    inputs = SimCSECollator(tok.pad_token_id, pack_width=64 if layout == "packed" else None)(features)
    torch.manual_seed(0)
    model = SimCSEModel.from_encoder(AutoModel.from_config(bert_config(shape, len(tok))), pooler_type="cls",
                                     embedding_chunk_size=chunk).to(device).train()
    if checkpointing:
        model.activation_checkpointing_enable()
    inputs = {k: v.to(device) for k, v in inputs.items()}
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    model(**inputs).loss.backward()
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return (peak - base) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", default="small")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--chunk", type=int, default=128, help="sentences per chunk on the cached path")
    parser.add_argument("--layout", choices=["packed", "padded"], default="packed",
                        help="training batches as run_simcse.py lays them out (packed by default for BERT)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one measurement, JSON args
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_step(**json.loads(args.one))))
        return
    print(f"shape {args.shape}, device {args.device}, {args.layout} batches, max length 64")
    print(f"| batch (triplets) | plain MiB | cached MiB (chunk {args.chunk}) | cached / plain | checkpointed MiB "
          "| checkpointed / plain |")
    print("|---|---|---|---|---|---|")
    for batch in args.batches:
        mib = []
        for chunk, checkpointing in ((None, False), (args.chunk, False), (None, True)):
            spec = json.dumps({"shape": args.shape, "device": args.device, "batch": batch, "chunk": chunk,
                               "layout": args.layout, "checkpointing": checkpointing})
            proc = subprocess.run([sys.executable, "-m", "bench.memory", "--one", spec], cwd=ROOT,
                                  capture_output=True, text=True)
            if proc.returncode == -9:  # killed by the kernel's out-of-memory killer
                mib.append(None)
                continue
            if proc.returncode != 0:
                raise SystemExit(proc.stderr[-2000:])
            mib.append(float(proc.stdout.strip().splitlines()[-1]))
        cells = ["out of memory" if m is None else f"{m:.0f}" for m in mib]
        ratios = [f"{m / mib[0]:.2f}" if None not in (m, mib[0]) else "–" for m in mib[1:]]
        print(f"| {batch} | {cells[0]} | {cells[1]} | {ratios[0]} | {cells[2]} | {ratios[1]} |", flush=True)


if __name__ == "__main__":
    main()
