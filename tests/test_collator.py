"""Batches of pre-tokenized rows: dynamic padding, and what padding and packing share (rows cut to max_length,
batches of one row); the packed layout itself: test_packing.py."""

import pytest
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


def test_rows_of_another_number_of_sentences_are_refused():
    rows = [{"input_ids": [[2, 5, 3], [2, 6, 3]]}, {"input_ids": [[2, 5, 3]]}, {"input_ids": [[2, 7, 3], [2, 3]]}]
    with pytest.raises(ValueError, match="every row of a batch must hold the same number of sentences"):
        SimCSECollator(pad_token_id=0)(rows)


@pytest.mark.parametrize("pack_width", [None, 8])
def test_a_batch_of_one_row_where_every_sentence_is_cut(pack_width):
    """The last batch of a set may hold one row; each sentence longer than max_length keeps its end token."""
    collate = SimCSECollator(pad_token_id=0, max_length=3, pack_width=pack_width)
    batch = collate([{"input_ids": [[2, 5, 6, 7, 3], [2, 8, 9, 9, 3]]}])
    if pack_width is None:
        assert batch["input_ids"].tolist() == [[[2, 5, 3], [2, 8, 3]]]
    else:
        assert batch["input_ids"].tolist() == [[2, 5, 3, 2, 8, 3, 0, 0]]
        assert batch["sentence_starts"].tolist() == [[0, 3]]
    scored = collate([{"input_ids": [[2, 5, 6, 7, 3], [2, 8, 9, 9, 3]], "labels": 3.5}])
    assert scored["input_ids"].tolist() == [[[2, 5, 3], [2, 8, 3]]] and scored["labels"].tolist() == [3.5]
