"""Batches pre-tokenized SimCSE rows with dynamic padding.

Rows come from `data_loading.tokenize_rows` (tokenized once with `datasets.map`, already truncated to the
maximum length): `input_ids` is a list of n token-id lists (n = 1, 2 or 3 sentences per row), plus `labels` (a
float STS score) for scored pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
        if self.max_length is not None:
            rows = [[s if len(s) <= self.max_length else s[: self.max_length - 1] + s[-1:] for s in r] for r in rows]
        longest = max(len(s) for r in rows for s in r)
        if self.pad_to_multiple_of:
            longest = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(rows), n, longest), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), n, longest), dtype=torch.long)
        for i, row in enumerate(rows):
            for j, sentence in enumerate(row):
                input_ids[i, j, : len(sentence)] = torch.as_tensor(sentence, dtype=torch.long)
                attention_mask[i, j, : len(sentence)] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.float)
        return batch
