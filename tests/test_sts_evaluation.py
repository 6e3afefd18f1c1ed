"""The 8 STS correlations against hand-computed cases, and the evaluation command against a direct computation."""

import errno
import json
import os
import pathlib
import re
import shutil
import warnings

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Pooling, StaticEmbedding, Transformer
from transformers import AutoModel, AutoTokenizer, GPT2Config, GPT2Model, T5Config, T5EncoderModel

import sts_evaluation
from conftest import ROOT, SAMPLE, cli, folder_files, free_port
from data_loading import column_values, load_sts, tokenize_rows
from modeling_simcse import SimCSEModel, pair_similarities
from sts_evaluation import METRIC_NAMES, format_table, main, sts_correlations, tokenize_sts


def pearson_by_hand(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    dx, dy = x - x.mean(), y - y.mean()
    return float((dx * dy).sum() / np.sqrt((dx**2).sum() * (dy**2).sum()))


def ranks_by_hand(x):
    """Average ranks (1-based), ties sharing the mean of their positions."""
    order = sorted(range(len(x)), key=lambda i: x[i])
    ranks = [0.0] * len(x)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def test_known_values():
    gold = np.array([0.0, 1.0, 2.0, 3.0, 5.0])
    sims = np.array([
        [0.1, -4.0, -9.0, 1.0],
        [0.2, -3.0, -8.0, 3.0],
        [0.3, -3.5, -7.0, 2.0],   # Euclidean and dot out of order here
        [0.4, -1.0, -6.0, 4.0],
        [0.9, -0.5, -1.0, 5.0],
    ])
    got = sts_correlations(sims, gold)
    assert got["cosine_spearman"] == pytest.approx(100.0)
    assert got["manhattan_spearman"] == pytest.approx(100.0)
    # Ranks of Euclidean: [1, 3, 2, 4, 5] vs [1..5]: rho = 1 - 6 * 2 / (5 * 24) = 0.9
    assert got["euclidean_spearman"] == pytest.approx(90.0)
    assert got["dot_spearman"] == pytest.approx(90.0)
    for k, name in enumerate(["cosine", "euclidean", "manhattan", "dot"]):
        assert got[f"{name}_pearson"] == pytest.approx(100 * pearson_by_hand(sims[:, k], gold))
    assert got["avg"] == pytest.approx(np.mean([got[m] for m in METRIC_NAMES[1:]]))
    assert list(got) == list(METRIC_NAMES)


def test_ties_and_random_case_match_by_hand():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 6, size=40).astype(float)  # many ties
    sims = rng.normal(size=(40, 4))
    sims[:, 3] = np.round(sims[:, 3])  # ties in a prediction column too
    got = sts_correlations(sims, gold)
    for k, name in enumerate(["cosine", "euclidean", "manhattan", "dot"]):
        want = pearson_by_hand(ranks_by_hand(list(sims[:, k])), ranks_by_hand(list(gold)))
        assert got[f"{name}_spearman"] == pytest.approx(100 * want, abs=1e-9)


@pytest.mark.parametrize("bad", [np.nan, np.inf, "constant"])
def test_a_similarity_that_is_not_finite_or_constant_has_no_correlation(bad):
    """scipy 1.13, the lowest release the requirements allow, raised on non-finite values instead of returning NaN."""
    rng = np.random.default_rng(1)
    gold = rng.uniform(0, 5, size=12)
    sims = rng.normal(size=(12, 4))
    if bad == "constant":
        sims[:, 1] = 0.5
    else:
        sims[3, 1] = bad
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns of constant input
        got = sts_correlations(sims, gold)
    assert np.isnan(got["euclidean_pearson"]) and np.isnan(got["euclidean_spearman"]) and np.isnan(got["avg"])
    for k, name in [(0, "cosine"), (2, "manhattan"), (3, "dot")]:
        assert got[f"{name}_pearson"] == pytest.approx(100 * pearson_by_hand(sims[:, k], gold))


