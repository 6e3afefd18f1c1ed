"""Run by tests/test_distributed.py under torchrun (gloo, CPU): one DDP step on this rank's share of a fixed batch, for
each MODE:GATHER given (GATHER 1 or 0), in one launch (each step from a model built afresh, with the same seed).

    torchrun --standalone --nproc_per_node N tests/distributed_worker.py ENCODER_DIR OUT_DIR MODE:GATHER...

MODE is `sup` (triplets with a weighted hard negative), `unsup` (one sentence per row) or `sup-chunked` (`sup` through
the gradient cache, `embedding_chunk_size` 3); `MODE/R`: only the first R rows of the batch are real, the others
repeat its first rows, as accelerate completes the last batch of an epoch, and the model is told so (`real_rows`).
Rank 0 saves the loss averaged over processes and the parameter gradients averaged over processes (what DDP applies)
to OUT_DIR/K.pt, K the index of the MODE:GATHER among those given. The averaging is done after backward, one
all_reduce per parameter in a fixed order, so no collective of DDP's reducer runs beside the gather's own collectives
during backward.
"""

import datetime
import os
import sys

import torch
import torch.distributed as dist
from transformers import AutoTokenizer

from conftest import without_dropout
from modeling_simcse import SimCSEModel

SENTENCES = [
    "아이들이 공원에서 축구를 하고 있다.", "한 남자가 부엌에서 요리를 하고 있다.", "여자가 기타를 치며 노래를 부른다.",
    "비가 많이 와서 경기가 취소되었다.", "학생들이 도서관에서 시험 공부를 하고 있다.",
    "개 한 마리가 해변을 따라 뛰어가고 있다.", "기차가 예정보다 삼십 분 늦게 도착했다.",
    "두 사람이 카페에서 커피를 마시며 이야기한다.", "의사가 환자의 상태를 살펴보고 있다.",
    "농부가 밭에서 배추를 수확하고 있다.", "아기가 엄마 품에서 울고 있다.", "요리사가 칼로 양파를 썰고 있다.",
]


def build(encoder_dir: str, mode: str, gather: bool):
    """The same model and the same full batch on every process (dropout off, so the split changes nothing else)."""
    mode, _, real = mode.partition("/")
    torch.manual_seed(0)
    model = SimCSEModel.from_encoder(encoder_dir, pooler_type="cls", hard_negative_weight=0.5, gather_negatives=gather,
                                     embedding_chunk_size=3 if mode == "sup-chunked" else None)
    without_dropout(model.train())
    tokenizer = AutoTokenizer.from_pretrained(encoder_dir)
    n = 1 if mode == "unsup" else 3
    rows = [[SENTENCES[(i + k * 5) % len(SENTENCES)] for k in range(n)] for i in range(int(real or 8))]
    rows = [rows[i % len(rows)] for i in range(8)]
    enc = tokenizer([s for r in rows for s in r], padding="max_length", max_length=24, return_tensors="pt")
    return model, enc["input_ids"].view(8, n, -1), enc["attention_mask"].view(8, n, -1)


def step(encoder_dir: str, out: str, mode: str, gather: bool) -> None:
    """One step of `build`'s model on this rank's share; rank 0 saves the averaged loss and gradients to `out`."""
    rank, world = dist.get_rank(), dist.get_world_size()
    model, ids, mask = build(encoder_dir, mode, gather)
    share = len(ids) // world
    mine = slice(rank * share, (rank + 1) * share)
    real = mode.partition("/")[2]
    loss = model(input_ids=ids[mine], attention_mask=mask[mine], real_rows=int(real) if real else None).loss
    loss.backward()
    mean_loss = loss.detach().clone()
    dist.all_reduce(mean_loss)
    grads = {}
    for name, param in model.named_parameters():
        grad = param.grad if param.grad is not None else torch.zeros_like(param)
        dist.all_reduce(grad)
        if param.grad is not None:
            grads[name] = grad / world
    if rank == 0:
        torch.save({"loss": mean_loss.item() / world, "grads": grads}, out)


def main() -> None:
    encoder_dir, out_dir, specs = sys.argv[1], sys.argv[2], sys.argv[3:]
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    for k, spec in enumerate(specs):
        mode, gather = spec.rsplit(":", 1)
        step(encoder_dir, os.path.join(out_dir, f"{k}.pt"), mode, gather == "1")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
