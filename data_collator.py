"""Batches pre-tokenized SimCSE rows: dynamic padding, or packing without padding for training.

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
    """rows -> a batch for `SimCSEModel.forward`.

    Padded (scored STS rows, or `pack_width` None): {"input_ids", "attention_mask": (batch, n, longest),
    ["labels": (batch,)]}.
    Packed (training rows with `pack_width` set): the step's sentences laid end to end in rows of
    max(pack_width, longest) tokens, none split across rows, so no compute goes to padding beyond the rows' unfilled
    ends: {"input_ids", "position_ids" (0, 1, ... within each sentence), "sentence_ids" (the sentence each token
    belongs to, -1 for the unfilled end): (rows, width); "sentence_starts": (batch, n), the flat index into
    `input_ids.view(-1)` of each sentence's first token}. Sentence k of the sentence-major order (all first sentences
    of the batch, then all second ...) has id k. Which sentences share a step does not change.

    pad_token_id: the tokenizer's padding id.
    max_length: rows longer than this are cut to it, keeping their last token (the end-of-sentence special token).
    pad_to_multiple_of: round the padded length (or the packed width) up (8 suits tensor cores).
    pack_width: pack training rows into rows of at least this many tokens (see above); None: pad.
    pack_rows_multiple_of: round a packed batch's row count up with rows of padding (sentence id -1: they attend
        only to each other and feed no embedding), so that steps take few distinct shapes (CUDA graphs).
    """

    pad_token_id: int
    max_length: int | None = None
    pad_to_multiple_of: int | None = None
    pack_width: int | None = None
    pack_rows_multiple_of: int | None = None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows = [f["input_ids"] for f in features]
        n = len(rows[0])
        if any(len(r) != n for r in rows):
            raise ValueError("every row of a batch must hold the same number of sentences")
        scored = "labels" in features[0]
        packed = self.pack_width is not None and not scored
        # Sentence-major order when packing (the model's order), row-major when padding (the (batch, n) view).
        sentences = [r[v] for v in range(n) for r in rows] if packed else [s for r in rows for s in r]
        if self.max_length is not None and any(len(s) > self.max_length for s in sentences):
            sentences = [s if len(s) <= self.max_length else s[: self.max_length - 1] + s[-1:] for s in sentences]
        lengths = np.fromiter(map(len, sentences), dtype=np.int64, count=len(sentences))
        tokens = np.fromiter(itertools.chain.from_iterable(sentences), dtype=np.int64, count=int(lengths.sum()))
        if packed:
            return self._pack(tokens, lengths, (len(rows), n))
        longest = self._padded_length(int(lengths.max()))
        # One vectorised fill: the mask's True cells, in row-major order, are the tokens in sentence order.
        mask = np.arange(longest)[None, :] < lengths[:, None]
        input_ids = np.full((len(sentences), longest), self.pad_token_id, dtype=np.int64)
        input_ids[mask] = tokens
        shape = (len(rows), n, longest)
        batch = {
            "input_ids": torch.from_numpy(input_ids).view(shape),
            "attention_mask": torch.from_numpy(mask.astype(np.int64)).view(shape),
        }
        if scored:
            batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.float)
        return batch

    def _padded_length(self, width: int) -> int:
        """A length (or packed width) rounded up to `pad_to_multiple_of`."""
        return _round_up(width, self.pad_to_multiple_of)

    def _pack(self, tokens: np.ndarray, lengths: np.ndarray, shape: tuple[int, int]) -> dict[str, torch.Tensor]:
        width = self._padded_length(max(self.pack_width, int(lengths.max())))
        row, offset = _first_fit_decreasing(lengths, width)
        starts = row * width + offset
        # Flat position of every token, in sentence order: its sentence's start plus its index within the sentence.
        first_token = np.repeat(np.cumsum(lengths) - lengths, lengths)
        within = np.arange(len(tokens)) - first_token
        flat = np.repeat(starts, lengths) + within
        size = _round_up(int(row.max()) + 1, self.pack_rows_multiple_of) * width
        input_ids = np.full(size, self.pad_token_id, dtype=np.int64)
        position_ids = np.zeros(size, dtype=np.int64)
        sentence_ids = np.full(size, -1, dtype=np.int64)
        input_ids[flat], position_ids[flat] = tokens, within
        sentence_ids[flat] = np.repeat(np.arange(len(lengths)), lengths)
        batch, n = shape
        return {
            "input_ids": torch.from_numpy(input_ids).view(-1, width),
            "position_ids": torch.from_numpy(position_ids).view(-1, width),
            "sentence_ids": torch.from_numpy(sentence_ids).view(-1, width),
            "sentence_starts": torch.from_numpy(starts).view(n, batch).T.contiguous(),
        }


def _round_up(value: int, multiple: int | None) -> int:
    """`value` rounded up to a multiple of `multiple` (None: as it is)."""
    step = multiple or 1
    return -(-value // step) * step


def _first_fit_decreasing(lengths: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Bin packing: each length (all <= width) -> (row, offset within the row), longest placed first."""
    row = np.empty(len(lengths), dtype=np.int64)
    offset = np.empty(len(lengths), dtype=np.int64)
    used = np.zeros(len(lengths), dtype=np.int64)  # tokens used per row; at most one row per sentence
    rows = 0
    for i in np.argsort(-lengths, kind="stable"):
        fits = np.flatnonzero(used[:rows] + lengths[i] <= width)
        r = int(fits[0]) if len(fits) else rows
        rows = max(rows, r + 1)
        row[i], offset[i] = r, used[r]
        used[r] += lengths[i]
    return row, offset
