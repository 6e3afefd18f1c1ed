"""The contrastive objective against a direct computation from its definition, and the model it starts from."""

import math

import pytest
import torch

import run_arguments
import run_simcse
from conftest import without_dropout
from modeling_simcse import SimCSEConfig, SimCSEModel, contrastive_loss, load_encoder


def infonce_by_hand(z1, z2, z3, temperature, weight):
    """Mean over i of -log(exp(s_ii) / (sum_j exp(s_ij) + sum_j exp(h_ij))), s/h cosine / temperature (+weight on
    h_ii)."""
    def cos(a, b):
        a, b = a.detach(), b.detach()
        return float(a @ b) / (float(a.norm()) * float(b.norm()))

    total = 0.0
    for i in range(len(z1)):
        logits = [cos(z1[i], z2[j]) / temperature for j in range(len(z2))]
        if z3 is not None:
            logits += [cos(z1[i], z3[j]) / temperature + (weight if i == j else 0.0) for j in range(len(z3))]
        total += -(logits[i] - math.log(sum(math.exp(x) for x in logits)))
    return total / len(z1)


@pytest.mark.parametrize("with_hard, weight, temperature",
                         [(False, 0.0, 0.05), (True, 0.0, 0.05), (True, 1.5, 0.1), (True, -2.0, 1.0)])
def test_contrastive_loss_matches_definition(with_hard, weight, temperature):
    g = torch.Generator().manual_seed(3)
    z1, z2, z3 = (torch.randn(6, 8, generator=g, dtype=torch.float64) for _ in range(3))
    got = contrastive_loss(z1, z2, z3 if with_hard else None, temperature, weight)
    want = infonce_by_hand(z1, z2, z3 if with_hard else None, temperature, weight)
    assert got.item() == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("settings, message", [
    ({"temperature": 0.0}, "temperature must be a finite number > 0, got 0.0"),
    ({"temperature": math.inf}, "temperature must be a finite number > 0, got inf"),  # a constant loss: all logits 0
    ({"hard_negative_weight": math.nan}, "hard_negative_weight must be a finite number, got nan"),  # NaN losses
    # sentence-transformers' name of avg
    ({"pooler_type": "mean"}, r"pooler_type must be one of \('cls', 'cls_before_pooler', 'avg', 'avg_first_last', "
                              r"'avg_top2'\), got 'mean'"),
])
def test_settings_that_train_nothing_nan_or_no_known_embedding_are_refused_by_the_config(settings, message):
    """The model's own check, for code that builds it without run_simcse.py (whose arguments check these first)."""
    with pytest.raises(ValueError, match=f"^{message}$"):
        SimCSEConfig(**settings)


def test_real_rows_count_only_across_processes():
    """In one process nothing is gathered, so no repeats were added: `real_rows` changes nothing; below 1 it is a
    mistake (the gathered case is tests/test_distributed.py's)."""
    g = torch.Generator().manual_seed(3)
    z1, z2, z3 = (torch.randn(6, 8, generator=g, dtype=torch.float64) for _ in range(3))
    assert contrastive_loss(z1, z2, z3, gather=True, real_rows=4).item() == contrastive_loss(z1, z2, z3).item()
    with pytest.raises(ValueError, match="^real_rows must be at least 1, got 0$"):
        contrastive_loss(z1, z2, z3, gather=True, real_rows=0)


def test_hard_negative_weight_changes_only_hard_logit():
    z = torch.eye(3, dtype=torch.float64)
    # z3 equal to z2: with a very negative weight the own hard negative drops out of the softmax.
    # Row i: positives [e, 1, 1], hard negatives [e * exp(-1e9) = 0, 1, 1].
    loss = contrastive_loss(z, z, z, temperature=1.0, hard_negative_weight=-1e9).item()
    assert loss == pytest.approx(-math.log(math.e / (math.e + 4)), rel=1e-6)


def _ids(tokenizer, rows):
    """rows of n sentences -> (batch, n, length) ids and mask."""
    n = len(rows[0])
    enc = tokenizer([s for r in rows for s in r], padding=True, return_tensors="pt")
    return enc["input_ids"].view(len(rows), n, -1), enc["attention_mask"].view(len(rows), n, -1)


ROWS = [["아이들이 공원에서 축구를 하고 있다.", "남자가 피아노를 연주한다.", "비가 많이 와서 경기가 취소되었다."],
        ["개 한 마리가 해변을 따라 뛰어가고 있다.", "요리사가 칼로 양파를 썰고 있다.", "아기가 엄마 품에서 울고 있다."],
        ["학생이 칠판에 글씨를 쓴다.", "눈이 내려서 온 세상이 하얗게 변했다.", "사람들이 버스를 기다리고 있다."]]


@pytest.mark.parametrize("pooler", ["cls", "cls_before_pooler", "avg", "avg_first_last", "avg_top2"])
def test_supervised_forward_is_loss_of_its_embeddings(encoder_dir, tokenizer, pooler):
    model = SimCSEModel.from_encoder(encoder_dir, pooler_type=pooler, temperature=0.05, hard_negative_weight=0.7)
    without_dropout(model.train())  # so the forward and the direct computation see the same network
    ids, mask = _ids(tokenizer, ROWS)
    loss = model(input_ids=ids, attention_mask=mask).loss
    z = [model.embed(ids[:, k], mask[:, k]) for k in range(3)]
    want = infonce_by_hand(z[0].double(), z[1].double(), z[2].double(), 0.05, 0.7)
    assert loss.item() == pytest.approx(want, rel=1e-4)
    loss.backward()
    assert model.encoder.embeddings.word_embeddings.weight.grad.abs().sum() > 0


