"""Packed training batches (no padding) give the padded path's embeddings, loss and gradients."""

import pytest
import torch
from transformers import AutoModel, BertConfig, CamembertConfig, ElectraConfig, RobertaConfig, XLMRobertaConfig

import modeling_simcse
from data_collator import SimCSECollator
from modeling_simcse import SimCSEModel
from conftest import input_widths, without_dropout
from test_gradient_cache import assert_same, loss_and_grads
from test_loss import ROWS

WIDTH = 40  # two or three of the test sentences (14-19 tokens) a row, so most start inside a row


def features(tokenizer, rows):
    return [{"input_ids": [tokenizer(s)["input_ids"] for s in row]} for row in rows]


def padded_sentences(tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """The 9 sentences of ROWS as one padded batch, sentence-major as a training step encodes them: (ids, mask)."""
    padded = SimCSECollator(tokenizer.pad_token_id)(features(tokenizer, ROWS))
    ids, mask = (padded[k].transpose(0, 1).reshape(9, -1) for k in ("input_ids", "attention_mask"))
    assert not mask.all()  # some padding
    return ids, mask


@pytest.mark.parametrize("width", [1, 24, 64])
def test_packing_lays_every_sentence_whole_into_rows(tokenizer, width):
    rows = features(tokenizer, ROWS)
    batch = SimCSECollator(tokenizer.pad_token_id, pack_width=width)(rows)
    longest = max(len(s) for r in rows for s in r["input_ids"])
    assert batch["input_ids"].shape[1] == max(width, longest)
    flat = {k: batch[k].view(-1) for k in ("input_ids", "position_ids", "sentence_ids")}
    assert batch["sentence_starts"].shape == (len(ROWS), 3)
    width = batch["input_ids"].shape[1]
    for b, row in enumerate(rows):
        for v, sentence in enumerate(row["input_ids"]):
            start = int(batch["sentence_starts"][b, v])
            span = slice(start, start + len(sentence))
            assert flat["input_ids"][span].tolist() == sentence
            assert flat["position_ids"][span].tolist() == list(range(len(sentence)))
            assert set(flat["sentence_ids"][span].tolist()) == {v * len(ROWS) + b}  # sentence-major ids
            assert start // width == (start + len(sentence) - 1) // width  # not split across rows
    real = sum(len(s) for r in rows for s in r["input_ids"])
    assert int((flat["sentence_ids"] >= 0).sum()) == real
    assert (flat["input_ids"][flat["sentence_ids"] < 0] == tokenizer.pad_token_id).all()


def test_a_sentence_that_fills_the_rest_of_a_row_goes_there_and_no_row_is_left_empty():
    batch = SimCSECollator(pad_token_id=0, pack_width=8)([{"input_ids": [[2, 5, 6, 7, 3], [2, 8, 3]]}])
    assert batch["input_ids"].tolist() == [[2, 5, 6, 7, 3, 2, 8, 3]]
    assert batch["sentence_ids"].tolist() == [[0] * 5 + [1] * 3]


def test_scored_pairs_stay_padded(tokenizer):
    rows = [dict(f, labels=1.0) for f in features(tokenizer, [r[:2] for r in ROWS])]
    batch = SimCSECollator(tokenizer.pad_token_id, pack_width=64)(rows)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}


@pytest.mark.parametrize("pooler", ["cls_before_pooler", "avg"])
@pytest.mark.parametrize("sentences", [1, 3])
def test_rows_of_padding_change_nothing(encoder_dir, tokenizer, pooler, sentences):
    """`pack_rows_multiple_of` (few batch shapes, for CUDA graphs) only appends rows of padding, which attend to each
    other and feed no embedding: the same batch otherwise, and the same loss and gradients (dropout off)."""
    rows = features(tokenizer, [r[:sentences] for r in ROWS])
    plain = SimCSECollator(tokenizer.pad_token_id, pack_width=WIDTH)(rows)
    used = len(plain["input_ids"])
    rounded = SimCSECollator(tokenizer.pad_token_id, pack_width=WIDTH, pack_rows_multiple_of=used + 3)(rows)
    assert len(rounded["input_ids"]) == used + 3
    assert torch.equal(rounded["sentence_starts"], plain["sentence_starts"])
    for key in ("input_ids", "position_ids", "sentence_ids"):
        assert torch.equal(rounded[key][:used], plain[key]), key
    assert (rounded["input_ids"][used:] == tokenizer.pad_token_id).all()
    assert (rounded["sentence_ids"][used:] == -1).all()
    results = []
    for batch in (plain, rounded):
        torch.manual_seed(0)
        model = without_dropout(SimCSEModel.from_encoder(encoder_dir, pooler_type=pooler).train())
        results.append(loss_and_grads(model, batch))
    assert_same(results[0], results[1])