def test_anticorrelated_is_negative():
    gold = np.arange(10.0)
    sims = np.tile(-gold[:, None], (1, 4))
    assert sts_correlations(sims, gold)["avg"] == pytest.approx(-100.0)


def test_shape_is_checked():
    with pytest.raises(ValueError, match="shape"):
        sts_correlations(np.zeros((3, 2)), np.zeros(3))


def test_table_layout():
    table = format_table({"korsts-test": dict.fromkeys(METRIC_NAMES, 12.345)})
    header, rule, row = table.splitlines()
    assert header.startswith("| eval set | AVG | Cosine Pearson | Cosine Spearman | Euclidean Pearson")
    assert row == "| korsts-test |" + " 12.35 |" * 9


def test_command_scores_a_model_like_a_direct_computation(encoder_dir):
    """`python sts_evaluation.py` (Trainer, length-sorted batches) gives the correlations of the file-order pairs."""
    sts = load_sts(f"{SAMPLE}/sts.tsv")
    tokenizer = AutoTokenizer.from_pretrained(encoder_dir)
    file_order = [max(map(len, pair)) for pair in column_values(
        tokenize_rows(sts, tokenizer, ["sentence1", "sentence2"], 64, "score"), "input_ids")]
    lengths = [max(map(len, pair)) for pair in column_values(tokenize_sts(sts, tokenizer, 64), "input_ids")]
    assert lengths == sorted(file_order, reverse=True) != file_order  # evaluated in another order than the file's
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = main([encoder_dir, "--set", f"sample={SAMPLE}/sts.tsv", "--batch-size", "4", "--pooler", "avg"])["sample"]
    assert not [w for w in caught if "pin_memory" in str(w.message)]  # no pinned memory asked for without a GPU
    model = SimCSEModel.from_exported(encoder_dir, pooler_type="avg")
    a = model.encode(column_values(sts, "sentence1"), tokenizer)
    b = model.encode(column_values(sts, "sentence2"), tokenizer)
    want = sts_correlations(pair_similarities(a, b).numpy(), np.array(column_values(sts, "score")))
    assert got == pytest.approx(want, abs=1e-3)


def test_remove_characters_scores_the_sentences_without_them(encoder_dir, tmp_path):
    """--remove-characters: commas and quotes added to the sample's sentences, then removed, give the sample's
    scores."""
    lines = open(f"{SAMPLE}/sts.tsv", encoding="utf-8").read().splitlines()
    noisy = [lines[0]]
    for i, line in enumerate(lines[1:]):
        *meta, s1, s2 = line.split("\t")
        words = s1.split(" ")
        s1 = " ".join(w + ("," if k == i % len(words) else "") for k, w in enumerate(words))
        noisy.append("\t".join(meta + [f'"{s1}', s2.replace(" ", ', "', 1) if i % 2 else s2]))
    (tmp_path / "noisy.tsv").write_text("\n".join(noisy) + "\n", encoding="utf-8")
    common = ["--batch-size", "4", "--pooler", "avg"]
    clean = main([encoder_dir, "--set", f"s={SAMPLE}/sts.tsv"] + common)["s"]
    removed = main([encoder_dir, "--set", f"s={tmp_path}/noisy.tsv", "--remove-characters", ',"'] + common)["s"]
    kept = main([encoder_dir, "--set", f"s={tmp_path}/noisy.tsv"] + common)["s"]
    assert removed == pytest.approx(clean, abs=1e-6)
    assert kept["avg"] != pytest.approx(clean["avg"], abs=1e-3)


