"""Export round trip: AutoModel (as the card's snippet uses it) and SentenceTransformer give the evaluated embedding,
with no new weights."""

import json
import os
import stat

import pytest
import torch
import transformers
from packaging.version import Version
from sentence_transformers import SentenceTransformer
from transformers import (AlbertConfig, AutoModel, AutoTokenizer, BigBirdConfig, ElectraConfig, ElectraModel,
                          RobertaConfig, RobertaForMaskedLM)
from transformers.utils import is_kernels_available

import run_arguments
import run_simcse
import sts_evaluation
from hub.card import render_card
from hub.model_dir import METRIC_NAMES, check_export
from modeling_simcse import EMBEDDING_RECIPES, EncoderWeightsMissing, SimCSEModel, load_encoder

SENTENCES = ["아이들이 공원에서 축구를 하고 있다.", "남자가 피아노를 연주한다.", "눈이 내려서 온 세상이 하얗게 변했다."]


def recipe(outputs, mask, embedding):
    """EMBEDDING_RECIPES written as code, from the outputs of a plain AutoModel."""
    if embedding == "pooler_output":
        return outputs.pooler_output
    if embedding == "cls":
        return outputs.last_hidden_state[:, 0]
    tokens = {"avg": outputs.last_hidden_state,
              "avg_first_last": (outputs.hidden_states[1] + outputs.hidden_states[-1]) / 2,
              "avg_top2": (outputs.hidden_states[-1] + outputs.hidden_states[-2]) / 2}[embedding]
    m = mask.unsqueeze(-1).float()
    return (tokens * m).sum(1) / m.sum(1)


def assert_older_sentence_transformers_layout(out: str, embedding: str, max_seq_length: int) -> None:
    """The files are in the layout sentence-transformers 2-5 wrote, which 6 reads too (above) and which servers such
    as text-embeddings-inference parse: module types under `sentence_transformers.models`, the pooling as
    `pooling_mode_*` flags, the length in sentence_bert_config.json."""
    def read(name):
        with open(f"{out}/{name}") as f:
            return json.load(f)

    modules = read("modules.json")
    names = {"pooler_output": ["Transformer", "Pooling", "Dense"], "avg_first_last": ["Transformer",
             "WeightedLayerPooling", "Pooling"], "avg_top2": ["Transformer", "WeightedLayerPooling", "Pooling"]}
    assert [m["type"] for m in modules] == [f"sentence_transformers.models.{n}"
                                            for n in names.get(embedding, ["Transformer", "Pooling"])]
    assert read("sentence_bert_config.json") == {"max_seq_length": max_seq_length, "do_lower_case": False}
    pooling = read(next(m["path"] for m in modules if m["type"].endswith(".Pooling")) + "/config.json")
    cls = embedding in ("cls", "pooler_output")
    assert (pooling["word_embedding_dimension"], pooling["pooling_mode_cls_token"],
            pooling["pooling_mode_mean_tokens"]) == (32, cls, not cls)
    assert not any(v for k, v in pooling.items() if k.startswith("pooling_mode_") and k not in (
        "pooling_mode_cls_token", "pooling_mode_mean_tokens"))