@pytest.mark.parametrize("pooler", ["cls", "cls_before_pooler", "avg", "avg_first_last", "avg_top2"])
@pytest.mark.parametrize("sentences", [1, 3])
def test_packed_equals_padded(encoder_dir, tokenizer, pooler, sentences):
    rows = features(tokenizer, [r[:sentences] for r in ROWS])
    results = []
    for width in (None, WIDTH):
        torch.manual_seed(0)  # the same initial MLP for both
        model = SimCSEModel.from_encoder(encoder_dir, pooler_type=pooler, hard_negative_weight=0.4)
        without_dropout(model.train())
        results.append(loss_and_grads(model, SimCSECollator(tokenizer.pad_token_id, pack_width=width)(rows)))
    assert_same(results[0], results[1])


def test_packed_gradient_cache_equals_one_pass(encoder_dir, tokenizer):
    batch = SimCSECollator(tokenizer.pad_token_id, pack_width=WIDTH)(features(tokenizer, ROWS))
    assert len(batch["input_ids"]) >= 3
    results = []
    for chunk in (None, 3):
        torch.manual_seed(0)
        model = SimCSEModel.from_encoder(encoder_dir, pooler_type="avg", embedding_chunk_size=chunk)
        results.append(loss_and_grads(without_dropout(model.train()), batch))
    assert_same(results[0], results[1])


def test_packed_gradient_cache_replays_dropout(encoder_dir, tokenizer, monkeypatch):
    batch = SimCSECollator(tokenizer.pad_token_id, pack_width=WIDTH)(features(tokenizer, ROWS))
    model = SimCSEModel.from_encoder(encoder_dir, pooler_type="cls", embedding_chunk_size=3).train()
    cached = loss_and_grads(model, batch)
    monkeypatch.setattr(modeling_simcse, "checkpoint", lambda f, *args, **kwargs: f(*args))
    kept = loss_and_grads(model, batch)
    assert_same(cached, kept)
    other_seed = loss_and_grads(model, batch, seed=6)
    assert other_seed[0] != pytest.approx(kept[0], abs=1e-5)  # dropout is on: the comparison above could fail


@pytest.mark.parametrize("pack_width", [None, WIDTH])
def test_the_gradient_cache_encodes_in_pieces_and_runs_each_again_in_the_backward_pass(encoder_dir, tokenizer,
                                                                                       pack_width):
    """The equalities of the gradient cache hold for one pass too: what spares memory is that a step's 9 sentences go
    through the encoder in ceil(9 / embedding_chunk_size) pieces (2 of 5, 3 of 3), whose activations are dropped and
    made again in the backward pass."""
    batch = SimCSECollator(tokenizer.pad_token_id, pack_width=pack_width)(features(tokenizer, ROWS))
    for chunk, passes in ((None, [1, 1]), (5, [2, 4]), (3, [3, 6])):
        model = SimCSEModel.from_encoder(encoder_dir, pooler_type="cls", embedding_chunk_size=chunk).train()
        calls = input_widths(model.encoder.encoder.layer[0])
        loss = model(**batch).loss
        seen = [len(calls)]
        loss.backward()
        assert seen + [len(calls)] == passes, (chunk, pack_width)


def test_packed_unsupervised_views_differ_only_through_dropout(encoder_dir, tokenizer):
    batch = SimCSECollator(tokenizer.pad_token_id, pack_width=WIDTH)(features(tokenizer, [r[:1] for r in ROWS]))
    model = SimCSEModel.from_encoder(encoder_dir, pooler_type="cls", mlp_only_train=True).train()
    captured = []
    original = model.embed_packed
    model.embed_packed = lambda *a, **k: captured.append(original(*a, **k)) or captured[-1]
    model(**batch)
    first, second = captured[0].view(2, len(ROWS), -1)
    assert not torch.allclose(first, second)  # dropout made the two copies differ
    without_dropout(model)
    model(**batch)
    first, second = captured[1].view(2, len(ROWS), -1)
    torch.testing.assert_close(first, second)


ENCODERS = {
    "bert": BertConfig,
    "camembert": CamembertConfig,
    "roberta": RobertaConfig,
    "xlm-roberta": XLMRobertaConfig,
    "electra": ElectraConfig,
}


