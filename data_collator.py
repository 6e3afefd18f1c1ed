"""Batches pre-tokenized SimCSE rows with dynamic padding.

Rows come from `data_loading.tokenize_rows` (tokenized once with `datasets.map`, already truncated to the
maximum length): `input_ids` is a list of n token-id lists (n = 1, 2 or 3 sentences per row), plus `labels` (a
float STS score) for scored pairs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class SimCSECollator:
    """rows -> {"input_ids", "attention_mask": (batch, n, longest), ["labels": (batch,)]}.

    pad_token_id: the tokenizer's padding id.
    max_length: rows longer than this are cut to it, keeping their last token (the end-of-sentence special token).
    pad_to_multiple_of: round the padded length up (8 suits tensor cores).
    """

    pad_token_id: int
    max_length: int | None = None
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows = [f["input_ids"] for f in features]
        n = len(rows[0])
        if any(len(r) != n for r in rows):
            raise ValueError("every row of a batch must hold the same number of sentences")
        sentences = [s for r in rows for s in r]
        if self.max_length is not None and any(len(s) > self.max_length for s in sentences):
            sentences = [s if len(s) <= self.max_length else s[: self.max_length - 1] + s[-1:] for s in sentences]
        lengths = np.fromiter(map(len, sentences), dtype=np.int64, count=len(sentences))
        longest = int(lengths.max())
        if self.pad_to_multiple_of:
            longest = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        # One vectorised fill: the mask's True cells, in row-major order, are the tokens in sentence order.
        mask = np.arange(longest)[None, :] < lengths[:, None]
        input_ids = np.full((len(sentences), longest), self.pad_token_id, dtype=np.int64)
        input_ids[mask] = np.fromiter(itertools.chain.from_iterable(sentences), dtype=np.int64, count=int(lengths.sum()))
        shape = (len(rows), n, longest)
        batch = {
            "input_ids": torch.from_numpy(input_ids).view(shape),
            "attention_mask": torch.from_numpy(mask.astype(np.int64)).view(shape),
        }
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.float)
        return batch
