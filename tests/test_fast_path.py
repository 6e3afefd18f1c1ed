"""The fast path (length-sorted pieces) gives the plain path's loss, gradients and scores."""

import json

import pytest
import torch

import run_simcse
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
        model.train()
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        results.append(loss_and_grads(model, ids, mask))
    assert_same(results[0], results[1])


def test_length_buckets_same_scores_after_a_short_run(tmp_path):
    scores = []
    for buckets in (1, 8):
        folder = tmp_path / str(buckets)
        folder.mkdir()
        run_simcse.main([smoke_config(folder, length_buckets=buckets, dropout=0.0)])
        with open(folder / "out" / "sts_results.json") as f:
            scores.append(json.load(f)["sample-sts"])
    # Same math; float sums in another order, amplified by 12 Adam steps at lr 5e-4, move scores (x100) by < 0.1.
    assert scores[1] == pytest.approx(scores[0], abs=0.1)