def test_training_starts_from_the_pretrained_encoder_and_an_mlp_drawn_as_berts(encoder_dir, tokenizer):
    """The run's model (`run_simcse.build_model`): the encoder's weights as saved, and the new MLP drawn as BERT draws
    its linear layers and the original SimCSE its MLP: normal, std the encoder's initializer_range (0.2 here), bias 0;
    not torch's default for a Linear (uniform: std 1/sqrt(3 x 32) = 0.10 at this width, and a bias)."""
    torch.manual_seed(0)
    model = run_simcse.build_model(run_arguments.ModelArguments(model_name_or_path=encoder_dir),
                                   run_arguments.SimCSEArguments(pooler_type="cls"), tokenizer, "cpu")
    saved = load_encoder(encoder_dir).state_dict()
    assert model.encoder.state_dict().keys() == saved.keys()
    for name, tensor in model.encoder.state_dict().items():
        assert torch.equal(tensor, saved[name]), name
    weight, bias = model.mlp[0].weight, model.mlp[0].bias
    assert weight.shape == (32, 32) and torch.count_nonzero(bias) == 0
    assert weight.std().item() == pytest.approx(0.2, abs=0.03) and abs(weight.mean().item()) < 0.03


def test_unsupervised_views_differ_only_through_dropout(encoder_dir, tokenizer):
    model = SimCSEModel.from_encoder(encoder_dir, pooler_type="cls", mlp_only_train=True)
    ids, mask = _ids(tokenizer, [[r[0]] for r in ROWS])
    # Training mode: the forward encodes [sentences; sentences] in one pass, so reproducing the RNG state and
    # encoding that stack by hand gives the same two views and the same loss.
    model.train()
    torch.manual_seed(11)
    loss = model(input_ids=ids, attention_mask=mask).loss
    torch.manual_seed(11)
    views = model.embed(ids[:, 0].repeat(2, 1), mask[:, 0].repeat(2, 1)).view(2, len(ROWS), -1)
    assert loss.item() == pytest.approx(contrastive_loss(views[0], views[1]).item(), rel=1e-6)
    assert not torch.allclose(views[0], views[1])  # dropout made them differ
    # Without dropout the two views are identical.
    model.eval()
    plain = model.embed(ids[:, 0].repeat(2, 1), mask[:, 0].repeat(2, 1), use_mlp=True).view(2, len(ROWS), -1)
    torch.testing.assert_close(plain[0], plain[1])


def test_padding_does_not_change_embeddings(encoder_dir, tokenizer):
    """The wrapped encoder must mask padding (a composite config once left it attending to pads)."""
    model = SimCSEModel.from_encoder(encoder_dir, pooler_type="avg").eval()
    alone = tokenizer(["남자가 피아노를 연주한다."], return_tensors="pt")
    padded = tokenizer(["남자가 피아노를 연주한다.", "관광객들이 경복궁 앞에서 사진을 찍는다. 그리고 오래 걷는다."],
                       padding=True, return_tensors="pt")
    assert padded["attention_mask"][0].sum() < padded["attention_mask"].shape[1]
    with torch.no_grad():
        a = model.embed(alone["input_ids"], alone["attention_mask"])[0]
        b = model.embed(padded["input_ids"], padded["attention_mask"])[0]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_sts_pair_scores(encoder_dir, tokenizer):
    model = SimCSEModel.from_encoder(encoder_dir, pooler_type="cls_before_pooler").eval()
    ids, mask = _ids(tokenizer, [r[:2] for r in ROWS])
    labels = torch.tensor([1.0, 2.5, 4.0])
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        a, b = model.embed(ids[:, 0], mask[:, 0]), model.embed(ids[:, 1], mask[:, 1])
    want = torch.stack([torch.cosine_similarity(a, b), -torch.cdist(a, b).diagonal(),
                        -(a - b).abs().sum(-1), (a * b).sum(-1)], dim=-1)
    torch.testing.assert_close(out.scores, want, atol=1e-5, rtol=1e-5)
    assert out.loss.item() == pytest.approx(((want[:, 0] - labels / 5) ** 2).mean().item(), rel=1e-5)


def test_inputs_of_another_shape_are_refused_with_theirs(encoder_dir, tokenizer):
    """The forward takes (batch, sentences per row, length); scored STS rows are pairs."""
    model = SimCSEModel.from_encoder(encoder_dir, pooler_type="cls").eval()
    ids, mask = _ids(tokenizer, ROWS)
    with pytest.raises(ValueError, match=rf"^input_ids must be \(batch, sentences per row, length\), got shape "
                                         rf"\(3, {ids.shape[2]}\)$"):
        model(input_ids=ids[:, 0], attention_mask=mask[:, 0])
    with pytest.raises(ValueError, match="^scored STS rows need 2 sentences, got 3$"):
        model(input_ids=ids, attention_mask=mask, labels=torch.tensor([1.0, 2.5, 4.0]))
