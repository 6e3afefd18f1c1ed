"""The fast paths (packed rows; length-sorted pieces) give the plain padded path's loss, gradients and scores."""

import json

import pytest
import torch

import run_simcse
from conftest import without_dropout
from modeling_simcse import SimCSEModel
from test_gradient_cache import assert_same, loss_and_grads
from test_loss import ROWS, _ids
from test_run_simcse import smoke_config


@pytest.mark.parametrize("pooler", ["cls", "avg"])
def test_length_buckets_same_loss_and_gradients(encoder_dir, tokenizer, pooler):
    ids, mask = _ids(tokenizer, ROWS)
    results = []
    for buckets in (1, 4):
        torch.manual_seed(0)  # the same initial MLP for both
        model = SimCSEModel.from_encoder(encoder_dir, pooler_type=pooler, hard_negative_weight=0.2, length_buckets=buckets)
        without_dropout(model.train())
        results.append(loss_and_grads(model, ids, mask))
    assert_same(results[0], results[1])


@pytest.mark.parametrize("fast", [{"pack_sequences": True}, {"pack_sequences": False, "length_buckets": 8}],
                         ids=["packed", "length-buckets"])
def test_fast_path_same_scores_after_a_short_run(tmp_path, fast):
    scores, batches = [], []
    for name, layout in (("plain", {"pack_sequences": False, "length_buckets": 1}), ("fast", fast)):
        folder = tmp_path / name
        folder.mkdir()
        run_simcse.main([smoke_config(folder, dropout=0.0, **layout)])
        with open(folder / "out" / "sts_results.json") as f:
            scores.append(json.load(f)["sample-sts"])
        with open(folder / "out" / "environment.json") as f:
            batches.append(json.load(f)["training_batches"])
    assert batches == ["padded", "packed" if fast["pack_sequences"] else "padded"]
    # Same math; float sums in another order, amplified by 12 Adam steps at lr 5e-4, move scores (x100) by < 0.1.
    assert scores[1] == pytest.approx(scores[0], abs=0.1)
    assert scores[0]["avg"] != pytest.approx(0.0, abs=1.0)  # a real score, not an empty comparison
