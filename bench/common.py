"""Shared pieces of the benchmarks: model shapes, the benchmark sentences, a tokenizer for models made from a config,
and the sentence-transformers peer (CLS pooling, MultipleNegativesRankingLoss at scale 20)."""

from __future__ import annotations

import functools
import os
import random
import time

import torch
from datasets import Dataset
from transformers import BertConfig

from data_loading import column_values, load_nli_triplets, load_sts
from scratch_tokenizer import train_wordpiece

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The benchmark data folder, ../shared/data beside the checkout unless BENCH_DATA names another copy of it.
DATA = os.environ.get("BENCH_DATA") or os.path.join(os.path.dirname(ROOT), "shared", "data")
XNLI = [os.path.join(DATA, "kornli", f) for f in ("xnli.dev.ko.tsv", "xnli.test.ko.tsv")]

SHAPES = {  # BERT encoders made from a config (random weights: speed does not depend on them)
    # A check of a script itself (the tests' runs): seconds, and timings that stand for nothing.
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256),
    "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
    "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}


def triplets():
    """The 2,500 XNLI-ko triplets (premise / entailment / contradiction) of ../shared/data."""
    return load_nli_triplets(XNLI)


@functools.cache
def all_sentences() -> list[str]:
    """Every distinct sentence of the shared KorNLI and KorSTS files, in first-seen order (read once a process; the
    list is shared, do not change it)."""
    rows = triplets()
    sentences = [s for col in ("sent0", "sent1", "hard_neg") for s in column_values(rows, col)]
    for split in ("train", "dev", "test"):
        sts = load_sts(os.path.join(DATA, "korsts", f"sts-{split}.tsv"))
        sentences += column_values(sts, "sentence1") + column_values(sts, "sentence2")
    return list(dict.fromkeys(sentences))


def synced_clock(device: str) -> float:
    """`time.perf_counter()` once the work queued on `device` has finished (CUDA runs asynchronously)."""
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def sampled_triplets(count: int) -> Dataset:
    """`count` triplets (sent0, sent1, hard_neg) made from `all_sentences()` (the KorNLI train split is not here):
    row i holds sentence i (cycling through them) and two sentences drawn with a fixed seed."""
    sentences = all_sentences()
    rng = random.Random(0)
    rows = [(sentences[i % len(sentences)], rng.choice(sentences), rng.choice(sentences)) for i in range(count)]
    return Dataset.from_dict(dict(zip(("sent0", "sent1", "hard_neg"), map(list, zip(*rows, strict=True)), strict=True)))


def write_tsv(path: str, rows: Dataset) -> None:
    """rows -> a TSV with a header, as the product reads it (quoting off; tabs inside a sentence become spaces)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("\t".join(rows.column_names) + "\n")
        for row in zip(*(column_values(rows, c) for c in rows.column_names), strict=True):
            f.write("\t".join(s.replace("\t", " ") for s in row) + "\n")


def tokenizer(vocab_size: int = 16000):
    return train_wordpiece(all_sentences(), vocab_size)


def bert_config(shape: str, vocab_size: int, max_positions: int = 128) -> BertConfig:
    return BertConfig(vocab_size=vocab_size, max_position_embeddings=max_positions, **SHAPES[shape])


def sentence_transformer_cls(encoder: str, device: str, **transformer_kwargs):
    """The peer's model: `encoder` in sentence-transformers, max length 64, CLS pooling without MLP."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    transformer = Transformer(encoder, max_seq_length=64, **transformer_kwargs)
    pooling = Pooling(transformer.get_embedding_dimension(), "cls")
    return SentenceTransformer(modules=[transformer, pooling], device=device)


def sentence_transformers_trainer(encoder: str, device: str, callbacks=None, rows: Dataset | None = None,
                                  **training_args):
    """The peer's training on `rows` (sent0, sent1, hard_neg; default the XNLI-ko triplets):
    `SentenceTransformerTrainer` + MultipleNegativesRankingLoss(scale 20) with `training_args`
    (SentenceTransformerTrainingArguments) -> (model, trainer)."""
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    rows = triplets() if rows is None else rows
    data = Dataset.from_dict({name: column_values(rows, col) for name, col in
                              (("anchor", "sent0"), ("positive", "sent1"), ("negative", "hard_neg"))})
    model = sentence_transformer_cls(encoder, device)
    trainer = SentenceTransformerTrainer(model=model, args=SentenceTransformerTrainingArguments(**training_args),
                                         train_dataset=data, loss=MultipleNegativesRankingLoss(model, scale=20.0),
                                         callbacks=callbacks)
    return model, trainer