def test_a_mistyped_folder_is_said_to_be_read_as_a_hub_id(monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # no retries against the real Hub
    with pytest.raises(SystemExit, match="error: mistyped/encoder: no such folder here, so read as a Hub id: "):
        main(["mistyped/encoder", "--set", f"s={SAMPLE}/sts.tsv"])


def test_ctrl_c_while_scoring_says_so_and_writes_nothing(encoder_dir, tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sts_evaluation, "simcse_scores", interrupted)
    output = tmp_path / "results.json"
    try:
        with pytest.raises(SystemExit) as stopped:
            main([encoder_dir, "--set", f"s={SAMPLE}/sts.tsv", "--output", str(output)])
    except KeyboardInterrupt:  # uncaught, it would end the whole test session
        pytest.fail("Ctrl-C ended the scoring with a traceback")
    assert stopped.value.code == 130
    assert f"stopped: {encoder_dir} was not scored; {output} not written" in capsys.readouterr().err
    assert not output.exists()


# {encoder}: a saved encoder; {empty}: an empty folder; {reference}: a run; {link}: a link to it
@pytest.mark.parametrize("argv, message", [
    (["/no/such/encoder"], "/no/such/encoder: no such folder, and not a Hub model id"),
    (["{encoder}", "--output", "/no/such/folder/results.json"],
     "--output /no/such/folder/results.json: its folder does not"),
    (["{encoder}", "--output", "{empty}"], "--output {empty} is a folder; name the JSON file to write"),
    # These scores in the export's own results file became its card's, as the standard protocol's.
    (["{encoder}", "--remove-characters", ",", "--output", "{encoder}/sts_results.json"],
     "--output {encoder}/sts_results.json: the model card is rendered from that file"),
    (["{reference}", "--max-length", "128", "--output", "{reference}/sts_results.json"],  # max_seq_length 64
     "--output {reference}/sts_results.json: the model card is rendered from that file"),
    (["{reference}", "--max-length", "128", "--output", "{link}/sts_results.json"],  # the same file through a link
     "--output {link}/sts_results.json: the model card is rendered from that file"),
    (["{encoder}", "--set", f"s={SAMPLE}/sts.tsv", "--max-length", "65"],
     "--max-length 65 is longer than the 64 positions of the bert encoder"),
    (["{encoder}", "--set", "s=/no/such/sts.tsv"], "/no/such/sts.tsv: file not found"),
    (["{encoder}", "--set", f"s={SAMPLE}/sts.tsv", "--set", "s=other.tsv"], "two sets named 's'"),
    # 0 scored untruncated sentences without a word; negative numbers were tracebacks.
    (["{encoder}", "--max-length", "0"], "argument --max-length: expected a whole number of at least 1, got '0'"),
    (["{encoder}", "--batch-size", "-1"], "argument --batch-size: expected a whole number of at least 1, got '-1'"),
    (["{encoder}", "--set", f"s={SAMPLE}/sts.tsv", "--max-length", "2"],
     "--max-length 2 leaves no room for a sentence"),
    (["{empty}", "--set", f"s={SAMPLE}/sts.tsv"], "{empty}: no config.json or modules.json in this folder"),
    # A run's folder before its export holds only checkpoints.
    (["{run}", "--set", f"s={SAMPLE}/sts.tsv"],
     ("{run}: no config.json or modules.json in this folder; it holds training checkpoints (checkpoint-2, "
      "checkpoint-9, checkpoint-10): name one, as {run}/checkpoint-10")),
])
def test_command_names_bad_arguments_before_scoring(encoder_dir, argv, message, capsys, tmp_path):
    names = {"encoder": encoder_dir, "empty": str(tmp_path / "empty"), "run": str(tmp_path / "run"),
             "reference": f"{ROOT}/reference_run", "link": str(tmp_path / "link")}
    (tmp_path / "empty").mkdir()
    (tmp_path / "link").symlink_to(names["reference"])
    for step in (10, 2, 9):  # named in the order of their steps, not of their names
        (tmp_path / "run" / f"checkpoint-{step}").mkdir(parents=True)
    with pytest.raises(SystemExit) as stop:
        main([a.format(**names) for a in argv])
    message = message.format(**names)
    assert message in str(stop.value) + capsys.readouterr().err  # argparse prints its own errors


def test_one_pair_a_batch_and_one_token_a_sentence_are_the_least_accepted():
    assert [sts_evaluation.positive_int(text) for text in ("1", " 2 ", "128")] == [1, 2, 128]


def test_scores_of_another_max_length_may_go_in_the_results_file_of_a_folder_run_simcse_did_not_write(encoder_dir):
    """Only a run's own `sts_results.json` (beside its run_args.json) is kept to the run's max_seq_length."""
    output = f"{encoder_dir}/sts_results.json"
    assert sts_evaluation.run_results_problem(encoder_dir, output, "", 32) is None
    assert sts_evaluation.run_results_problem(encoder_dir, output, ",", None).startswith(f"--output {output}: ")
    reference = f"{ROOT}/reference_run"
    assert sts_evaluation.run_results_problem(reference, f"{reference}/sts_results.json", "", 64) is None


def test_an_error_of_the_scoring_that_is_not_about_model_code_is_not_said_to_be(encoder_dir, monkeypatch):
    def fails(*args, **kwargs):
        raise ValueError("something else went wrong")

    monkeypatch.setattr(sts_evaluation, "simcse_scores", fails)
    with pytest.raises(ValueError, match="something else went wrong"):
        main([encoder_dir, "--pooler", "avg", "--set", f"s={SAMPLE}/sts.tsv"])


def test_an_output_this_user_may_not_write_is_refused_before_scoring(encoder_dir, tmp_path, monkeypatch, capsys):
    """A read-only disk or folder: the results file was opened after the scoring, in a traceback (checked with
    os.access, which knows a read-only mount; the tests may run as root, whom file modes do not stop)."""
    import sts_evaluation

    asked = []
    monkeypatch.setattr(sts_evaluation.os, "access", lambda path, mode: asked.append((path, mode)) and False)
    output = tmp_path / "results.json"
    with pytest.raises(SystemExit):
        main([encoder_dir, "--set", f"s={SAMPLE}/sts.tsv", "--output", str(output)])
    assert (f"--output {output}: this user may not write it there (a read-only file, folder or disk)"
            in capsys.readouterr().err)
    assert asked == [(str(tmp_path), os.W_OK)]  # the folder, where the file does not exist yet
    output.write_text("{}")
    asked.clear()
    with pytest.raises(SystemExit):
        main([encoder_dir, "--set", f"s={SAMPLE}/sts.tsv", "--output", str(output)])
    assert asked == [(str(output), os.W_OK)] and output.read_text() == "{}"


def test_an_output_the_disk_cannot_take_is_an_error_that_leaves_no_half_written_file(encoder_dir, tmp_path,
                                                                                   monkeypatch, capsys):
    """A full disk while writing --output was a traceback after the scoring, and left a file cut short; an earlier
    file of that name is kept as it was."""

    def disk_fills(obj, f, **kwargs):
        f.write('{"s": {"avg": 4')
        f.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sts_evaluation.json, "dump", disk_fills)
    output = tmp_path / "results.json"
    for earlier in (None, '{"kept": 1}'):
        if earlier:
            output.write_text(earlier)
        with pytest.raises(SystemExit, match=rf"--output {output}: not written \(No space left on device\); the "
                                             "scores are the table above"):
            main([encoder_dir, "--set", f"s={SAMPLE}/sts.tsv", "--output", str(output)])
        assert "| s |" in capsys.readouterr().out
        assert sorted(os.listdir(tmp_path)) == (["results.json"] if earlier else [])
        assert earlier is None or output.read_text() == earlier