def assert_round_trip(model: SimCSEModel, tokenizer, out: str, embedding: str) -> None:
    """Export `model` to `out`: AutoModel (with the recipe of `embedding`), SentenceTransformer and
    `SimCSEModel.from_exported` give the embedding it evaluates, with no new weights."""
    model.export_encoder(out, tokenizer, max_seq_length=32)
    assert not os.path.exists(f"{out}/README.md")  # the card is the run's (hub/card.py), none of sentence-transformers'
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        evaluated = model.embed(batch["input_ids"], batch["attention_mask"])

        plain, info = AutoModel.from_pretrained(out, output_loading_info=True)
        assert not info["missing_keys"] and not info["mismatched_keys"], info
        assert plain.config.simcse["embedding"] == embedding
        assert plain.config.simcse["recipe"] == EMBEDDING_RECIPES[embedding]
        # Named so that transformers 4 loads it too (its "TokenizersBackend" did not; bench/RESULTS.md, 2026-12-02).
        with open(f"{out}/tokenizer_config.json") as f:
            assert json.load(f)["tokenizer_class"] == "PreTrainedTokenizerFast"
        reloaded_tok = AutoTokenizer.from_pretrained(out)
        batch2 = reloaded_tok(SENTENCES, padding=True, return_tensors="pt")
        assert torch.equal(batch2["input_ids"], batch["input_ids"])
        outputs = plain.eval()(**batch2, output_hidden_states=True)
        torch.testing.assert_close(recipe(outputs, batch2["attention_mask"], embedding), evaluated, atol=1e-5,
                                   rtol=1e-5)

        st = SentenceTransformer(out, device="cpu")
        torch.testing.assert_close(st.encode(SENTENCES, convert_to_tensor=True), evaluated, atol=1e-5, rtol=1e-5)
        assert_older_sentence_transformers_layout(out, embedding, max_seq_length=32)

        again = SimCSEModel.from_exported(out)
        torch.testing.assert_close(again.embed(batch["input_ids"], batch["attention_mask"]), evaluated)
    check_export(out)  # what a push takes: its sentence-transformers files those of `embedding`


def test_encode_gives_each_sentences_embedding_in_input_order(encoder_dir, tokenizer):
    """`SimCSEModel.encode` (length-sorted batches): the embeddings in input order, each the one `embed` gives the
    sentence alone; an empty list gives no rows (the tokenizer call failed on it); a string alone is refused."""
    model = SimCSEModel.from_exported(encoder_dir)
    sentences = [SENTENCES[1], "", SENTENCES[0], f"{SENTENCES[1]} {SENTENCES[2]}", SENTENCES[2], SENTENCES[1]]
    got = model.encode(sentences, tokenizer, batch_size=2)
    assert got.shape == (len(sentences), model.config.encoder.hidden_size) and got.dtype == torch.float32
    with torch.no_grad():
        for row, sentence in zip(got, sentences, strict=True):
            alone = tokenizer([sentence], truncation=True, max_length=64, return_tensors="pt")
            torch.testing.assert_close(row, model.embed(alone["input_ids"], alone["attention_mask"])[0], atol=1e-5,
                                       rtol=1e-5)
    assert model.encode([], tokenizer).shape == (0, model.config.encoder.hidden_size)
    with pytest.raises(TypeError, match=r"a list of strings; for one sentence, pass \[sentence\]"):
        model.encode(SENTENCES[0], tokenizer)


POOLERS = [  # pooler_type, mlp_only_train, the exported embedding
    ("cls", False, "pooler_output"), ("cls", True, "cls"), ("cls_before_pooler", False, "cls"),
    ("avg", False, "avg"), ("avg_first_last", False, "avg_first_last"), ("avg_top2", False, "avg_top2"),
]


@pytest.mark.parametrize("pooler, mlp_only_train, embedding", POOLERS)
def test_round_trip(encoder_dir, tokenizer, tmp_path, pooler, mlp_only_train, embedding):
    model = SimCSEModel.from_encoder(encoder_dir, pooler_type=pooler, mlp_only_train=mlp_only_train).eval()
    assert_round_trip(model, tokenizer, str(tmp_path / "export"), embedding)


@pytest.mark.parametrize("config_class", [AlbertConfig, BigBirdConfig])
def test_the_mlp_is_folded_into_a_pooler_that_is_a_bare_linear(tokenizer, tmp_path, config_class):
    """ALBERT and BigBird keep their pooler's Linear as `pooler` itself, its tanh beside it (they were refused)."""
    config = config_class(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=32, max_position_embeddings=64, attention_type="original_full")
    model = SimCSEModel.from_encoder(AutoModel.from_config(config), pooler_type="cls").eval()
    assert_round_trip(model, tokenizer, str(tmp_path / "export"), "pooler_output")


