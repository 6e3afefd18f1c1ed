"""The cached (chunked, recomputed) path gives the loss and gradients of the plain path."""

import pytest
import torch

from conftest import input_widths, without_dropout
from modeling_simcse import SimCSEModel
from test_loss import ROWS, _ids


def loss_and_grads(model, ids, mask=None, seed=5):
    """Loss and parameter gradients of one forward + backward; `ids` is input_ids (with `mask`) or a whole batch
    dict."""
    batch = ids if isinstance(ids, dict) else {"input_ids": ids, "attention_mask": mask}
    model.zero_grad()
    torch.manual_seed(seed)
    loss = model(**batch).loss
    loss.backward()
    return loss.item(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def assert_same(a, b):
    assert a[0] == pytest.approx(b[0], abs=1e-5)
    assert a[1].keys() == b[1].keys()
    for name in a[1]:
        torch.testing.assert_close(a[1][name], b[1][name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("chunk", [1, 2, 4])
def test_recomputed_chunks_replay_dropout(encoder_dir, tokenizer, chunk, monkeypatch):
    """Dropout on: recomputation in backward must reuse the forward's random state, or the gradients would differ."""
    model = SimCSEModel.from_encoder(encoder_dir, pooler_type="cls", hard_negative_weight=0.3,
                                     embedding_chunk_size=chunk)
    model.train()
    ids, mask = _ids(tokenizer, ROWS)
    cached = loss_and_grads(model, ids, mask)
    plain = model.embed_for_training
    monkeypatch.setattr(model, "embed_for_training", lambda i, m: plain(i, m, recompute=False))
    kept = loss_and_grads(model, ids, mask)
    assert_same(cached, kept)


def test_cached_equals_one_pass_without_dropout(encoder_dir, tokenizer):
    chunked = SimCSEModel.from_encoder(encoder_dir, pooler_type="avg", embedding_chunk_size=2)
    whole = SimCSEModel.from_encoder(encoder_dir, pooler_type="avg")
    for model in (chunked, whole):
        without_dropout(model.train())
    ids, mask = _ids(tokenizer, ROWS)
    assert_same(loss_and_grads(chunked, ids, mask), loss_and_grads(whole, ids, mask))


def test_dropout_really_differs_between_seeds(encoder_dir, tokenizer):
    """Guards the test above it: with dropout on, a different random state gives other gradients."""
    model = SimCSEModel.from_encoder(encoder_dir, pooler_type="cls", embedding_chunk_size=2)
    model.train()
    ids, mask = _ids(tokenizer, ROWS)
    a, b = loss_and_grads(model, ids, mask, seed=1), loss_and_grads(model, ids, mask, seed=2)
    assert a[0] != pytest.approx(b[0], abs=1e-5)


def test_recomputed_chunks_replay_dropout_in_compiled_layers(encoder_dir, tokenizer, monkeypatch):
    """The same with `compile_layers` on packed rows: the compiled layers draw their dropout from the random state that
    the recomputation restores."""
    import modeling_simcse
    from data_collator import SimCSECollator
    from test_packing import WIDTH, features

    batch = SimCSECollator(tokenizer.pad_token_id, pack_width=WIDTH)(features(tokenizer, ROWS))
    model = SimCSEModel.from_encoder(encoder_dir, pooler_type="cls", hard_negative_weight=0.3, embedding_chunk_size=2)
    model.train().compile_layers()
    cached = loss_and_grads(model, batch)
    monkeypatch.setattr(modeling_simcse, "checkpoint", lambda function, *args, **kwargs: function(*args))
    kept = loss_and_grads(model, batch)
    assert_same(cached, kept)
    assert loss_and_grads(model, batch, seed=6)[0] != pytest.approx(cached[0], abs=1e-3)  # dropout is on


@pytest.mark.parametrize("packed", [False, True])
def test_activation_checkpointing_gives_the_loss_and_gradients_of_the_plain_step(encoder_dir, tokenizer, packed):
    """TrainingArguments' `activation_checkpointing` (Trainer calls `activation_checkpointing_enable`): each encoder
    layer runs again in backward, with the forward's dropout, on padded and on packed batches."""
    from data_collator import SimCSECollator
    from test_packing import WIDTH, features

    batch = SimCSECollator(tokenizer.pad_token_id, pack_width=WIDTH if packed else None)(features(tokenizer, ROWS))
    model = SimCSEModel.from_encoder(encoder_dir, pooler_type="cls", hard_negative_weight=0.3).train()
    calls = input_widths(model.encoder.encoder.layer[0].attention)
    plain = loss_and_grads(model, batch)
    assert len(calls) == 1
    model.activation_checkpointing_enable()
    checkpointed = loss_and_grads(model, batch)
    assert len(calls) == 3  # the forward, then again in backward
    assert_same(checkpointed, plain)
    assert loss_and_grads(model, batch, seed=6)[0] != pytest.approx(plain[0], abs=1e-3)  # dropout is on