def test_a_run_folder_without_its_export_names_its_best_checkpoint(tmp_path):
    """The hint named the newest checkpoint, where a run stopped after training now keeps its last one beside the best
    (the one it exports): the checkpoint to score is the best, which the newest checkpoint's state records, under the
    path the run was given (the folder moved since, here)."""
    run = tmp_path / "run"
    for step in (3, 6, 12):
        (run / f"checkpoint-{step}").mkdir(parents=True)
        state = {"global_step": step, "best_model_checkpoint": f"/elsewhere/out/checkpoint-{min(step, 6)}"}
        (run / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps(state))
    with pytest.raises(SystemExit, match=re.escape(
            f"{run}: no config.json or modules.json in this folder; it holds training checkpoints (checkpoint-3, "
            f"checkpoint-6, checkpoint-12): name one, as {run}/checkpoint-6 (the best on the dev set so far)")):
        main([str(run), "--set", f"s={SAMPLE}/sts.tsv"])
    shutil.rmtree(run / "checkpoint-6")  # the best, deleted since: the newest is named
    with pytest.raises(SystemExit, match=re.escape(f"(checkpoint-3, checkpoint-12): name one, as {run}/checkpoint-12")
                       + "$"):
        main([str(run), "--set", f"s={SAMPLE}/sts.tsv"])