@pytest.mark.parametrize("pooler, mlp_only_train, embedding", POOLERS)
def test_the_cards_usage_snippet_gives_the_evaluated_embedding(encoder_dir, tokenizer, tmp_path, pooler, mlp_only_train,
                                                                embedding):
    """The model card's first code block, run as a user would (the repo id is the export folder), computes the
    normalized evaluated embedding of its sentences."""
    model = SimCSEModel.from_encoder(encoder_dir, pooler_type=pooler, mlp_only_train=mlp_only_train).eval()
    out = tmp_path / "export"
    model.export_encoder(str(out), tokenizer, max_seq_length=32)
    (out / "sts_results.json").write_text(json.dumps({"sample-sts": dict.fromkeys(METRIC_NAMES, 50.0)}))
    (out / "run_args.json").write_text(json.dumps({"model_type": "bert", "train_format": "nli", "temperature": 0.05,
                                                   "pooler_type": pooler, "max_seq_length": 32,
                                                   "per_device_train_batch_size": 8}))
    card = str(render_card(str(out), repo_id=str(out), write=False))
    snippet = card.split("```python\n")[1].split("```")[0]
    assert f'from_pretrained("{out}")' in snippet
    namespace = {}
    exec(snippet, namespace)
    batch = tokenizer(namespace["sentences"], padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        evaluated = torch.nn.functional.normalize(model.embed(batch["input_ids"], batch["attention_mask"]), dim=-1)
    torch.testing.assert_close(namespace["embeddings"], evaluated, atol=1e-5, rtol=1e-5)


def test_mlp_is_folded_not_the_pretrained_pooler(encoder_dir, tokenizer, tmp_path):
    model = SimCSEModel.from_encoder(encoder_dir, pooler_type="cls").eval()
    model.export_encoder(str(tmp_path), tokenizer)
    plain = AutoModel.from_pretrained(str(tmp_path))
    torch.testing.assert_close(plain.pooler.dense.weight, model.mlp[0].weight)
    assert not torch.allclose(model.encoder.pooler.dense.weight, model.mlp[0].weight)  # training model untouched


@pytest.mark.parametrize("umask", [0o022, 0o007])
def test_the_weights_are_as_readable_as_the_exports_other_files(encoder_dir, tokenizer, tmp_path, umask):
    """safetensors 0.8 writes its files 0600 whatever the umask: an export whose other files its group or anyone
    could read kept its weights, the MLP's in 2_Dense/ too, to their owner (another user could not load them)."""
    model = SimCSEModel.from_encoder(encoder_dir, pooler_type="cls").eval()
    earlier = os.umask(umask)
    try:
        model.export_encoder(str(tmp_path / "export"), tokenizer)
    finally:
        os.umask(earlier)
    modes = {p.relative_to(tmp_path / "export").as_posix(): stat.S_IMODE(p.stat().st_mode)
             for p in (tmp_path / "export").rglob("*") if p.is_file()}
    assert {"model.safetensors", "2_Dense/model.safetensors", "config.json", "modules.json"} <= set(modes)
    assert set(modes.values()) == {0o666 & ~umask}


def test_a_checkpoint_without_most_of_its_encoders_weights_is_refused(foreign_weights_dir, tokenizer, tmp_path):
    """Another architecture's weights under this config were initialised at random with a load report, and a run went
    on to train (or score) a random encoder. The pooler that an MLM checkpoint lacks is new as transformers has it."""
    with pytest.raises(EncoderWeightsMissing, match=r"foreign-weights\w*: 100% of the weights of its bert encoder are "
                                                    r"not in its checkpoint \(transformers' load report lists them"):
        SimCSEModel.from_exported(foreign_weights_dir)
    mlm = RobertaForMaskedLM(RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                           num_attention_heads=2, intermediate_size=64))
    mlm.save_pretrained(tmp_path / "mlm")
    encoder = load_encoder(str(tmp_path / "mlm"))
    torch.testing.assert_close(encoder.embeddings.word_embeddings.weight, mlm.roberta.embeddings.word_embeddings.weight)