def test_every_packable_model_type_is_tested():
    assert sorted(ENCODERS) == sorted(modeling_simcse.PACKABLE_MODEL_TYPES)


@pytest.mark.parametrize("model_type", sorted(ENCODERS))
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_every_packable_encoder_gives_its_own_embeddings_padded_and_packed(tokenizer, model_type, attention):
    torch.manual_seed(0)
    config = ENCODERS[model_type](vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=80, pad_token_id=tokenizer.pad_token_id)
    encoder = AutoModel.from_config(config, attn_implementation=attention)
    model = without_dropout(SimCSEModel.from_encoder(encoder, pooler_type="avg").train())
    assert model.supports_packing
    packed = SimCSECollator(tokenizer.pad_token_id, pack_width=WIDTH)(features(tokenizer, ROWS))
    assert (packed["sentence_starts"] % WIDTH > 0).sum() >= 3
    ids, mask = padded_sentences(tokenizer)
    with torch.no_grad():
        tokens = encoder(input_ids=ids, attention_mask=mask).last_hidden_state  # the encoder's own 2D-mask handling
        want = (tokens * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        padded_path = model.embed(ids, mask)
        got = model.embed_packed(packed["input_ids"], packed["position_ids"], packed["sentence_ids"],
                                 packed["sentence_starts"].T.reshape(-1))
    torch.testing.assert_close(padded_path, want, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("model_type", sorted(ENCODERS))
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("pooler", ["cls", "cls_before_pooler"])
def test_evaluation_runs_the_last_layer_for_the_first_token_alone(tokenizer, model_type, attention, pooler):
    """With a CLS pooler, evaluation (`embed`, which `encode` and the STS scores use) runs the last layer's
    feed-forward for each row's first token only, and gives the embedding of the whole encoder's own pass (padded
    rows); training runs the whole layer, and the encoder keeps its own last layer."""
    torch.manual_seed(0)
    config = ENCODERS[model_type](vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=80, pad_token_id=tokenizer.pad_token_id)
    encoder = AutoModel.from_config(config, attn_implementation=attention)
    model = SimCSEModel.from_encoder(encoder, pooler_type=pooler).eval()
    ids, mask = padded_sentences(tokenizer)
    last = encoder.encoder.layer[-1]
    tokens_a_row = input_widths(last.intermediate)
    with torch.no_grad():
        cls_states = encoder(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
        want = model.mlp(cls_states) if pooler == "cls" else cls_states
        got = model.embed(ids, mask)
        assert tokens_a_row == [ids.shape[1], 1]
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
        assert encoder.encoder.layer[-1] is last
        without_dropout(model.train()).embed(ids, mask)
    assert tokens_a_row[-1] == ids.shape[1]


def test_eager_attention_takes_half_precision_weights(encoder_dir, tokenizer):
    """An encoder loaded in bf16 with eager attention (`from_exported(..., dtype=torch.bfloat16)`, as `encode`
    suggests): the additive masks this model makes are in the weights' dtype, padded, packed and at evaluation, and
    give sdpa's embeddings within bf16 rounding (a float32 mask made the scores float32, which the bf16 values refused:
    "expected m1 and m2 to have the same dtype")."""
    packed = SimCSECollator(tokenizer.pad_token_id, pack_width=WIDTH)(features(tokenizer, ROWS))
    ids, mask = padded_sentences(tokenizer)
    embeddings = {}
    for attention in ("sdpa", "eager"):
        encoder = AutoModel.from_pretrained(encoder_dir, attn_implementation=attention, dtype=torch.bfloat16)
        model = without_dropout(SimCSEModel.from_encoder(encoder, pooler_type="cls_before_pooler"))
        with torch.no_grad():
            embeddings[attention] = [
                model.train().embed(ids, mask),
                model.embed_packed(packed["input_ids"], packed["position_ids"], packed["sentence_ids"],
                                   packed["sentence_starts"].T.reshape(-1)),
                model.eval().embed(ids, mask)]
    for eager, sdpa in zip(embeddings["eager"], embeddings["sdpa"], strict=True):
        assert eager.dtype == torch.bfloat16
        torch.testing.assert_close(eager, sdpa, atol=2e-2, rtol=2e-2)


def test_unsupported_attention_is_reported(encoder_dir):
    model = SimCSEModel.from_encoder(AutoModel.from_pretrained(encoder_dir, attn_implementation="flex_attention"))
    assert not model.supports_packing