def test_default_sets_out_of_reach_are_named_with_the_way_to_score_local_copies(encoder_dir, monkeypatch):
    """Offline, the default sets (KorSTS from GitHub, KLUE-STS from the Hub) do not load: say how to name local
    files."""
    monkeypatch.setattr(sts_evaluation, "DEFAULT_SETS",
                        {"korsts-test": "/offline/sts-test.tsv", "klue-sts-dev": "k/k:s:v"})
    with pytest.raises(SystemExit, match=r"^error: /offline/sts-test.tsv: file not found; or score local copies of the "
                                         r"default sets: --set korsts-test=PATH/sts-test.tsv --set klue-sts-dev="):
        main([encoder_dir])
    with pytest.raises(SystemExit, match=r"^error: /offline/sts-test.tsv: file not found$"):
        main([encoder_dir, "--set", "s=/offline/sts-test.tsv"])
    # A host that does not answer: that way to local files, in place of the general one.
    unreachable = f"http://127.0.0.1:{free_port()}/sts-test.tsv"
    monkeypatch.setattr(sts_evaluation, "DEFAULT_SETS", {"korsts-test": unreachable})
    with pytest.raises(SystemExit, match=rf"^error: {unreachable}: could not be read: Cannot connect to host [^;]*; or "
                                         "score local copies of the default sets: --set korsts-test="):
        main([encoder_dir])


def test_a_tokenizer_without_a_padding_token_is_named_before_scoring(encoder_dir, tmp_path):
    """The collator pads with the tokenizer's padding id: it was a TypeError at the first batch."""
    shutil.copytree(encoder_dir, tmp_path / "encoder")
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "encoder"))
    tokenizer.pad_token = None
    tokenizer.save_pretrained(str(tmp_path / "encoder"))
    with pytest.raises(SystemExit, match="has no padding token, which batches of sentences of different lengths need"):
        main([str(tmp_path / "encoder"), "--set", f"s={SAMPLE}/sts.tsv"])


def test_a_model_without_tokenizer_files_is_named_before_scoring(encoder_dir, sentence_transformer_dir, tmp_path):
    """transformers (and sentence-transformers through it) loads such a folder with a tokenizer of special tokens only:
    every sentence was scored as [CLS] [UNK]... [SEP], without a word."""
    for name, model in (("encoder", encoder_dir), ("sentence-transformer", sentence_transformer_dir)):
        shutil.copytree(model, tmp_path / name, ignore=shutil.ignore_patterns("tokenizer*", "vocab.txt"))
        with pytest.raises(SystemExit, match=r"makes 100% of the tokens of the sentences of s \[UNK\]: it has no "
                                             r"vocabulary beyond its 5 special tokens"):
            main([str(tmp_path / name), "--set", f"s={SAMPLE}/sts.tsv"])


def test_a_model_of_another_architectures_weights_is_named_before_scoring(foreign_weights_dir):
    with pytest.raises(SystemExit, match=r"^error: .*foreign-weights\w*: 100% of the weights of its bert encoder are "
                                         r"not in its checkpoint"):
        main([foreign_weights_dir, "--set", f"s={SAMPLE}/sts.tsv"])


