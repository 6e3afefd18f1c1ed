"""Dynamic padding of pre-tokenized rows."""

import torch

from data_collator import SimCSECollator


def test_pads_rows_of_three_to_longest():
    rows = [{"input_ids": [[2, 5, 3], [2, 6, 7, 8, 3], [2, 3]]}, {"input_ids": [[2, 9, 3], [2, 3], [2, 4, 4, 3]]}]
    batch = SimCSECollator(pad_token_id=0)(rows)
    assert batch["input_ids"].shape == (2, 3, 5)
    assert batch["input_ids"][0, 1].tolist() == [2, 6, 7, 8, 3]
    assert batch["input_ids"][1, 1].tolist() == [2, 3, 0, 0, 0]
    assert batch["attention_mask"][1, 1].tolist() == [1, 1, 0, 0, 0]
    assert "labels" not in batch


def test_scored_pairs_truncation_and_multiple():
    rows = [{"input_ids": [[2, 5, 6, 7, 8, 9, 3], [2, 3]], "labels": 4.5},
            {"input_ids": [[2, 5, 3], [2, 6, 3]], "labels": 0.0}]
    batch = SimCSECollator(pad_token_id=1, max_length=4, pad_to_multiple_of=8)(rows)
    assert batch["input_ids"].shape == (2, 2, 8)
    assert batch["input_ids"][0, 0, :4].tolist() == [2, 5, 6, 3]  # cut, keeping the end token
    assert batch["attention_mask"][0, 0].sum() == 4
    assert batch["labels"].dtype == torch.float and batch["labels"].tolist() == [4.5, 0.0]