def test_models_are_loaded_without_hub_kernels(encoder_dir, sentence_transformer_dir, tokenizer, tmp_path,
                                               monkeypatch):
    """transformers 5.25 loads every model with `use_kernels` on: with `kernels` installed, layers' code is chosen
    again at each train()/eval() switch for the device the model is then on (on a GPU, a GELU fetched from the Hub for
    the dev evaluations, not for training). Every encoder and checkpoint this project loads, for training or scoring,
    runs transformers' own code."""
    def kernelized(model: torch.nn.Module) -> bool:
        return any(getattr(module, "use_kernels", False) for module in model.modules())

    if is_kernels_available() and Version(transformers.__version__) >= Version("5.25"):
        assert kernelized(AutoModel.from_pretrained(encoder_dir))  # the library's default, which this test guards
    checkpoint, export = str(tmp_path / "checkpoint"), str(tmp_path / "export")
    model = SimCSEModel.from_encoder(encoder_dir, pooler_type="cls")
    model.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    model.export_encoder(export, tokenizer)
    loaded = [load_encoder(encoder_dir), model, SimCSEModel.from_pretrained(checkpoint)]
    loaded += [SimCSEModel.from_exported(path) for path in (encoder_dir, checkpoint, export)]
    loaded += [run_simcse.build_model(run_arguments.ModelArguments(model_name_or_path=path),
                                      run_arguments.SimCSEArguments(pooler_type="cls"), tokenizer, "cpu")
               for path in (encoder_dir, checkpoint, export)]
    scored = []
    monkeypatch.setattr(sts_evaluation, "check_inputs", lambda model, *args: scored.append(model))
    sts_evaluation.sentence_transformers_scores(sentence_transformer_dir, {}, None, 4)
    assert len(scored) == 1
    for each in loaded + scored:
        assert not kernelized(each.train().eval())


def test_encoder_without_pooler_cannot_keep_mlp(tokenizer, tmp_path):
    encoder = ElectraModel(ElectraConfig(vocab_size=len(tokenizer), embedding_size=16, hidden_size=32,
                                         num_hidden_layers=1, num_attention_heads=2, intermediate_size=32))
    model = SimCSEModel.from_encoder(encoder, pooler_type="cls")
    with pytest.raises(ValueError, match="no dense\\+tanh pooler"):
        model.export_encoder(str(tmp_path / "x"), tokenizer)
    mlp_only_train = SimCSEModel.from_encoder(encoder, pooler_type="cls", mlp_only_train=True)
    mlp_only_train.export_encoder(str(tmp_path / "y"), tokenizer)


def test_encode_matches_sentence_transformers_in_input_order(encoder_dir, tokenizer, tmp_path):
    model = SimCSEModel.from_encoder(encoder_dir, pooler_type="avg").eval()
    model.export_encoder(str(tmp_path), tokenizer)
    sentences = SENTENCES * 3 + ["짧다.", "아주 긴 문장이 여기에 있고 그 뒤에도 단어가 계속 이어지는 경우이다."]
    theirs = SentenceTransformer(str(tmp_path), device="cpu").encode(sentences, convert_to_tensor=True)
    embed, shapes = model.embed, {}
    for batch_size, fill in ((2, False), (1, True), (256, False)):
        batches = shapes[batch_size] = []
        model.embed = lambda ids, mask, batches=batches: batches.append(tuple(ids.shape)) or embed(ids, mask)
        ours = model.encode(sentences, tokenizer, batch_size=batch_size, max_length=32, fill_batches=fill)
        assert ours.shape == (len(sentences), 32)
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    assert [rows for rows, _ in shapes[2]] == [2, 2, 2, 2, 2, 1] and len(shapes[256]) == 1
    # filled, batch_size 1 at max_length 32: at most 32 padded tokens a batch, several sentences when they are short
    assert all(rows * width <= 32 for rows, width in shapes[1]) and max(rows for rows, _ in shapes[1]) > 1