def test_sentence_transformers_model_is_scored_with_its_own_pipeline(encoder_dir, sentence_transformer_dir, capsys):
    """Without --pooler, a sentence-transformers model gets its own embedding: the mean pooling's cosine scores, and
    the Normalize module's unit vectors, on which dot product is the cosine and Euclidean distance ranks as it does."""
    sample = ["--set", f"s={SAMPLE}/sts.tsv", "--batch-size", "4"]
    got = main([sentence_transformer_dir] + sample)["s"]
    pipeline = ("scored through its sentence-transformers pipeline (Transformer -> Pooling -> Normalize, "
                "max_seq_length 64)")
    said = capsys.readouterr()
    assert pipeline in said.out and "scoring s: 24 pairs\n" in said.err  # the bars below name no set
    # Long work shows progress: a bar of 6 batches for each column of sentences; for a SimCSE model, one of pairs.
    assert len(re.findall(r"100%\|\S+\| 6/6 \[", said.err.split("scoring s: 24 pairs\n")[1])) == 2
    mean_pooled = main([encoder_dir, "--pooler", "avg"] + sample)["s"]
    said = capsys.readouterr()
    assert len(re.findall(r"100%\|\S+\| 6/6 \[", said.err.split("scoring s: 24 pairs\n")[1])) == 1
    for metric in ("cosine_pearson", "cosine_spearman"):
        assert got[metric] == pytest.approx(mean_pooled[metric], abs=1e-3)
    assert got["dot_pearson"] == pytest.approx(got["cosine_pearson"], abs=1e-3)
    assert got["dot_spearman"] == pytest.approx(got["cosine_spearman"], abs=1e-3)
    assert got["euclidean_spearman"] == pytest.approx(got["cosine_spearman"], abs=1e-3)
    assert mean_pooled["dot_spearman"] != pytest.approx(mean_pooled["cosine_spearman"], abs=1e-1)  # not unit length

    cls_pooled = main([sentence_transformer_dir, "--pooler", "cls_before_pooler"] + sample)["s"]  # --pooler overrides
    assert cls_pooled == pytest.approx(main([encoder_dir, "--pooler", "cls_before_pooler"] + sample)["s"], abs=1e-6)
    assert cls_pooled["cosine_spearman"] != pytest.approx(got["cosine_spearman"], abs=1e-1)


def test_a_model_saved_in_half_precision_is_scored_in_fp32(encoder_dir, sentence_transformer_dir, tmp_path):
    """transformers 5 and sentence-transformers load a model in the dtype it was saved in: one saved in bf16 was scored
    in bf16, not in the fp32 of a run's own scores. Both pipelines now score it as its weights upcast to fp32."""
    sample = ["--set", f"s={SAMPLE}/sts.tsv", "--batch-size", "4"]
    for model, loaded, options in ((encoder_dir, AutoModel.from_pretrained, ["--pooler", "avg"]),
                                   (sentence_transformer_dir, SentenceTransformer, [])):
        bf16, upcast = str(tmp_path / "bf16"), str(tmp_path / "upcast")
        for path, dtype in ((bf16, torch.bfloat16), (upcast, torch.float32)):
            shutil.rmtree(path, ignore_errors=True)
            shutil.copytree(model, path)
            if model == encoder_dir:
                AutoModel.from_pretrained(model, dtype=torch.bfloat16).to(dtype).save_pretrained(path)
            else:
                SentenceTransformer(model).to(torch.bfloat16).to(dtype).save(path)
        assert next(loaded(bf16).parameters()).dtype == torch.bfloat16  # the libraries' own default
        assert main([bf16] + options + sample)["s"] == pytest.approx(main([upcast] + options + sample)["s"], abs=1e-9)


