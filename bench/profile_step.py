"""Where the time of a training step and of an encode pass goes: plain loops over the product's model and collator
(no Trainer), eager, with `compile_layers`, with the whole model compiled and with `compile_layers` as CUDA graphs
(`--variants cuda_graphs`, CUDA only, on batches rounded to few shapes as run_simcse makes them), with torch.profiler's
busiest operations. A diagnostic for bench/throughput.py.

    python bench/profile_step.py --shape bert-base --device cuda
    python bench/profile_step.py --shape small --device cpu --steps 3      # a check of the script itself

Training: batches of `--batch` triplets from `bench.common.sampled_triplets`, packed as the product packs them,
already on the device; per step: forward under bf16 autocast (CUDA), backward, gradient clipping at 1.0, fused
AdamW (CUDA), zero_grad. Printed per variant: wall ms per step, and from the profiler the device-busy ms per step
(the sum of kernel times: far under the wall time means the host is the bottleneck) and the top operations.
Encoding: `SimCSEModel.encode` on every benchmark sentence, with its tokenization timed apart.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

if __package__ in (None, ""):  # run as `python bench/<name>.py`: make the repo root importable, as `-m` does
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile
from transformers import AutoModel

from bench.common import SHAPES, all_sentences, bert_config, sampled_triplets, synced_clock, tokenizer
from data_collator import SimCSECollator
from data_loading import token_ids, tokenize_rows
from modeling_simcse import SimCSEModel
from run_simcse import CUDA_GRAPH_SHAPES


def busiest(prof, key: str, rows: int = 12) -> str:
    """The profiler's table of its `rows` operations with the largest `key` (e.g. "self_cpu_time_total")."""
    return prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=60)


def device_busy_ms(prof) -> float:
    """Sum of the kernel times the profiler recorded, in ms (the kernel events only: an operator's row repeats the
    time of the kernels it launched; the "Self CUDA time total" of torch's table counts the same way)."""
    return sum(e.self_device_time_total for e in prof.key_averages()
               if e.device_type == DeviceType.CUDA and not e.is_user_annotation) / 1e3


def training(args, tok) -> None:
    cuda = args.device == "cuda"
    rows = tokenize_rows(sampled_triplets(args.batch * args.batches), tok, ["sent0", "sent1", "hard_neg"], 64)
    collate = SimCSECollator(tok.pad_token_id, 64, pack_width=64)

    def device_batches(collator) -> list[dict]:
        return [{k: v.to(args.device) for k, v in
                 collator([rows[j] for j in range(i * args.batch, (i + 1) * args.batch)]).items()}
                for i in range(args.batches)]

    batches = device_batches(collate)
    start = time.perf_counter()
    collate([rows[j] for j in range(args.batch)])
    print(f"collating one batch of {args.batch} triplets on the host: {1e3 * (time.perf_counter() - start):.1f} ms")

    for variant in args.variants:
        torch.manual_seed(0)
        encoder = AutoModel.from_config(bert_config(args.shape, len(tok)), attn_implementation="sdpa")
        model = SimCSEModel.from_encoder(encoder, pooler_type="cls_before_pooler").to(args.device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, fused=cuda)
        if variant in ("compile_layers", "cuda_graphs"):
            model.compile_layers(cuda_graphs=variant == "cuda_graphs")
        forward = torch.compile(model) if variant == "compile_whole" else model
        # Under CUDA graphs the batches take few shapes, as run_simcse makes them.
        shaped = device_batches(SimCSECollator(tok.pad_token_id, 64, pack_width=64, **CUDA_GRAPH_SHAPES)) \
            if variant == "cuda_graphs" else batches

        def step(batch, forward=forward, model=model, optimizer=optimizer):  # bound to this variant's
            with torch.autocast(args.device, torch.bfloat16, enabled=cuda):
                loss = forward(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        # CUDA graphs: every batch (so every shape) runs twice, once to warm up and once to be recorded.
        warmup = {"eager": 3, "cuda_graphs": 2 * len(shaped)}.get(variant, 10)
        start = synced_clock(args.device)
        for i in range(warmup):
            step(shaped[i % len(shaped)])
        warm = synced_clock(args.device) - start
        start = synced_clock(args.device)
        for i in range(args.steps):
            step(shaped[(warmup + i) % len(shaped)])
        ms = 1e3 * (synced_clock(args.device) - start) / args.steps
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as prof:
            for i in range(3):
                step(shaped[i % len(shaped)])
            synced_clock(args.device)
        busy = f", device busy {device_busy_ms(prof) / 3:.1f} ms/step" if cuda else ""
        print(f"\n## train {variant}: {ms:.1f} ms/step = {1e3 * args.batch / ms:,.0f} triplets/s (warm-up "
              f"{warm:.1f} s){busy}")
        print(busiest(prof, "self_device_time_total" if cuda else "self_cpu_time_total"))
        if cuda:  # host-side view: synchronisations and dispatch overhead show up here
            print(busiest(prof, "self_cpu_time_total", rows=15))
        model = optimizer = forward = step = shaped = None  # free the device memory before the next variant
        if cuda:
            torch.cuda.empty_cache()


def encoding(args, tok) -> None:
    sentences = all_sentences()
    torch.manual_seed(0)
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    encoder = AutoModel.from_config(bert_config(args.shape, len(tok)), attn_implementation="sdpa", dtype=dtype)
    model = SimCSEModel.from_encoder(encoder, pooler_type="cls_before_pooler").to(args.device).eval()
    start = time.perf_counter()
    token_ids(tok, sentences, 64)
    print(f"\n## encode: tokenizing {len(sentences):,} sentences: {time.perf_counter() - start:.2f} s")
    model.encode(sentences[:512], tok)
    for fill in (True, False):
        start = synced_clock(args.device)
        model.encode(sentences, tok, fill_batches=fill)
        seconds = synced_clock(args.device) - start
        print(f"encode fill_batches={fill}: {seconds:.2f} s = {len(sentences) / seconds:,.0f} sentences/s")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
    with profile(activities=activities) as prof:
        model.encode(sentences, tok)
        synced_clock(args.device)
    if args.device == "cuda":
        print(f"device busy {device_busy_ms(prof):.0f} ms of the encode pass")
    print(busiest(prof, "self_cpu_time_total"))
    if args.device == "cuda":
        print(busiest(prof, "self_device_time_total"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="bert-base")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    parser.add_argument("--batch", type=int, default=256, help="triplets per step")
    parser.add_argument("--batches", type=int, default=16, help="distinct batches cycled through")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per variant")
    parser.add_argument("--parts", nargs="+", choices=["encode", "train"], default=["encode", "train"])
    parser.add_argument("--variants", nargs="+", choices=["eager", "compile_layers", "compile_whole", "cuda_graphs"],
                        default=["eager", "compile_layers", "compile_whole"])
    args = parser.parse_args()
    tok = tokenizer()
    print(f"shape {args.shape}, device {torch.cuda.get_device_name(0) if args.device == 'cuda' else 'CPU'}, "
          f"batch {args.batch} triplets, max length 64, torch {torch.__version__}")
    if "encode" in args.parts:
        encoding(args, tok)
    if "train" in args.parts:
        training(args, tok)


if __name__ == "__main__":
    main()