def test_a_decoder_is_scored_through_its_pooling_and_refused_with_its_first_token(tokenizer, tmp_path):
    """A decoder (GPT-2 here) whose first token sees only itself: scored with a CLS pooler, every sentence got the same
    embedding and the scores were undefined; it is refused and pointed to `--pooler avg`, with which it is scored, as a
    sentence-transformers model that mean-pools it is, through its pipeline, and the encoder of sentence-T5 too."""
    sample = ["--set", f"s={SAMPLE}/sts.tsv", "--batch-size", "4"]
    for name, model in (("gpt2", GPT2Model(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2))),
                        ("t5", T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=32, num_layers=2, d_ff=64)))):
        encoder, pipeline = str(tmp_path / name), str(tmp_path / f"{name}-st")
        model.save_pretrained(encoder)
        tokenizer.save_pretrained(encoder)
        SentenceTransformer(modules=[Transformer(encoder), Pooling(32, pooling_mode="mean")]).save(pipeline)
        assert set(main([pipeline] + sample)["s"]) == set(METRIC_NAMES)
    with pytest.raises(SystemExit, match="first token of GPT2Model sees none of the tokens after it .* --pooler avg"):
        main([str(tmp_path / "gpt2")] + sample)
    assert main([str(tmp_path / "gpt2"), "--pooler", "avg"] + sample)["s"] == pytest.approx(
        main([str(tmp_path / "gpt2-st")] + sample)["s"], abs=1e-4)


def test_sentence_transformers_model_max_length_is_checked(sentence_transformer_dir):
    with pytest.raises(SystemExit, match="--max-length 65 is longer than the 64 positions of the bert encoder"):
        main([sentence_transformer_dir, "--set", f"s={SAMPLE}/sts.tsv", "--max-length", "65"])


def test_sentence_transformers_model_from_the_hub(sentence_transformer_dir, hub, tmp_path):
    """A Hub id of a sentence-transformers model (served by the stand-in Hub) is scored as its local copy is."""
    hub.add_repo("someone/korean-sentence-model", folder_files(pathlib.Path(sentence_transformer_dir)))
    sample = ["--set", f"s={SAMPLE}/sts.tsv", "--batch-size", "4"]
    run = cli(["sts_evaluation.py", "someone/korean-sentence-model", *sample, "--output", str(tmp_path / "hub.json")],
              hub, tmp_path / "home", token=None)
    assert run.returncode == 0, run.stderr
    assert "sentence-transformers pipeline (Transformer -> Pooling -> Normalize" in run.stdout
    got = json.loads((tmp_path / "hub.json").read_text())["s"]
    assert got == pytest.approx(main([sentence_transformer_dir] + sample)["s"], abs=1e-6)


def test_a_static_embedding_model_is_scored_through_its_pipeline(tokenizer, hub, tmp_path):
    """A sentence-transformers model without a transformers encoder (StaticEmbedding: modules.json, no config.json)
    was refused as a folder without config.json, and from the Hub with a traceback. It is scored by its own `encode`,
    as a folder and as a Hub id; --pooler and --max-length, which it has nothing for, are named."""
    torch.manual_seed(0)
    path = tmp_path / "static"
    SentenceTransformer(modules=[StaticEmbedding(tokenizer, embedding_dim=16)]).save(str(path))
    assert not (path / "config.json").exists()
    sample = ["--set", f"s={SAMPLE}/sts.tsv"]
    got = main([str(path)] + sample)["s"]
    sts, model = load_sts(f"{SAMPLE}/sts.tsv"), SentenceTransformer(str(path))
    a, b = (model.encode(column_values(sts, c), convert_to_tensor=True) for c in ("sentence1", "sentence2"))
    want = sts_correlations(pair_similarities(a, b).numpy(), np.array(column_values(sts, "score")))
    assert got == pytest.approx(want, abs=1e-6)
    for option, message in ((["--pooler", "avg"], "--pooler: .*static has no config.json at its root, so no encoder"),
                            (["--max-length", "32"], r"--max-length: .*static embeds each token on its own \(Static")):
        with pytest.raises(SystemExit, match=message):
            main([str(path)] + sample + option)
    hub.add_repo("someone/static-korean", folder_files(path))
    run = cli(["sts_evaluation.py", "someone/static-korean", *sample, "--output", str(tmp_path / "hub.json")], hub,
              tmp_path / "home", token=None)
    assert run.returncode == 0, run.stderr
    assert json.loads((tmp_path / "hub.json").read_text())["s"] == pytest.approx(got, abs=1e-6)


def test_a_sentence_transformers_model_with_its_encoder_in_a_module_folder_is_scored(sentence_transformer_dir,
                                                                                      tmp_path):
    """Early sentence-transformers releases saved the encoder in a module folder (0_Transformer/), with no config.json
    at the root: refused as a folder without config.json, it is scored as the same model in today's layout."""
    path = tmp_path / "old-layout"
    shutil.copytree(sentence_transformer_dir, path)
    (path / "0_Transformer").mkdir()
    with open(path / "modules.json") as f:
        modules = json.load(f)
    assert modules[0]["path"] == ""
    for name in os.listdir(path):
        if (path / name).is_file() and name not in ("modules.json", "config_sentence_transformers.json", "README.md"):
            shutil.move(path / name, path / "0_Transformer" / name)
    modules[0]["path"] = "0_Transformer"
    (path / "modules.json").write_text(json.dumps(modules))
    assert not (path / "config.json").exists()
    sample = ["--set", f"s={SAMPLE}/sts.tsv", "--batch-size", "4"]
    assert main([str(path)] + sample)["s"] == pytest.approx(main([sentence_transformer_dir] + sample)["s"], abs=1e-6)


def test_the_pooling_of_a_sentence_transformers_model_is_read_in_either_layout(encoder_dir, sentence_transformer_dir,
                                                                                 tokenizer, tmp_path):
    from sts_evaluation import sentence_transformers_pooling

    assert sentence_transformers_pooling(sentence_transformer_dir) == "mean"  # sentence-transformers 6's own layout
    for pooler, pooling in (("cls", "cls"), ("avg_top2", "mean")):  # exports: the layout of releases 2-5
        SimCSEModel.from_encoder(encoder_dir, pooler_type=pooler).export_encoder(str(tmp_path / pooler), tokenizer)
        assert sentence_transformers_pooling(str(tmp_path / pooler)) == pooling
    assert sentence_transformers_pooling(encoder_dir) is None  # no sentence-transformers files


def test_a_model_with_its_own_code_is_scored_only_with_trust_remote_code(encoder_dir, custom_code_encoder_dir,
                                                                          tmp_path):
    """A model that ships its own code: an error that names the flag without it, no prompt; with --trust-remote-code,
    the scores of the same weights in the built-in class, directly and as a sentence-transformers pipeline."""

    sample = ["--set", f"s={SAMPLE}/sts.tsv", "--batch-size", "4"]
    trusted = {"trust_remote_code": True}
    pipeline = str(tmp_path / "pipeline")
    SentenceTransformer(modules=[Transformer(custom_code_encoder_dir, max_seq_length=64, model_kwargs=trusted,
                                             config_kwargs=trusted, processor_kwargs=trusted),
                                 Pooling(32, pooling_mode="mean")], device="cpu").save(pipeline)
    for model, pooler in ((custom_code_encoder_dir, ["--pooler", "avg"]), (pipeline, [])):
        with pytest.raises(SystemExit, match=f"error: {model} ships its own code, which builds the model; read it, "
                                             "then add --trust-remote-code to run it"):
            main([model] + pooler + sample)
        got = main([model, "--trust-remote-code"] + pooler + sample)["s"]
        assert got == pytest.approx(main([encoder_dir, "--pooler", "avg"] + sample)["s"], abs=1e-4)
    # Called from Python, the scoring functions run no model code unless asked either.
    for score in (lambda: sts_evaluation.simcse_scores(custom_code_encoder_dir, None, "avg", {}, None, 4),
                  lambda: sts_evaluation.sentence_transformers_scores(pipeline, {}, None, 4)):
        with pytest.raises(ValueError, match="trust_remote_code=True"):
            score()
