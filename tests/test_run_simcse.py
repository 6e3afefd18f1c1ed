"""The training job as a user runs it: smoke config end to end, unsupervised text, and bad input."""

import dataclasses
import fcntl
import importlib
import json
import logging
import multiprocessing.util
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import types
from pathlib import Path

import multiprocess.util
import pytest
import torch
from safetensors.torch import load_file
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Dense, Pooling, Transformer
from transformers import (AutoModel, AutoTokenizer, DistilBertConfig, DistilBertModel, TrainerCallback,
                          TrainingArguments)
from transformers.debug_utils import DebugOption
from transformers.trainer_pt_utils import LengthGroupedSampler

import output_folder
import run_arguments
import run_simcse
import sts_evaluation
from conftest import ROOT, SAMPLE, cli, folder_files, sample_sentences
from data_loading import DataError, load_source
from hub.card import render_card
from modeling_simcse import SimCSEConfig, SimCSEModel
from scratch_tokenizer import train_wordpiece

METRICS = ["avg", "cosine_pearson", "cosine_spearman", "euclidean_pearson", "euclidean_spearman",
           "manhattan_pearson", "manhattan_spearman", "dot_pearson", "dot_spearman"]


def smoke_config(tmp_path, **changes) -> str:
    with open(os.path.join(ROOT, "configs", "smoke.json")) as f:
        config = json.load(f)
    config.update({"output_dir": str(tmp_path / "out"), **changes})
    for key in ("train_data",):
        config[key] = [os.path.join(ROOT, p) for p in config[key]]
    if config["dev_data"]:
        config["dev_data"] = os.path.join(ROOT, config["dev_data"])
    if "test_data" not in changes:
        config["test_data"] = [f"sample-sts={SAMPLE}/sts.tsv", f"sample-sts-again={SAMPLE}/sts.tsv"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return str(path)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """configs/smoke.json run in a fresh process, as a user would (output_dir moved to a temporary folder)."""
    tmp_path = tmp_path_factory.mktemp("smoke")
    config = smoke_config(tmp_path)
    proc = subprocess.run([sys.executable, "run_simcse.py", config], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp_path / "out", proc


def test_smoke_results_schema(smoke_run):
    out, proc = smoke_run
    with open(out / "sts_results.json") as f:
        results = json.load(f)
    assert list(results) == ["sample-sts", "sample-sts-again"]
    for metrics in results.values():
        assert list(metrics) == METRICS
        assert all(-100 <= v <= 100 for v in metrics.values())
        assert metrics["avg"] == pytest.approx(sum(metrics[m] for m in METRICS[1:]) / 8)
    assert results["sample-sts"] == results["sample-sts-again"]
    assert "| sample-sts |" in proc.stdout
    assert proc.stdout.endswith(f"exported to {out}: the model (AutoModel.from_pretrained, SentenceTransformer), its "
                                "scores (sts_results.json) and its card (README.md)\n")
    assert ".export-in-progress" not in proc.stderr  # the scratch folder of the export, gone by then
    assert "The tokenizer has new PAD/BOS/EOS tokens" not in proc.stderr  # Trainer reads the encoder's own config
    with open(out / "trainer_state.json") as f:
        state = json.load(f)
    dev = [e["eval_cosine_spearman"] for e in state["log_history"] if "eval_cosine_spearman" in e]
    assert len(dev) == 4 and state["best_metric"] == pytest.approx(max(dev))
    # What the README's table of the output folder names, and nothing else.
    assert {path.name for path in out.iterdir()} == {
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "modules.json",
        "sentence_bert_config.json", "config_sentence_transformers.json", "1_Pooling", "2_Dense", "sts_results.json",
        "trainer_state.json", "README.md", "dev_scores.png", "train_results.json", "environment.json", "run_args.json",
        "checkpoint-6"}


def test_a_checkpoints_weights_are_as_readable_as_its_other_files(smoke_run):
    """safetensors 0.8 writes weights 0600 whatever the umask: a checkpoint that another user could score or resume
    from by every other file held weights that only its owner could read."""
    out, _ = smoke_run
    [checkpoint] = out.glob("checkpoint-*")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in checkpoint.iterdir() if p.is_file()}
    assert {"model.safetensors", "config.json", "optimizer.pt"} <= set(modes)
    assert set(modes.values()) == {modes["config.json"]}


def test_resuming_a_finished_run_says_what_it_trains_again(smoke_run, caplog):
    """Once training has ended, save_total_limit 1 keeps the best checkpoint only: a launch that resumes the finished
    run trains the steps after it again, which it did without a word."""
    out, _ = smoke_run
    with open(out / "trainer_state.json") as f:
        state = json.load(f)
    best, end = state["best_model_checkpoint"], state["global_step"]
    step = int(best.rsplit("-", 1)[1])
    assert sorted(p.name for p in out.glob("checkpoint-*")) == [os.path.basename(best)] and step < end
    assert output_folder.resolve_resume(str(out), "last") == best
    assert (f"output_dir {out} holds this run, trained to its end (step {end}); resuming from {best} (step {step}), "
            f"this launch trains steps {step + 1}-{end} again, then evaluates and exports the run again" in caplog.text)


def test_a_finished_run_without_its_export_is_not_sent_to_sts_evaluation(smoke_run, tmp_path, caplog):
    """A launch killed after training, during the final evaluation or the export: the hint to score the export
    named a folder without one."""
    out = tmp_path / "out"
    shutil.copytree(smoke_run[0], out)  # the modification times with it: the export is newer than trainer_state.json
    output_folder.warn_of_checkpoints_left(str(out))
    assert f"(`python sts_evaluation.py {out}` scores the export without training)" in caplog.text
    os.remove(out / "model.safetensors")
    caplog.clear()
    output_folder.warn_of_checkpoints_left(str(out))
    output_folder.resolve_resume(str(out), "last")
    assert caplog.text.count("(its export is missing or older than its training: the launch that trained it stopped "
                             "before exporting)") == 2
    assert "sts_evaluation" not in caplog.text


def test_a_test_set_that_is_the_dev_set_is_said_to_be_no_held_out_set(smoke_run):
    """The smoke job selects on the sample it reports: the run warns, and the card says so under each table."""
    out, proc = smoke_run
    with open(out / "environment.json") as f:
        assert json.load(f)["test_pairs_in_dev"] == {"sample-sts": [24, 24], "sample-sts-again": [24, 24]}
    assert "test set sample-sts: 24 of its 24 pairs are in dev_data" in proc.stderr
    card = (out / "README.md").read_text()
    assert card.count("Not held out: 24 of these 24 pairs are in the dev set (`") == 2


def test_the_phase_times_are_the_run_s_own(smoke_run):
    """environment.json's seconds per phase: each phase once, none negative; the training phase holds Trainer's
    train_runtime and, within it, the dev evaluations and the checkpoint saves (12 steps, 4 of each)."""
    out, _ = smoke_run
    with open(out / "environment.json") as f:
        seconds = json.load(f)["phase_seconds"]
    with open(out / "train_results.json") as f:
        runtime = json.load(f)["train_runtime"]
    assert list(seconds) == ["load_data", "load_model", "tokenize", "train", "dev_evaluations_within_train",
                             "checkpoint_saves_within_train", "final_evaluation", "export"]
    assert all(value > 0 for value in seconds.values()), seconds
    assert runtime <= seconds["train"] < runtime + 30, (runtime, seconds)
    within = seconds["dev_evaluations_within_train"] + seconds["checkpoint_saves_within_train"]
    assert within < seconds["train"], seconds


def test_a_dev_set_that_was_never_scored_is_said_to_have_chosen_nothing(tmp_path, caplog, smoke_run):
    """load_best_model_at_end with no evaluation in the run (eval_delay past its end): the run warns that the final
    model is the one exported, and the card says the dev set was never scored; a run that scored it says neither."""
    run_simcse.main([smoke_config(tmp_path, eval_delay=100, max_steps=3)])
    assert ("the dev set was never scored in the run's 3 steps (eval_strategy steps, eval_steps 3, eval_delay 100): "
            "the final model is the one exported and evaluated") in caplog.text
    assert ("| model selection | final model: the dev set was never scored (to be scored every 3 steps, eval_delay "
            "100; the run took 3 steps) |") in (tmp_path / "out" / "README.md").read_text()
    out, proc = smoke_run
    assert "never scored" not in proc.stderr and "never scored" not in (out / "README.md").read_text()


def test_a_test_set_that_is_the_dev_set_is_held_out_where_the_dev_set_chooses_no_checkpoint(tmp_path, caplog):
    """Without load_best_model_at_end the dev set only watches the run, which exports its last step: neither the run
    nor the card calls the test scores biased (the shared pairs are still counted)."""
    run_simcse.main([smoke_config(tmp_path, load_best_model_at_end=False, max_steps=3)])
    with open(tmp_path / "out" / "environment.json") as f:
        assert json.load(f)["test_pairs_in_dev"] == {"sample-sts": [24, 24], "sample-sts-again": [24, 24]}
    assert "pairs are in dev_data" not in caplog.text
    assert "Not held out" not in (tmp_path / "out" / "README.md").read_text()


def test_the_card_names_a_tokenizer_trained_for_the_run(smoke_run):
    out, _ = smoke_run
    pieces = len(AutoTokenizer.from_pretrained(str(out)))
    assert f"| tokenizer | WordPiece trained on the training sentences ({pieces} pieces) |" in (
        out / "README.md").read_text()


def test_smoke_export_loads_and_reproduces_scores(smoke_run, tmp_path, capsys):
    out, _ = smoke_run
    plain, info = AutoModel.from_pretrained(str(out), output_loading_info=True)
    assert not info["missing_keys"]
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    batch = tokenizer(["남자가 피아노를 연주한다.", "강아지가 잔디밭에서 뛰어논다."], padding=True, return_tensors="pt")
    with torch.no_grad():
        pooled = plain.eval()(**batch).pooler_output  # the smoke config's `cls` pooler folds the MLP here
    st = SentenceTransformer(str(out), device="cpu").encode(
        ["남자가 피아노를 연주한다.", "강아지가 잔디밭에서 뛰어논다."], convert_to_tensor=True)
    torch.testing.assert_close(st, pooled, atol=1e-5, rtol=1e-5)
    # The command-line evaluation of the exported folder gives the numbers the run wrote.
    results = sts_evaluation.main([str(out), "--set", f"sample-sts={SAMPLE}/sts.tsv", "--max-length", "32",
                                   "--output", str(tmp_path / "r.json")])
    assert capsys.readouterr().out.endswith(f"wrote {tmp_path / 'r.json'}\n")
    with open(out / "sts_results.json") as f:
        written = json.load(f)["sample-sts"]
    assert results["sample-sts"] == pytest.approx(written, abs=1e-4)
    # An export is scored with its own pooler: another one asked for was ignored without a word.
    with pytest.raises(SystemExit, match="--pooler: .* its own pooler .* leave --pooler out"):
        sts_evaluation.main([str(out), "--set", f"sample-sts={SAMPLE}/sts.tsv", "--pooler", "avg"])


def test_a_training_checkpoint_evaluates_to_its_logged_dev_scores(smoke_run):
    out, _ = smoke_run
    [checkpoint] = [name for name in os.listdir(out) if name.startswith("checkpoint-")]
    with open(out / "trainer_state.json") as f:
        step = int(checkpoint.split("-")[1])
        logged = next(e for e in json.load(f)["log_history"] if e["step"] == step and "eval_avg" in e)
    assert AutoTokenizer.from_pretrained(str(out / checkpoint)).model_max_length == 32  # the default --max-length
    results = sts_evaluation.main([str(out / checkpoint), "--set", f"dev={SAMPLE}/sts.tsv"])
    assert results["dev"] == pytest.approx({m: logged[f"eval_{m}"] for m in METRICS}, abs=1e-4)


def test_unsupervised_text_run(tmp_path):
    """A text file named with a published unsupervised config's column (`premise`) reads its lines (`text`), which
    the card names: it named `premise`."""
    source = os.path.join(SAMPLE, "sentences.txt")
    config = smoke_config(tmp_path, train_data=[source], train_format="text", sentence_columns=["premise"],
                          pooler_type="avg", num_train_epochs=1, eval_steps=2, save_steps=2)
    results = run_simcse.main([config])
    assert list(results["sample-sts"]) == METRICS
    model = SimCSEModel.from_exported(str(tmp_path / "out"))
    assert model.config.pooler_type == "avg"
    with open(tmp_path / "out" / "environment.json") as f:
        assert json.load(f)["train_columns"] == {source: ["text"]}
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert f"| training data | `{source}` (text: column `text`, repeated sentences left out) |" in card
    assert "fine-tuned with\nunsupervised SimCSE (in-batch negatives, temperature 0.05)." in card


def test_how_often_the_dev_set_is_scored_does_not_change_what_is_trained(tmp_path):
    """Evaluations leave the random state alone: scored every 3 steps, or at the start and every 6, the smoke run
    (dropout on) trains the same weights. Each evaluation's DataLoader drew a seed from torch's generator, which moved
    every later dropout mask (largest weight difference 0.0055)."""
    weights = []
    for name, changes in {"every3": {}, "start-every6": {"eval_steps": 6, "eval_on_start": True}}.items():
        (tmp_path / name).mkdir()
        run_simcse.main([smoke_config(tmp_path / name, load_best_model_at_end=False, **changes)])
        weights.append(load_file(tmp_path / name / "out" / "model.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        torch.testing.assert_close(weights[0][key], weights[1][key], rtol=0, atol=0, msg=key)


def test_without_metric_for_best_model_the_checkpoint_of_the_highest_cosine_spearman_is_kept(tmp_path):
    """Every shipped config names its metric; one that does not is given cosine_spearman, higher is better (Trainer's
    default for a metric it is not told of the direction of keeps the lowest)."""
    run_simcse.main([smoke_config(tmp_path, metric_for_best_model=None, test_data=[])])
    out = tmp_path / "out"
    with open(out / "trainer_state.json") as f:
        state = json.load(f)
    scores = {e["step"]: e["eval_cosine_spearman"] for e in state["log_history"] if "eval_cosine_spearman" in e}
    best = max(scores, key=scores.get)
    assert len(scores) == 4 and best != max(scores)  # the smoke run's best is no last step
    assert (state["best_global_step"], state["best_metric"]) == (best, scores[best])
    assert [name for name in os.listdir(out) if name.startswith("checkpoint-")] == [f"checkpoint-{best}"]


def test_a_scratch_vocabulary_larger_than_asked_is_said(tmp_path, caplog):
    """Every character of the training sentences gets a piece: a smaller train_tokenizer_vocab_size is exceeded."""
    run_simcse.main([smoke_config(tmp_path, train_tokenizer_vocab_size=10, max_steps=1, test_data=[])])
    size = len(AutoTokenizer.from_pretrained(str(tmp_path / "out")))
    assert f"train_tokenizer_vocab_size 10 is below the training sentences' {(size - 5) // 2} characters" in caplog.text
    assert f"the vocabulary has {size}" in caplog.text and size > 10


def test_a_run_without_test_sets_exports_and_says_how_to_make_the_card(tmp_path, caplog):
    # It overwrites a run with test sets and the MLP (2_Dense/): none of that run's export, results or card is left.
    run_simcse.main([smoke_config(tmp_path, num_train_epochs=1)])
    out = tmp_path / "out"
    assert {"2_Dense", "sts_results.json", "README.md", "dev_scores.png"} <= set(os.listdir(out))
    changes = dict(num_train_epochs=1, test_data=[], pooler_type="cls_before_pooler", overwrite_output_dir=True)
    assert run_simcse.main([smoke_config(tmp_path, **changes)]) == {}
    assert (out / "model.safetensors").is_file() and not (out / "sts_results.json").exists()
    assert not {"2_Dense", "README.md", "dev_scores.png"} & set(os.listdir(out))
    assert f"python sts_evaluation.py {out} --output {out / 'sts_results.json'}" in caplog.text
    results = sts_evaluation.main([str(out), "--set", f"sample-sts={SAMPLE}/sts.tsv", "--max-length", "32",
                                   "--output", str(out / "sts_results.json")])
    render_card(str(out))
    assert f"| {results['sample-sts']['avg']:.2f} |" in (out / "README.md").read_text()


def test_the_libraries_warnings_are_logged_once_each():
    """datasets and huggingface_hub print through a handler of their own and pass their records on to the root
    logger too: each Hub retry of a run that could not reach the Hub was said twice, once without the time."""
    said = {"huggingface_hub.utils._http": "Retrying in 1s [Retry 1/5].",
            "datasets.load": "Using the latest cached version of the dataset",
            "run_simcse": "the job's own"}
    code = "\n".join(["import logging, run_simcse", "run_simcse.configure_logging()"]
                      + [f"logging.getLogger({name!r}).warning({message!r})" for name, message in said.items()])
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if any(message in line for message in said.values())]
    assert [re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ", "", line) for line in lines] == [
        f"WARNING {name}: {message}" for name, message in said.items()]


@pytest.mark.parametrize("configured", [True, False])
def test_checkpoints_saved_within_a_second_are_rotated_in_step_order_without_a_warning(tmp_path, configured):
    """Trainer orders checkpoints by their times to rotate them; where two were saved within a second (every short
    run: the smoke run in the README's quick start) it said "mtime may not be reliable on this filesystem", and fell
    back to step order, which is right on any filesystem."""
    for step in (12, 3):
        (tmp_path / f"checkpoint-{step}").mkdir()
    code = "\n".join(["import sys, run_simcse", "from transformers.trainer_utils import sort_checkpoints",
                      *(["run_simcse.configure_logging()"] if configured else []),
                      "print(sort_checkpoints(sys.argv[1], use_mtime=True))"])
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == str([str(tmp_path / "checkpoint-3"), str(tmp_path / "checkpoint-12")])
    assert ("mtime may not be reliable" in proc.stderr) is not configured  # transformers says it where not filtered


def test_a_launch_into_a_folder_another_launch_is_using_is_refused(tmp_path):
    """Two launches into one folder (the first still running) deleted each other's checkpoints, and both failed
    (FileNotFoundError). The other launch here: a process holding the folder's lock, as a running launch does."""
    out = tmp_path / "out"
    out.mkdir()
    hold = ("import fcntl, os, sys; fcntl.flock(os.open(sys.argv[1], os.O_RDONLY), fcntl.LOCK_EX); "
            "print('held', flush=True); input()")
    other = subprocess.Popen([sys.executable, "-c", hold, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        assert other.stdout.readline() == "held\n"
        with pytest.raises(SystemExit, match=f"^error: output_dir {re.escape(str(out))} is in use: another launch into "
                                             "it is still running"):
            run_simcse.main([smoke_config(tmp_path, max_steps=2)])
        # With save_on_each_node, the first process of each node saves: on a disk the nodes share, they lock each other.
        with pytest.raises(SystemExit, match=r"still running .* choose another folder\. Or it is another node of this "
                                             r"launch: with save_on_each_node, .* on a disk the nodes share, leave "
                                             r"save_on_each_node off$"):
            run_simcse.main([smoke_config(tmp_path, max_steps=2, save_on_each_node=True)])
        assert os.listdir(out) == []
    finally:
        other.communicate("\n", timeout=60)
    run_simcse.main([smoke_config(tmp_path, max_steps=2)])
    # Released at the end of the launch: another open description of the folder locks it.
    descriptor = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(descriptor)


def test_length_grouping_groups_training_rows_by_their_tokens(tmp_path):
    """train_sampling_strategy group_by_length: Trainer's sampler gets each row's token count (all its sentences), not
    the length of the row's `input_ids`, which is its sentence count (3 for every triplet: nothing was grouped)."""

    class KeepTrainLoader(TrainerCallback):
        def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
            self.loader = train_dataloader

    keep = KeepTrainLoader()
    config = smoke_config(tmp_path, train_sampling_strategy="group_by_length", num_train_epochs=1, eval_strategy="no",
                          save_strategy="no", load_best_model_at_end=False, dev_data=None)
    run_simcse.main([config], callbacks=[keep])
    sampler = keep.loader.batch_sampler.sampler
    assert isinstance(sampler, LengthGroupedSampler)
    assert sampler.lengths == [sum(map(len, row)) for row in keep.loader.dataset["input_ids"]]
    assert len(set(sampler.lengths)) > 1


def dropout_rates(model) -> set[float]:
    return {m.p for m in model.encoder.modules() if isinstance(m, torch.nn.Dropout)}


def test_dropout_and_config_overrides_reach_a_pretrained_encoder(encoder_dir, tokenizer, tmp_path):
    build = run_simcse.build_model
    model = build(run_arguments.ModelArguments(model_name_or_path=encoder_dir),
                  run_arguments.SimCSEArguments(dropout=0.3), tokenizer, "cpu")
    assert dropout_rates(model) == {0.3}
    # DistilBERT names its dropout otherwise: `dropout` cannot set it (it was a TypeError from the model's __init__),
    # config_overrides can.
    distil = str(tmp_path / "distil")
    config = DistilBertConfig(vocab_size=len(tokenizer), dim=32, n_layers=1, n_heads=2, hidden_dim=64)
    DistilBertModel(config).save_pretrained(distil)
    with pytest.raises(SystemExit, match="dropout: a distilbert config has no hidden_dropout_prob"):
        build(run_arguments.ModelArguments(model_name_or_path=distil), run_arguments.SimCSEArguments(dropout=0.3),
              tokenizer, "cpu")
    overrides = "dropout=0.25,attention_dropout=0.25"
    model = build(run_arguments.ModelArguments(model_name_or_path=distil, config_overrides=overrides),
                  run_arguments.SimCSEArguments(), tokenizer, "cpu")
    assert dropout_rates(model) == {0.25}
    with pytest.raises(SystemExit, match="config_overrides: .*hidden_dropout"):
        build(run_arguments.ModelArguments(model_name_or_path=distil, config_overrides="hidden_dropout=0.1"),
              run_arguments.SimCSEArguments(), tokenizer, "cpu")


def test_an_encoder_saved_in_half_precision_trains_with_fp32_weights(encoder_dir, tokenizer, tmp_path):
    """transformers 5 loads a checkpoint in the dtype it was saved in: an encoder saved in bf16 trained with bf16
    weights, whose AdamW updates mostly rounded away, and was exported in bf16 under a card that said fp32. A
    checkpoint saved in bf16, and the evaluation's loading of either, are in fp32 too."""
    bf16 = str(tmp_path / "bf16")
    AutoModel.from_pretrained(encoder_dir, dtype=torch.bfloat16).save_pretrained(bf16)
    tokenizer.save_pretrained(bf16)
    assert AutoModel.from_pretrained(bf16).dtype == torch.bfloat16  # transformers' own default
    simcse = run_arguments.SimCSEArguments(pooler_type="cls")
    model = run_simcse.build_model(run_arguments.ModelArguments(model_name_or_path=bf16), simcse, tokenizer, "cpu")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    checkpoint = str(tmp_path / "checkpoint")
    model.to(torch.bfloat16).save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    model = run_simcse.build_model(run_arguments.ModelArguments(model_name_or_path=checkpoint), simcse, tokenizer,
                                   "cpu")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    for source in (bf16, checkpoint):
        assert {p.dtype for p in SimCSEModel.from_exported(source).parameters()} == {torch.float32}


def test_config_overrides_are_checked_when_the_model_is_built(encoder_dir, tokenizer):
    """A config made from a model type is made again with the overrides, so settings derived from them follow
    (ModernBERT's layer_types, one a layer: its export failed after training); overrides the encoder cannot be built
    with, or its weights loaded with, stop the run before training (they were tracebacks)."""
    build, simcse = run_simcse.build_model, run_arguments.SimCSEArguments(pooler_type="avg")
    small = "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64,max_position_embeddings=64"
    model = build(run_arguments.ModelArguments(model_type="modernbert", config_overrides=small), simcse, tokenizer,
                  "cpu")
    assert len(model.encoder.config.layer_types) == model.encoder.config.num_hidden_layers == 2
    assert model.encoder.config.vocab_size == len(tokenizer)
    with pytest.raises(SystemExit, match="config_overrides: the encoder cannot be built with 'hidden_size=33,"
                                         "num_attention_heads=2': The hidden size .33. is not a multiple of the number "
                                         "of attention heads"):
        build(run_arguments.ModelArguments(model_type="bert", config_overrides="hidden_size=33,num_attention_heads=2"),
              simcse, tokenizer, "cpu")
    with pytest.raises(SystemExit, match="config_overrides: the encoder cannot be built with 'intermediate_size=100'"):
        build(run_arguments.ModelArguments(model_name_or_path=encoder_dir, config_overrides="intermediate_size=100"),
              simcse, tokenizer, "cpu")


def test_a_decoder_pooled_over_its_tokens_is_trained_and_the_probe_of_its_first_token_changes_nothing(tokenizer):
    """The check that refuses a CLS pooler over causal attention (`check_text_encoder`) leaves a decoder to the `avg`
    pooler, and an encoder's mode and random state as they were."""
    small = "n_embd=32,n_layer=2,n_head=2,n_positions=64"
    build = run_simcse.build_model
    decoder = build(run_arguments.ModelArguments(model_type="gpt2", config_overrides=small),
                    run_arguments.SimCSEArguments(pooler_type="avg"), tokenizer, "cpu")
    decoder.check_text_encoder(tokenizer)
    bert = "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64"
    encoder = build(run_arguments.ModelArguments(model_type="bert", config_overrides=bert),
                    run_arguments.SimCSEArguments(pooler_type="cls"), tokenizer, "cpu").train()
    state = torch.get_rng_state()
    encoder.check_text_encoder(tokenizer)
    assert encoder.training and torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("model_type", ["modernbert", "roberta", "big_bird", "bert"])
def test_a_config_made_from_a_model_type_names_the_tokenizers_special_tokens(tokenizer, model_type):
    """A config made from a model type named its pretrained vocabulary's special tokens: ModernBERT's [CLS] 50281,
    beyond a trained tokenizer's pieces (transformers warned of it at every load of the export), RoBERTa's <s> 0, the
    trained tokenizer's [PAD], BigBird's [SEP] 66, one of its characters. Keys the model type leaves unset stay so."""
    small = "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64,max_position_embeddings=64"
    config = run_simcse.build_model(run_arguments.ModelArguments(model_type=model_type, config_overrides=small),
                                    run_arguments.SimCSEArguments(pooler_type="avg"), tokenizer, "cpu").encoder.config
    named = {key: getattr(config, key, None) for key in ("pad_token_id", "bos_token_id", "eos_token_id",
                                                        "cls_token_id", "sep_token_id")}
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    expected = {"modernbert": dict(bos_token_id=cls, eos_token_id=sep, cls_token_id=cls, sep_token_id=sep),
                "roberta": dict(bos_token_id=cls, eos_token_id=sep),
                "big_bird": dict(bos_token_id=cls, eos_token_id=sep, sep_token_id=sep), "bert": {}}[model_type]
    assert {key: value for key, value in named.items() if value is not None} == {
        "pad_token_id": tokenizer.pad_token_id, **expected}


def test_fine_tuning_a_sentence_transformers_model_on_another_pooling_is_warned_of(encoder_dir, tokenizer, tmp_path,
                                                                                   caplog):
    model = str(tmp_path / "st")
    SentenceTransformer(modules=[Transformer(encoder_dir), Pooling(32, pooling_mode="mean")]).save(model)
    for pooler_type, warned in (("cls_before_pooler", True), ("avg", False)):
        caplog.clear()
        run_simcse.warn_of_another_embedding(model, None, SimCSEConfig(pooler_type=pooler_type))
        assert ("whose embedding is mean pooling; this run trains and exports pooler_type 'cls_before_pooler' instead "
                "(pooler_type 'avg' trains that embedding)" in caplog.text) == warned
    caplog.clear()
    run_simcse.warn_of_another_embedding(encoder_dir, None, SimCSEConfig(pooler_type="cls"))  # no sentence-transformers
    assert not caplog.text
    # CLS pooling, then a Dense layer (as LaBSE's pipeline has): the pooling fits, the Dense is left out.
    labse_like = str(tmp_path / "dense")
    SentenceTransformer(modules=[Transformer(encoder_dir), Pooling(32, pooling_mode="cls"),
                                 Dense(32, 32, activation_function=torch.nn.Tanh())]).save(labse_like)
    run_simcse.warn_of_another_embedding(labse_like, None, SimCSEConfig(pooler_type="cls"))
    assert [r.getMessage() for r in caplog.records] == [
        f"{labse_like} is a sentence-transformers model whose embedding goes on through Dense layers after its pooling "
        "(2_Dense), which this run neither trains nor exports: it trains the encoder with pooler_type 'cls', starting "
        "from the vector before them"]


def test_a_run_from_an_earlier_runs_export_or_checkpoint_starts_from_its_embedding(smoke_run, tmp_path, caplog):
    """The smoke run trains pooler_type cls: its export folds the trained MLP into the encoder's pooler, its checkpoint
    holds it as `mlp`. A cls run from either used to get a new random MLP (and a checkpoint did not load at all)."""
    out, _ = smoke_run
    [checkpoint] = [str(out / name) for name in os.listdir(out) if name.startswith("checkpoint-")]
    tokenizer, sentences = AutoTokenizer.from_pretrained(str(out)), sample_sentences()[:12]
    evaluated = SimCSEModel.from_exported(str(out)).encode(sentences, tokenizer, max_length=32)
    for source in (str(out), checkpoint):
        caplog.clear()
        model = run_simcse.build_model(run_arguments.ModelArguments(model_name_or_path=source),
                                       run_arguments.SimCSEArguments(pooler_type="cls"), tokenizer, "cpu")
        assert torch.allclose(model.eval().encode(sentences, tokenizer, max_length=32), evaluated, atol=1e-5)
        assert not caplog.text
        run_simcse.build_model(run_arguments.ModelArguments(model_name_or_path=source),
                               run_arguments.SimCSEArguments(pooler_type="cls_before_pooler"), tokenizer, "cpu")
        assert (f"{source} was evaluated with the embedding pooler_output (outputs.pooler_output); this run trains and "
                "exports cls (pooler_type 'cls_before_pooler'), so it starts from a vector" in caplog.text)
    # As a user runs it: at learning rate 0, a run from the checkpoint (kept as the best) scores what the export did.
    with open(out / "sts_results.json") as f:
        published = json.load(f)
    config = smoke_config(tmp_path, model_type=None, train_tokenizer_vocab_size=None, config_overrides=None,
                          model_name_or_path=checkpoint, learning_rate=0.0, num_train_epochs=1, eval_strategy="no",
                          save_strategy="no", load_best_model_at_end=False, dev_data=None)
    with caplog.at_level(logging.INFO, logger="run_simcse"):
        rescored = run_simcse.main([config])
    assert "training rows: 21 (sent0, sent1, hard_neg), dev pairs: 0, test sets: {" in caplog.text  # start-up summary
    assert list(rescored) == list(published)
    for name, metrics in published.items():
        assert rescored[name] == pytest.approx(metrics, abs=1e-4)
    # A local folder is no Hub id: the card's metadata names no base_model (the Hub refuses a path there).
    with open(tmp_path / "out" / "environment.json") as f:
        assert json.load(f)["hub_base_model"] is None
    assert "base_model:" not in (tmp_path / "out" / "README.md").read_text()


def test_another_models_tokenizer_is_named_before_anything_is_written(encoder_dir, tmp_path):
    """Ids past the encoder's embeddings were an index error at the first training step (a device-side assert on a
    GPU), after the tokenization and with run_args.json written."""
    bigger = str(tmp_path / "tokenizer")
    train_wordpiece(sample_sentences() * 2, vocab_size=600).save_pretrained(bigger)
    config = smoke_config(tmp_path, model_type=None, train_tokenizer_vocab_size=None, config_overrides=None,
                          model_name_or_path=encoder_dir, tokenizer_name=bigger)
    with pytest.raises(SystemExit, match="the tokenizer has [0-9,]+ tokens and the bert encoder embeds [0-9,]+: it is "
                                         "not this encoder's tokenizer"):
        run_simcse.main([config])
    assert not (tmp_path / "out").exists()


def test_an_encoder_folder_without_tokenizer_files_is_named_before_anything_is_written(encoder_dir, tmp_path):
    """transformers loads it as a tokenizer of special tokens only: the run trained on [CLS] [UNK]... [SEP] to the end,
    and scored AVG -10.16 on the sample (a smoke-shaped probe), without a word."""
    (tmp_path / "encoder").mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(os.path.join(encoder_dir, name), tmp_path / "encoder")
    config = smoke_config(tmp_path, model_type=None, train_tokenizer_vocab_size=None, config_overrides=None,
                          model_name_or_path=str(tmp_path / "encoder"))
    with pytest.raises(SystemExit, match=r"the tokenizer of .*encoder \(BertTokenizer\) makes 100% of the tokens of "
                                         r"the training sentences \[UNK\]: it has no vocabulary beyond its 5 special "
                                         r"tokens, which is what transformers loads from a folder without tokenizer"):
        run_simcse.main([config])
    assert not (tmp_path / "out").exists()


def test_an_encoder_folder_of_another_architectures_weights_is_named_before_anything_is_written(foreign_weights_dir,
                                                                                                  tmp_path):
    config = smoke_config(tmp_path, model_type=None, train_tokenizer_vocab_size=None, config_overrides=None,
                          model_name_or_path=foreign_weights_dir)
    with pytest.raises(SystemExit, match=r"^error: model_name_or_path: .*foreign-weights\w*: 100% of the weights of "
                                         r"its bert encoder are not in its checkpoint .* start from random values; "
                                         r"name a checkpoint of this architecture$"):
        run_simcse.main([config])
    assert not (tmp_path / "out").exists()


def test_a_missing_encoder_folder_is_named_before_anything_runs(tmp_path):
    config = smoke_config(tmp_path, model_type=None, train_tokenizer_vocab_size=None,
                          model_name_or_path="/no/such/encoder")
    with pytest.raises(SystemExit,
                       match="model_name_or_path: /no/such/encoder: no such folder, and not a Hub model id"):
        run_simcse.main([config])
    # A folder that holds no model (it was the tokenizer's traceback) or no tokenizer.
    (tmp_path / "empty").mkdir()
    config = smoke_config(tmp_path, model_type=None, train_tokenizer_vocab_size=None,
                          model_name_or_path=str(tmp_path / "empty"), tokenizer_name=str(tmp_path / "empty"))
    with pytest.raises(SystemExit, match="model_name_or_path: .*empty: no config.json in this folder; tokenizer_name: "
                                         ".*empty: no tokenizer_config.json in this folder"):
        run_simcse.main([config])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("model_type, limit", [("bert", 10), ("roberta", 9)])  # RoBERTa numbers from padding id + 1
def test_max_seq_length_must_fit_the_position_embeddings(tmp_path, model_type, limit):
    """It was an index error at the first sentence longer than the positions (on a GPU, a device-side assert)."""
    shape = "hidden_size=32,num_hidden_layers=1,num_attention_heads=2,intermediate_size=64,max_position_embeddings=10"
    with pytest.raises(SystemExit, match=f"max_seq_length {limit + 1} is longer than the {limit} positions"):
        run_simcse.main([smoke_config(tmp_path, model_type=model_type, config_overrides=shape,
                                      max_seq_length=limit + 1)])
    assert not (tmp_path / "out").exists()
    # At the limit, the sample's longer sentences (up to 14 tokens) are cut to it, and the job runs through.
    config = smoke_config(tmp_path, model_type=model_type, config_overrides=shape, max_seq_length=limit,
                          num_train_epochs=1, eval_strategy="no", save_strategy="no", load_best_model_at_end=False,
                          dev_data=None)
    written = run_simcse.main([config])["sample-sts"]
    assert list(written) == METRICS
    # Re-scoring the export cuts sentences where the run did, unless told otherwise.
    rescored = sts_evaluation.main([str(tmp_path / "out"), "--set", f"sample-sts={SAMPLE}/sts.tsv"])["sample-sts"]
    assert rescored == pytest.approx(written, abs=1e-4)


def test_a_mixed_precision_run_scores_its_export_in_fp32(tmp_path):
    """bf16 (here on a CPU, as accelerate allows) trains under autocast; the final scores, the card's, are those of the
    exported fp32 weights that users load (under the training's autocast they differed by 5 points of AVG here)."""
    written = run_simcse.main([smoke_config(tmp_path, bf16=True)])["sample-sts"]
    with open(tmp_path / "out" / "trainer_state.json") as f:
        assert any("eval_cosine_spearman" in e for e in json.load(f)["log_history"])  # dev scores in bf16, as before
    rescored = sts_evaluation.main([str(tmp_path / "out"), "--set", f"sample-sts={SAMPLE}/sts.tsv"])["sample-sts"]
    assert rescored == pytest.approx(written, abs=1e-4)
    said = "| precision | bf16 (training and dev scores; test scores in fp32, as the export loads) |"
    assert said in (tmp_path / "out" / "README.md").read_text()


def test_an_encoder_without_a_pooler_cannot_keep_the_mlp_at_test_time(tmp_path):
    """ELECTRA has no dense+tanh pooler to fold the MLP into: it was a ValueError at export, after all the training."""
    shape = "hidden_size=32,embedding_size=32,num_hidden_layers=1,num_attention_heads=2,intermediate_size=64"
    with pytest.raises(SystemExit,
                       match=r"pooler_type 'cls': ElectraModel has no dense\+tanh pooler .* mlp_only_train"):
        run_simcse.main([smoke_config(tmp_path, model_type="electra", config_overrides=shape)])
    assert not (tmp_path / "out").exists()
    # With the MLP in training only, the exported ELECTRA gives the evaluated scores.
    config = smoke_config(tmp_path, model_type="electra", config_overrides=shape, mlp_only_train=True,
                          num_train_epochs=1, eval_strategy="no", save_strategy="no", load_best_model_at_end=False,
                          dev_data=None)
    written = run_simcse.main([config])["sample-sts"]
    evaluated = sts_evaluation.main([str(tmp_path / "out"), "--set", f"sample-sts={SAMPLE}/sts.tsv", "--max-length",
                                     "32"])
    assert evaluated["sample-sts"] == pytest.approx(written, abs=1e-4)


def test_rerun_same_folder_is_allowed_but_a_different_run_is_refused(tmp_path, caplog):
    config = smoke_config(tmp_path, overwrite_output_dir=False, num_train_epochs=1)
    run_simcse.main([config])
    assert "holds checkpoints" not in caplog.text
    run_simcse.main([config])  # the same run again: fine, and it says that the run had ended
    out = tmp_path / "out"
    assert (f"output_dir {out} holds this run, trained to its end (step 3); this launch trains it again from step 0 "
            f"and replaces its checkpoints, export and results (`python sts_evaluation.py {out}` scores" in caplog.text)
    assert "To continue from step" not in caplog.text
    caplog.clear()  # resumed instead, from its last step: nothing to train
    assert output_folder.resolve_resume(str(out), "last") == str(out / "checkpoint-3")
    assert (f"output_dir {out} holds this run, trained to its end (step 3); resuming from {out / 'checkpoint-3'} (step "
            "3), this launch trains no step, then evaluates and exports the run again" in caplog.text)
    # A launch stopped after its checkpoint, before the end (its checkpoint newer than the state the earlier launch
    # left at the end): the launch after it is told how to continue instead.
    os.utime(out / "checkpoint-3" / "trainer_state.json", (time.time() + 60, time.time() + 60))
    caplog.clear()
    assert not output_folder.finished_state(str(out), str(out / "checkpoint-3"))
    output_folder.warn_of_checkpoints_left(str(out))
    assert (f"output_dir {out} holds checkpoints of this run up to step 3 of 3 (checkpoint-3); this launch trains "
            "again from step 0 and replaces them. To continue from step 3 instead, set \"resume_from_checkpoint\""
            in caplog.text)
    # As is the same run with settings that leave the weights alone (e.g. to resume with a smaller evaluation batch).
    run_simcse.main([smoke_config(tmp_path, overwrite_output_dir=False, num_train_epochs=1,
                                  per_device_eval_batch_size=4, logging_steps=1, save_total_limit=2)])
    other = smoke_config(tmp_path, num_train_epochs=1, learning_rate=1e-3)
    with open(other) as f:  # overwrite_output_dir left out: its default keeps the folder's run
        config = {key: value for key, value in json.load(f).items() if key != "overwrite_output_dir"}
    with open(other, "w") as f:
        json.dump(config, f)
    with pytest.raises(SystemExit, match="holds a different run .*learning_rate.*; choose another folder or set "
                                         "overwrite_output_dir$"):
        run_simcse.main([other])


def test_a_run_with_another_tokenizer_is_another_run(tmp_path, caplog):
    """run_args.json left out every key holding "token", so a launch with another tokenizer (tokenizer_name,
    train_tokenizer_vocab_size) was taken for the run in the folder. A record of that earlier version is still this
    run's."""
    run_simcse.main([smoke_config(tmp_path, max_steps=3, overwrite_output_dir=False)])
    saved = json.loads((tmp_path / "out" / "run_args.json").read_text())
    assert saved["train_tokenizer_vocab_size"] == 600 and "tokenizer_name" in saved and "hub_token" not in saved
    with pytest.raises(SystemExit, match=r"holds a different run \(run_args.json differs in: "
                                         r"train_tokenizer_vocab_size\)"):
        run_simcse.main([smoke_config(tmp_path, max_steps=3, overwrite_output_dir=False, train_tokenizer_vocab_size=500,
                                      resume_from_checkpoint="last")])
    caplog.set_level(logging.INFO, logger="output_folder")
    # A count of the tokens seen, logged or not, trains the same weights.
    run_simcse.main([smoke_config(tmp_path, max_steps=3, overwrite_output_dir=False, resume_from_checkpoint="last",
                                  include_num_input_tokens_seen="all")])
    assert "holds this run, trained to its end (step 3)" in caplog.text
    caplog.clear()
    earlier = {k: v for k, v in saved.items() if k not in output_folder.RECORDED_SINCE_TOKENIZER_KEYS}
    (tmp_path / "out" / "run_args.json").write_text(json.dumps(earlier))
    run_simcse.main([smoke_config(tmp_path, max_steps=3, overwrite_output_dir=False, resume_from_checkpoint="last")])
    assert "holds this run, trained to its end (step 3)" in caplog.text


def test_a_run_resumes_with_its_encoder_folder_named_otherwise(encoder_dir, tmp_path, caplog):
    """The same encoder folder named with a trailing slash, relative to the working directory, or through a link was
    "a different run (run_args.json differs in: model_name_or_path)"; another folder still is."""
    run_simcse.main([smoke_config(tmp_path, **pretrained(encoder_dir), max_steps=3, overwrite_output_dir=False)])
    (tmp_path / "link").symlink_to(encoder_dir)
    caplog.set_level(logging.WARNING, logger="output_folder")
    for same in (f"{encoder_dir}/", os.path.relpath(encoder_dir), str(tmp_path / "link")):
        caplog.clear()
        run_simcse.main([smoke_config(tmp_path, **pretrained(same), max_steps=3, overwrite_output_dir=False,
                                      resume_from_checkpoint="last")])
        assert "holds this run, trained to its end (step 3)" in caplog.text
    shutil.copytree(encoder_dir, tmp_path / "copy")
    with pytest.raises(SystemExit, match=r"holds a different run \(run_args.json differs in: model_name_or_path\)"):
        run_simcse.main([smoke_config(tmp_path, **pretrained(str(tmp_path / "copy")), max_steps=3,
                                      overwrite_output_dir=False, resume_from_checkpoint="last")])


def test_resuming_another_run_is_refused_and_its_checkpoint_kept(tmp_path, caplog):
    """A launch that resumes a folder's run with other arguments (more epochs, to train longer) was told to set
    overwrite_output_dir, which then deleted the checkpoints it asked for: 'last' trained from step 0 saying the folder
    had no checkpoint, a named one stopped the run calling itself incomplete."""
    run_simcse.main([smoke_config(tmp_path, num_train_epochs=1, save_total_limit=None)])
    out, longer = tmp_path / "out", {"num_train_epochs": 2, "save_total_limit": None}
    with pytest.raises(SystemExit, match=r"holds a different run \(run_args.json differs in: num_train_epochs\), so "
                                         r"resume_from_checkpoint=last cannot continue that run: .* run_args.json"):
        run_simcse.main([smoke_config(tmp_path, overwrite_output_dir=False, resume_from_checkpoint="last", **longer)])
    named = str(out / "checkpoint-3")
    with pytest.raises(SystemExit, match=f"resume_from_checkpoint {named} is a checkpoint of the run output_dir {out} "
                                         "holds, which overwrite_output_dir would delete"):
        run_simcse.main([smoke_config(tmp_path, resume_from_checkpoint=named, **longer)])
    (tmp_path / "link").symlink_to(out)  # the same checkpoint named through a link to the folder
    with pytest.raises(SystemExit, match="which overwrite_output_dir would delete"):
        run_simcse.main([smoke_config(tmp_path, resume_from_checkpoint=str(tmp_path / "link" / "checkpoint-3"),
                                      **longer)])
    assert json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())["max_steps"] == 3
    # Overwriting with "last" (a launcher that always resumes where it can) replaces the run, and says so.
    caplog.clear()
    run_simcse.main([smoke_config(tmp_path, resume_from_checkpoint="last", **longer)])
    assert ("overwriting it, and training from step 0 (resume_from_checkpoint=last resumes only the same run)"
            in caplog.text) and "no checkpoint in" not in caplog.text
    assert json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())["max_steps"] == 6
    # A checkpoint of another folder still resumes over a run that overwriting replaces.
    other = tmp_path / "other"
    other.mkdir()
    run_simcse.main([smoke_config(other, num_train_epochs=1, save_total_limit=None)])
    run_simcse.main([smoke_config(other, resume_from_checkpoint=named, **longer)])
    assert sorted(p.name for p in (other / "out").glob("checkpoint-*")) == ["checkpoint-6"]


def test_overwriting_deletes_the_old_checkpoints_only_once_the_run_can_start(tmp_path):
    """overwrite_output_dir deleted another run's checkpoints before the model loaded; a setting the model refuses
    (or an encoder that cannot be reached) then stopped the run with those checkpoints gone."""
    run_simcse.main([smoke_config(tmp_path, num_train_epochs=1, save_total_limit=None)])
    kept = sorted(p.name for p in (tmp_path / "out").glob("checkpoint-*"))
    assert kept == ["checkpoint-3"]
    with pytest.raises(SystemExit, match="max_seq_length 2 leaves no room for a sentence"):
        run_simcse.main([smoke_config(tmp_path, max_seq_length=2)])
    assert sorted(p.name for p in (tmp_path / "out").glob("checkpoint-*")) == kept
    run_simcse.main([smoke_config(tmp_path, num_train_epochs=2, save_total_limit=None)])
    assert sorted(p.name for p in (tmp_path / "out").glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]
    assert json.loads((tmp_path / "out" / "checkpoint-3" / "trainer_state.json").read_text())["max_steps"] == 6  # new


def test_a_run_that_saved_nothing_does_not_hold_its_folder(tmp_path):
    """A run stopped before its first checkpoint (out of GPU memory at the first step, say) leaves its run_args.json
    alone; the retry with other settings (a smaller batch) was refused as 'a different run'."""

    class OutOfMemory(TrainerCallback):
        def on_step_begin(self, *args, **kwargs):
            raise RuntimeError("CUDA out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        run_simcse.main([smoke_config(tmp_path, overwrite_output_dir=False)], callbacks=[OutOfMemory()])
    assert os.listdir(tmp_path / "out") == ["run_args.json"]
    retry = smoke_config(tmp_path, overwrite_output_dir=False, num_train_epochs=1, per_device_train_batch_size=4)
    assert set(run_simcse.main([retry])) == {"sample-sts", "sample-sts-again"}
    assert json.loads((tmp_path / "out" / "run_args.json").read_text())["per_device_train_batch_size"] == 4


class OutOfMemoryAt(TrainerCallback):
    """Test helper: torch's error for a GPU out of memory, at the start of a given step."""

    def __init__(self, step):
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step + 1 == self.step:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity "
                                         "of 7.63 GiB of which 1.06 GiB is free.")


@pytest.mark.parametrize("chunk, advice", [(None, "set embedding_chunk_size, e.g. 128,"),
                                           (8, "set a smaller embedding_chunk_size than 8")])
def test_out_of_gpu_memory_says_what_fits_a_large_batch(tmp_path, chunk, advice):
    """A traceback from within the forward pass named neither the option that fits a large contrastive batch in
    memory, with the same negatives, nor the batch."""
    config = smoke_config(tmp_path, embedding_chunk_size=chunk)
    out = re.escape(str(tmp_path / "out"))
    with pytest.raises(SystemExit, match=r"^error: out of memory at step 5 of 12 \(8 training rows a step on each "
                                         rf"device\): {advice} to encode a step's sentences in chunks, with the "
                                         r"same loss and gradients .* With embedding_chunk_size or the evaluation "
                                         rf"batch changed, the run goes on: stopped at step 4 of 12; {out} holds "
                                         r"checkpoint-3 \(step 3\): add --resume_from_checkpoint last .* to continue "
                                         r"from it. torch: CUDA out of memory. Tried to allocate 2.00 GiB"):
        run_simcse.main([config], callbacks=[OutOfMemoryAt(5)])


@pytest.mark.parametrize("changes, message", [
    ({"pooler": "cls"}, r"unknown key 'pooler' \(did you mean 'pooler_type'\?\)$"),
    # Every problem at once; the two closest keys where they are about as close; no guess where none is close.
    ({"per_device_batch_size": 8, "xyzzy": 1, "bf16": "no"},
     r"unknown key 'per_device_batch_size' \(did you mean 'per_device_eval_batch_size' or "
     r"'per_device_train_batch_size'\?\); unknown key 'xyzzy'; bf16: expected bool, got \"no\"$"),
])
def test_unknown_key_is_an_error_and_nothing_is_written(tmp_path, changes, message):
    config = smoke_config(tmp_path, **changes)
    with pytest.raises(SystemExit, match=f"config.json: {message}"):
        run_simcse.main([config])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("key, prefix, hint", [
    ("save_step", "", "did you mean 'save_steps'?"),  # save_strategy is further (0.73 against 0.95): not named
    ("eval_batch", "", "did you mean 'eval_do_concat_batches' or 'eval_strategy'?"),  # eval_steps as close: two at most
    ("--temprature=0.1", "--", "did you mean '--temperature'?"),
    ("xyzzy", "", ""),
])
def test_did_you_mean_names_the_closest_known_arguments_only(key, prefix, hint):
    assert run_arguments.did_you_mean(key, prefix) == hint


def test_a_key_given_twice_in_the_json_file_is_named(tmp_path):
    """json keeps a repeated key's last value: a learning rate added at the end of a config while one is set above."""
    text = open(smoke_config(tmp_path)).read().rstrip()
    assert text.endswith("}") and '"learning_rate"' in text and '"seed"' in text
    (tmp_path / "twice.json").write_text(text[:-1] + ', "learning_rate": 1e-3, "seed": 1, "seed": 2}')
    with pytest.raises(SystemExit, match=r"twice\.json: key 'learning_rate' given 2 times, key 'seed' given 3 times: "
                                         r"keep one \(a JSON object keeps the last without a word\)$"):
        run_simcse.main([str(tmp_path / "twice.json")])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("changes, message", [
    # HfArgumentParser passes JSON values through: "false" turned bf16 on, "5e-5" failed inside the optimizer.
    ({"use_cpu": "false"}, 'use_cpu: expected bool, got "false"'),
    ({"learning_rate": "5e-5"}, 'learning_rate: expected float, got "5e-5"'),
    ({"max_seq_length": 32.0, "temperature": "0.05"},
     'max_seq_length: expected int, got 32.0; temperature: expected float'),
    ({"sentence_columns": ["sent0", 1]}, r"sentence_columns: expected list\[str\] \| None, got \[\"sent0\", 1\]"),
    # A field's choices, which the flags take only: "grouped" trained as "random", "verbose" was a KeyError.
    ({"train_sampling_strategy": "grouped", "log_level": "verbose"},
     'train_sampling_strategy: expected one of random, sequential, group_by_length, batch_rebalance, got "grouped"; '
     'log_level: expected one of detail, debug, info, warning, error, critical, passive, got "verbose"'),
    ({"activation_checkpointing_kwargs": 2},
     r"activation_checkpointing_kwargs: expected dict\[str, Any\] \| str \| None, got 2"),
    # test_data as {"name": "source"} takes sources only: a number is named as it was given, not read as a source "5".
    ({"test_data": {"sample-sts": f"{SAMPLE}/sts.tsv", "other": 5}},
     r'test_data: expected list\[str\], got \{"sample-sts": ".*sts.tsv", "other": 5\}'),
    # An object of accelerate's, which no JSON value is (a dict was a traceback from TrainingArguments.to_dict).
    ({"parallelism_config": {"tp_size": 2}},
     r'parallelism_config: expected accelerate.parallelism_config.ParallelismConfig \| None, got \{"tp_size": 2\}'),
    # A field that takes one value of another type, false (named so, not Union[str, NoneType, Literal[False]]).
    ({"trackio_static_space_id": True}, r"trackio_static_space_id: expected str \| None \| false, got true"),
])
def test_json_values_of_the_wrong_type_are_named(tmp_path, changes, message):
    config = smoke_config(tmp_path, **changes)
    with pytest.raises(SystemExit, match=f"config.json: {message}"):
        run_simcse.main([config])
    assert not (tmp_path / "out").exists()


def test_json_values_of_a_type_the_field_takes_are_accepted_as_given():
    config = {"trackio_static_space_id": False, "max_steps": 3, "learning_rate": 1, "sentence_columns": None}
    assert run_arguments.check_json_values(config, "config.json") == config


def test_text_where_a_dict_goes_is_a_json_object_or_the_path_of_a_file_of_one(tmp_path):
    """Transformers reads text starting with "{" as a JSON object, and other text as a JSON file's path
    (accelerator_config) or not at all: a traceback from the checkpointing kwargs and from a file not there; a JSON
    error named no key."""
    (tmp_path / "list.json").write_text("[1]")
    (tmp_path / "even.json").write_text('{"even_batches": false}')
    config = smoke_config(tmp_path, lr_scheduler_kwargs="{bad", activation_checkpointing=True,
                          activation_checkpointing_kwargs="every_n_layers=2",
                          accelerator_config=str(tmp_path / "list.json"))
    with pytest.raises(SystemExit, match=re.escape(
            'config.json: lr_scheduler_kwargs: "{bad" is not JSON (Expecting property name enclosed in double quotes: '
            'line 1 column 2 (char 1)); activation_checkpointing_kwargs: expected a JSON object, {"key": value, ...}, '
            f'got "every_n_layers=2"; accelerator_config: {tmp_path}/list.json (a JSON file\'s path, as text that is '
            'not an object "{...}") holds [1], not a JSON object {"key": value, ...}')):
        run_simcse.main([config])
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit, match=re.escape(
            f'error: accelerator_config: {tmp_path}/no.json (a JSON file\'s path, as text that is not an object '
            '"{...}") cannot be read (No such file or directory); lr_scheduler_kwargs: expected a JSON object')):
        run_arguments.parse_arguments(["--model_type", "bert", "--accelerator_config", str(tmp_path / "no.json"),
                                       "--lr_scheduler_kwargs", "cycles=1"])
    # Where they are right, TrainingArguments reads them as before.
    training_args = run_arguments.parse_arguments([
        smoke_config(tmp_path, lr_scheduler_type="cosine", lr_scheduler_kwargs='{"num_cycles": 0.25}'),
        "--accelerator_config", str(tmp_path / "even.json")])[3]
    assert training_args.lr_scheduler_kwargs == {"num_cycles": 0.25}
    assert training_args.accelerator_config.even_batches is False


def test_a_fields_choices_hold_for_each_item_of_a_list_and_null_is_left_to_its_type(monkeypatch):
    """As argparse takes `--key a b` where the field has choices (none of the list fields has them yet)."""
    field = next(f for f in dataclasses.fields(TrainingArguments) if f.name == "include_for_metrics")
    monkeypatch.setattr(field, "metadata", {"choices": ["inputs", "loss"]})
    given = {"include_for_metrics": ["inputs", "loss"], "ddp_backend": None, "log_level": "info"}
    assert run_arguments.check_json_values(given, "c.json") == given
    with pytest.raises(SystemExit, match=r'^error: c.json: include_for_metrics: expected one of inputs, loss, got '
                                         r'\["inputs", "x"\]$'):
        run_arguments.check_json_values({"include_for_metrics": ["inputs", "x"]}, "c.json")


@pytest.mark.parametrize("value, resume", [(True, "last"), (False, None), ("last", "last")])
def test_resume_from_checkpoint_true_in_the_json_means_the_last_checkpoint(value, resume):
    """As Trainer.train takes it; `true` was refused as "expected str | None"."""
    checked = run_arguments.check_json_values({"resume_from_checkpoint": value}, "c.json")
    assert checked == {"resume_from_checkpoint": resume}


@pytest.mark.parametrize("argv, message", [
    ([], "usage: run_simcse.py CONFIG.json"),  # it was "set exactly one of model_name_or_path ..."
    (["configs/smoke.yaml"], "configs/smoke.yaml: the arguments file is a .json"),  # these two were tracebacks
    (["--model_type", "bert", "--foo", "1"], r"error: unknown command-line argument\(s\) \(a flag is the whole key\): "
                                             r"--foo 1$"),
    (["--model_type", "bert", "--pooler", "avg"], r"--pooler avg \(--pooler: did you mean '--pooler_type'\?\)$"),
    (["--model_type", "bert", "--learning_r", "1e-3"], r"argument\(s\) \(a flag is the whole key\): --learning_r 1e-3"),
])
def test_a_command_line_without_a_json_file_is_explained(argv, message):
    with pytest.raises(SystemExit, match=message):
        run_arguments.parse_arguments(argv)


def test_script_flags_that_agree_with_the_job_are_accepted_and_those_that_do_not_are_named(tmp_path):
    """do_train/do_eval/do_predict true, as the original SimCSE scripts pass them, describe what the smoke job does."""
    config = smoke_config(tmp_path, do_train=True, do_eval=True, do_predict=True)
    assert run_arguments.parse_arguments([config])[3].do_train
    with pytest.raises(SystemExit, match="do_predict false, yet test_data is set"):
        run_arguments.parse_arguments([config, "--do_predict", "false"])
    flags = ["--model_type", "bert", "--train_tokenizer_vocab_size", "100", "--train_data", "x.tsv",
             "--output_dir", str(tmp_path / "o")]
    with pytest.raises(SystemExit, match="do_train false: run_simcse.py always trains"):
        run_arguments.parse_arguments([*flags, "--do_train", "false"])


@pytest.mark.parametrize("flags_only", [False, True])
def test_a_ddp_backend_is_left_out_of_a_process_launched_alone(tmp_path, monkeypatch, caplog, flags_only):
    """A config written for several GPUs ("ddp_backend": "nccl") run by `python run_simcse.py`: accelerate took the
    backend for a process group's, and making TrainingArguments stopped ("Default process group has not been
    initialized")."""
    for variable in ("LOCAL_RANK", "WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(variable, raising=False)
    caplog.set_level(logging.INFO, logger="run_arguments")
    argv = (["--model_type", "bert", "--train_tokenizer_vocab_size", "100", "--train_data", f"{SAMPLE}/nli.tsv",
             "--output_dir", str(tmp_path / "out"), "--use_cpu", "true", "--ddp_backend", "nccl"] if flags_only
            else [smoke_config(tmp_path, ddp_backend="nccl")])
    training_args = run_arguments.parse_arguments(argv)[3]
    assert training_args.ddp_backend is None and training_args.world_size == 1
    assert "ddp_backend nccl is for several processes; this one is alone, and trains without it" in caplog.text
    launched = {"ddp_backend": "gloo", "seed": 1}  # by torchrun or accelerate launch, several processes keep it
    assert run_arguments.without_backend_of_one_process(launched, {"LOCAL_RANK": "0", "WORLD_SIZE": "2"}) == launched
    assert run_arguments.without_backend_of_one_process(launched, {"PMI_SIZE": "2"}) == launched  # MPI on CPUs
    assert run_arguments.without_backend_of_one_process(launched, {}) == {"seed": 1}
    caplog.clear()
    assert run_arguments.without_backend_of_one_process({"seed": 1}, {}) == {"seed": 1} and not caplog.text


def test_home_relative_paths_in_the_json_are_read_from_home(encoder_dir, tmp_path, monkeypatch):
    """No shell expands a JSON value's "~": the encoder was 'no such folder, and not a Hub model id'."""
    monkeypatch.setenv("HOME", str(tmp_path))
    os.symlink(encoder_dir, tmp_path / "encoder")
    shutil.copy(f"{SAMPLE}/nli.tsv", tmp_path / "nli.tsv")
    changes = dict(model_type=None, config_overrides=None, train_tokenizer_vocab_size=None,
                   model_name_or_path="~/encoder", tokenizer_name="~/encoder",
                   resume_from_checkpoint="~/out/checkpoint-3")
    parsed = run_arguments.parse_arguments([smoke_config(tmp_path, **changes), "--train_data", "~/nli.tsv"])
    model_args, data_args, _, training_args = parsed
    assert model_args.model_name_or_path == model_args.tokenizer_name == str(tmp_path / "encoder")
    assert training_args.resume_from_checkpoint == str(tmp_path / "out" / "checkpoint-3")
    assert load_source(data_args.train_data[0])[0].num_rows == load_source(f"{SAMPLE}/nli.tsv")[0].num_rows


def test_a_json_file_with_a_byte_order_mark_is_read(tmp_path):
    """Windows Notepad may save UTF-8 with a byte-order mark: it was 'Unexpected UTF-8 BOM'."""
    config = smoke_config(tmp_path)
    with open(config, encoding="utf-8") as f:
        text = f.read()
    with open(config, "w", encoding="utf-8-sig") as f:
        f.write(text)
    assert run_arguments.parse_arguments([config])[3].output_dir == str(tmp_path / "out")


def test_flags_after_the_json_override_its_keys(tmp_path):
    """`run_simcse.py config.json --key value ...`: the flags win, typed as flags; the run records what it ran."""
    config = smoke_config(tmp_path)
    other_out = tmp_path / "other"
    run_simcse.main([config, "--num_train_epochs", "1", "--output_dir", str(other_out), "--no_gather_negatives",
                     "--test_data", f"a={SAMPLE}/sts.tsv", f"b={SAMPLE}/sts.tsv", "--mlp_only_train", "true"])
    with open(other_out / "run_args.json") as f:
        ran = json.load(f)
    assert (ran["num_train_epochs"], ran["output_dir"], ran["gather_negatives"], ran["mlp_only_train"]) == (
        1, str(other_out), False, True)
    assert ran["test_data"] == [f"a={SAMPLE}/sts.tsv", f"b={SAMPLE}/sts.tsv"]
    assert ran["learning_rate"] == 5e-4 and ran["max_seq_length"] == 32  # the JSON's own values where no flag is given
    with open(other_out / "sts_results.json") as f:
        assert list(json.load(f)) == ["a", "b"]
    with open(other_out / "trainer_state.json") as f:
        assert json.load(f)["global_step"] == 3  # 21 triplets, batch 8, one epoch
    assert not (tmp_path / "out").exists()


def test_the_launchers_precision_is_the_runs_record(tmp_path, monkeypatch, caplog):
    """`accelerate launch --mixed_precision bf16` (or an `accelerate config` file's precision) made Trainer train in
    bf16 while run_args.json and the card said fp32 (and the cuda_graphs default, which fp16 rules out, did not see
    fp16)."""
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    *_, training_args = run_arguments.parse_arguments([smoke_config(tmp_path)])
    assert training_args.bf16 and training_args.mixed_precision == "bf16" and not training_args.fp16
    assert run_arguments.run_arguments_dict(training_args)["bf16"] is True
    # The JSON's precision wins over the launcher's, as in Trainer, with a word.
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    *_, training_args = run_arguments.parse_arguments([smoke_config(tmp_path, bf16=True)])
    assert training_args.bf16 and not training_args.fp16 and training_args.mixed_precision == "bf16"
    assert "the launcher asks for mixed_precision fp16 and the arguments for bf16: training in bf16" in caplog.text
    launcher_fp16 = types.SimpleNamespace(bf16=False, fp16=False, torch_compile=False)
    run_arguments.take_launcher_settings(launcher_fp16, {"ACCELERATE_MIXED_PRECISION": "fp16"})
    assert launcher_fp16.fp16 and not launcher_fp16.bf16
    # fp8 was a traceback from accelerate once the data had loaded (neither transformer_engine nor torchao here), and
    # with one of them would have trained on swapped linear layers under a card saying fp32; the JSON's bf16 wins.
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp8")
    caplog.set_level(logging.INFO, logger="run_arguments")
    caplog.clear()
    with pytest.raises(SystemExit, match="mixed_precision fp8 .accelerate launch --mixed_precision, or the accelerate "
                                         "config.: this job trains in fp32, bf16 or fp16"):
        run_simcse.main([smoke_config(tmp_path)])
    assert not (tmp_path / "out").exists()
    assert "training in fp8" not in caplog.text and "the launcher asks" not in caplog.text
    assert run_arguments.parse_arguments([smoke_config(tmp_path, bf16=True)])[3].mixed_precision == "bf16"
    assert "the launcher asks for mixed_precision fp8 and the arguments for bf16: training in bf16" in caplog.text
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")  # what `accelerate launch` sets by default
    monkeypatch.setenv("ACCELERATE_DYNAMO_BACKEND", "NO")
    *_, training_args = run_arguments.parse_arguments([smoke_config(tmp_path)])
    assert not (training_args.bf16 or training_args.fp16 or training_args.torch_compile)


def test_the_launchers_compilation_is_the_runs_record(tmp_path, monkeypatch):
    """`accelerate launch --dynamo_backend inductor` made accelerate compile the whole model behind the arguments' back:
    beside compile_layers (or the cuda_graphs a GPU run gets by default) that was two compilations of the encoder."""
    monkeypatch.setenv("ACCELERATE_DYNAMO_BACKEND", "INDUCTOR")
    monkeypatch.setenv("ACCELERATE_DYNAMO_MODE", "max-autotune")
    *_, training_args = run_arguments.parse_arguments([smoke_config(tmp_path)])
    assert (training_args.torch_compile, training_args.torch_compile_backend, training_args.torch_compile_mode) == (
        True, "inductor", "max-autotune")
    assert run_arguments.run_arguments_dict(training_args)["torch_compile"] is True
    with pytest.raises(SystemExit, match="compile_layers .or cuda_graphs. and torch_compile both compile the encoder"):
        run_arguments.parse_arguments([smoke_config(tmp_path, compile_layers=True)])


@pytest.mark.parametrize("flags, message", [
    # No abbreviations.
    (["--learning", "1e-3"], "unknown command-line argument.s. after it .a flag is the whole key.: --learning 1e-3 "
                             ".--learning: did you mean '--learning_rate'..$"),
    # Each unknown flag with the known ones closest to it.
    (["--pooler=cls", "--xyzzy", "--temprature", "0.1"], "unknown command-line argument.s. after it .a flag is the "
     "whole key.: --pooler=cls --xyzzy --temprature 0.1 .--pooler: did you mean '--pooler_type'.. .--temprature: did "
     "you mean '--temperature'..$"),
    (["--learning_rate", "fast"], "argument --learning_rate/--learning-rate: invalid float value: 'fast'"),
    (["--use_cpu", "maybe"], "argument --use_cpu/--use-cpu: Truthy value expected: got maybe"),
    # A combination Trainer refuses, which the flags made: not the file's alone.
    (["--eval_strategy", "epoch"], "with the flags after it: --load_best_model_at_end requires the save and eval "
                                   "strategy to match"),
])
def test_bad_flags_after_the_json_are_named_and_nothing_is_written(tmp_path, flags, message):
    with pytest.raises(SystemExit, match=f"config.json:? {message}"):
        run_simcse.main([smoke_config(tmp_path), *flags])
    assert not (tmp_path / "out").exists()


def test_bf16_on_a_device_without_it_says_what_to_set(tmp_path, monkeypatch):
    """The shipped configs set bf16, which a T4, a V100 or a CPU has not: transformers' refusal said only "assign
    use_cpu", nothing of the bf16 the config asks for."""
    import transformers.training_args

    monkeypatch.setattr(transformers.training_args, "is_torch_bf16_gpu_available", lambda: False)
    hint = r"\(the configs in configs/ train in bf16, which needs an Ampere or newer GPU: add --bf16 false to train"
    config = smoke_config(tmp_path, use_cpu=False, bf16=True)
    for argv in ([config], [config, "--seed", "1"], ["--model_type", "bert", "--bf16", "true"]):
        with pytest.raises(SystemExit, match=f"support bf16/gpu.* {hint}"):
            run_arguments.parse_arguments(argv)


@pytest.mark.parametrize("setting, flag", [("compile_layers", "--compile_layers false"),
                                           ("torch_compile", r"--torch_compile false \(and no --dynamo_backend\)")])
def test_a_compiler_torch_cannot_use_says_which_setting_compiled(tmp_path, setting, flag):
    """A machine without a working compiler for torch (Inductor's C++ compiler here; on a GPU Triton's C compiler, or
    Python's headers) failed at the first step with a traceback from within torch, whatever compiled the model:
    `cuda_graphs`, on by default on one GPU, is named in no shipped config. The error names the setting and the flag
    that trains without it, and says where the run stands; torch's own message follows."""
    env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, "run_simcse.py", smoke_config(tmp_path), f"--{setting}", "true"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, env=env)
    said = run.stderr.split("\nerror: ", 1)[-1]
    assert run.returncode == 1 and re.match(
        rf"torch could not compile the encoder \({setting}\b.*\): add {flag} to train without compiling \(the same "
        r"loss, in slower steps\), or mend the cause torch gives; stopped at step 0 of 12, before any checkpoint was "
        r"saved: a new launch starts at step 0\. torch: InvalidCxxCompiler: No working C\+\+ compiler", said), said
    assert "Traceback" not in run.stderr and os.listdir(tmp_path / "out") == ["run_args.json"]


def test_the_compile_failure_names_cuda_graphs_where_they_compiled():
    """On one GPU `cuda_graphs` compiles the layers by default: its failure names it (no GPU here to fail on)."""
    model = types.SimpleNamespace(_cuda_graphs=True)
    trainer = types.SimpleNamespace(model=model, args=types.SimpleNamespace(torch_compile=False))
    assert run_simcse.compile_failure_advice(trainer).startswith(
        "torch could not compile the encoder (cuda_graphs, on by default for training on one GPU): add --cuda_graphs "
        "false to train without compiling")


def test_ddp_does_not_search_for_unused_parameters_unless_asked(tmp_path):
    """Every trainable parameter has a gradient (tests/test_distributed.py), so DDP's search for unused ones, Trainer's
    default, is left off where unset (it warned at every multi-process run that it found none); set, it is kept. A run
    recorded before (null) resumes under this default: the search changes no weight."""
    _, _, _, training = run_arguments.parse_arguments([smoke_config(tmp_path)])
    assert training.ddp_find_unused_parameters is False
    _, _, _, training = run_arguments.parse_arguments([smoke_config(tmp_path), "--ddp_find_unused_parameters", "true"])
    assert training.ddp_find_unused_parameters is True
    assert output_folder.changed_arguments({"ddp_find_unused_parameters": None, "seed": 42},
                                           {"ddp_find_unused_parameters": False, "seed": 42}) == []


def test_repeated_unsupervised_sentences_are_left_out_and_counted(tmp_path, caplog):
    """A repeat in a batch would be a false negative of itself; the log says how many were left out."""
    with open(f"{SAMPLE}/sentences.txt", encoding="utf-8") as f:
        lines = f.read().splitlines()
    (tmp_path / "s.txt").write_text("\n".join(lines + lines[:5]) + "\n", encoding="utf-8")
    args = run_arguments.DataArguments(train_data=[str(tmp_path / "s.txt")], train_format="text")
    with caplog.at_level(logging.INFO, logger="run_simcse"):
        rows = run_simcse.load_training_set(args, None)
    assert list(rows["sent0"]) == list(dict.fromkeys(lines))
    assert f"deduplicate_text: 5 of {len(lines) + 5} training sentences were repeats and are left out" in caplog.text
    args.deduplicate_text = False
    assert len(run_simcse.load_training_set(args, None)) == len(lines) + 5
    (tmp_path / "one.txt").write_text(3 * f"{lines[0]}\n", encoding="utf-8")  # one sentence, three times
    args = run_arguments.DataArguments(train_data=[str(tmp_path / "one.txt")], train_format="text")
    with pytest.raises(DataError, match=r"one.txt: 1 training row \(deduplicate_text left out 2 repeats\); a text "
                                        "row has no negatives but the other rows of its batch"):
        run_simcse.load_training_set(args, None)
    # A triplet has its hard negative: one trains.
    nli = run_arguments.DataArguments(train_data=[f"{SAMPLE}/nli.tsv"], max_train_samples=1)
    assert len(run_simcse.load_training_set(nli, None)) == 1


def test_repeated_first_sentences_of_pairs_and_triplets_are_counted(tmp_path, caplog):
    """Kept (one anchor may have several positives), but said: such rows are false negatives of each other."""
    (tmp_path / "pairs.tsv").write_text("sent0\tsent1\n가\t나\n다\t라\n가\t마\n가\t바\n", encoding="utf-8")
    args = run_arguments.DataArguments(train_data=[str(tmp_path / "pairs.tsv")], train_format="pair")
    with caplog.at_level(logging.INFO, logger="run_simcse"):
        assert len(run_simcse.load_training_set(args, None)) == 4
    assert "2 of 4 training rows have the first sentence (sent0) of an earlier row" in caplog.text
    caplog.clear()
    for train_format in ("nli", "text"):  # the shipped sample's premises are all different; text: deduplicate_text
        args = run_arguments.DataArguments(train_data=[f"{SAMPLE}/nli.tsv"], train_format=train_format,
                                           sentence_columns=["premise"])
        with caplog.at_level(logging.INFO, logger="run_simcse"):
            run_simcse.load_training_set(args, None)
    assert "of an earlier row" not in caplog.text


def test_a_dev_set_named_as_a_test_set_is_is_named_so(tmp_path):
    """'dev=sts-dev.tsv' read as a file of that name: "file not found". A URL with a query (?raw=true) is no name."""
    with pytest.raises(SystemExit, match=r"dev_data: 'dev=sample_data/sts.tsv' is one source, without a name "
                                         r"\(test_data's sets have names\): dev_data: 'sample_data/sts.tsv'\?"):
        run_simcse.main([smoke_config(tmp_path), "--dev_data", "dev=sample_data/sts.tsv"])
    assert not (tmp_path / "out").exists()
    url = "https://example.invalid/sts-dev.tsv?raw=true"
    assert run_arguments.parse_arguments([smoke_config(tmp_path), "--dev_data", url])[1].dev_data == url


def test_a_string_where_a_list_of_sources_goes_is_one_source(tmp_path):
    """"train_data": "a.tsv" read as one source (it was read as one source per character: '.' first)."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "bert", "train_tokenizer_vocab_size": 300, "output_dir": str(tmp_path),
                                "train_data": f"{SAMPLE}/nli.tsv", "test_data": f"s={SAMPLE}/sts.tsv",
                                "sentence_columns": "sentence1", "train_format": "text"}))
    _, data_args, _, _ = run_arguments.parse_arguments([str(path)])
    assert (data_args.train_data, data_args.test_data) == ([f"{SAMPLE}/nli.tsv"], [f"s={SAMPLE}/sts.tsv"])
    assert data_args.sentence_columns == ["sentence1"]
    # test_data as a JSON object of name: source, as one may well write it.
    as_object = {"s": f"{SAMPLE}/sts.tsv", "t": "u/v:w:x"}
    path.write_text(json.dumps({**json.loads(path.read_text()), "test_data": as_object}))
    assert run_arguments.parse_arguments([str(path)])[1].test_data == [f"s={SAMPLE}/sts.tsv", "t=u/v:w:x"]
    path.write_text("[1, 2]")
    with pytest.raises(SystemExit, match="config.json: expected a JSON object of arguments"):
        run_arguments.parse_arguments([str(path)])


@pytest.mark.parametrize("changes, message", [
    ({"compile_layers": True, "torch_compile": True},
     r"compile_layers \(or cuda_graphs\) and torch_compile both compile"),
    # Trainer would drop the last partial batch of the evaluations too: scores over part of each STS set.
    ({"dataloader_drop_last": True}, "dataloader_drop_last: Trainer drops the last partial batch of every evaluation"),
    ({"dataloader_drop_last": True, "test_data": []}, "dataloader_drop_last: Trainer drops the last partial batch"),
    # Halving the batch on running out of GPU memory halves the negatives too, unknown to the card.
    ({"auto_find_batch_size": True}, "auto_find_batch_size: Trainer would halve the batch on running out of memory"),
    # accelerate trained in fp32 on a CPU, under a card that said fp16.
    ({"fp16": True}, "fp16 on a CPU: accelerate has no fp16 mixed precision there and would train in fp32"),
    ({"eval_do_concat_batches": False}, "the STS correlations need every pair's score at once"),
    ({"prediction_loss_only": True}, "prediction_loss_only: true keeps the STS scores from the metrics"),
    ({"label_smoothing_factor": 0.1}, "label_smoothing_factor and label_names are for classifiers"),
    ({"train_sampling_strategy": "batch_rebalance"}, "batch_rebalance varies the batch size between processes"),
    # It was a KeyError at the first evaluation, after eval_steps of training.
    ({"metric_for_best_model": "spearman"}, "metric_for_best_model: 'spearman' is not a metric of the dev set"),
    ({"train_data": []}, "error: train_data is empty$"),
    ({"train_format": "triplets"}, r"train_format must be one of \['nli', 'pair', 'text', 'triplet'\], got 'triplets'"),
    ({"train_tokenizer_vocab_size": None},
     "a model made from a config needs tokenizer_name or train_tokenizer_vocab_size"),
    ({"model_type": None, "model_name_or_path": "klue/bert-base"},
     r"train_tokenizer_vocab_size is for models made from a config \(model_type\)"),
    ({"dev_data": None, "test_data": []},
     r"error: eval_strategy needs dev_data \(an STS set to score\); load_best_model_at_end needs dev_data$"),
    ({"max_train_samples": 0}, "max_train_samples must be at least 1, got 0"),
    # It exported the encoder untouched under a card that calls it fine-tuned.
    ({"num_train_epochs": 0}, r"num_train_epochs 0 \(and no max_steps\) trains nothing"),
    ({"num_train_epochs": 0, "max_steps": 0}, r"num_train_epochs 0 \(and no max_steps\) trains nothing"),
    # The worst checkpoint would have been kept and exported.
    ({"greater_is_better": False},
     "greater_is_better: false would keep the checkpoint with the lowest cosine_spearman"),
    # The later set replaced the earlier without a word.
    ({"test_data": [f"a={SAMPLE}/sts.tsv", f"a={SAMPLE}/other.tsv"]},
     f"test_data: two sets named 'a' \\({SAMPLE}/sts.tsv and {SAMPLE}/other.tsv\\); give each its own name"),
    # These were tracebacks from the model's config, after the data had loaded.
    ({"temperature": 0}, "temperature must be a finite number > 0, got 0"),
    # JSON's NaN and Infinity: Trainer's OverflowError once the data had loaded, a temperature that trains nothing.
    ({"temperature": float("inf"), "num_train_epochs": float("inf"), "warmup_steps": float("-inf")},
     r"config.json: temperature: expected a finite number, got inf; num_train_epochs: expected a finite number, got "
     r"inf; warmup_steps: expected a finite number, got -inf$"),
    ({"embedding_chunk_size": 0}, "embedding_chunk_size must be >= 1, got 0"),
    ({"length_buckets": 0}, "length_buckets must be >= 1, got 0"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
    ({"train_format": "text", "train_data": [f"{SAMPLE}/sentences.txt"], "per_device_train_batch_size": 1},
     "a contrastive batch of 1 row has no negatives"),
    ({"train_format": "text", "train_data": [f"{SAMPLE}/sentences.txt"], "per_device_train_batch_size": 1,
      "gather_negatives": False}, "a contrastive batch of 1 row has no negatives"),
    # The same of a training set of one row: every step a batch of it alone, loss 0, an untrained export.
    ({"train_format": "text", "train_data": [f"{SAMPLE}/sentences.txt"], "max_train_samples": 1},
     r"sentences.txt: 1 training row \(max_train_samples 1\); a text row has no negatives but the other rows"),
    ({"train_format": "pair", "sentence_columns": ["sentence1", "sentence2"], "max_train_samples": 1},
     r"1 training row \(max_train_samples 1\); a pair row has no negatives"),
    # Settings that had no effect without a word.
    ({"train_format": "pair", "sentence_columns": ["sentence1", "sentence2"], "hard_negative_weight": 1.0},
     "hard_negative_weight weighs hard negatives, which a pair training set has not"),
    ({"pooler_type": "avg", "mlp_only_train": True}, "mlp_only_train is for pooler_type cls"),
    ({"train_format": "triplet", "sentence_columns": ["sentence1", "sentence2"]},
     "sentence_columns: triplet needs 3 columns \\(as sent0, sent1, hard_neg\\), got 2: sentence1, sentence2"),
    ({"train_format": "pair", "sentence_columns": ["sentence1", "sentence2", "sentence1"]},
     "sentence_columns: pair needs 2 columns \\(as sent0, sent1\\), got 3"),
    ({"sentence_columns": ["sentence1", "sentence2", "hard"]},
     "sentence_columns names the columns of triplet, pair and text sources; an nli source is read by its premise"),
    ({"train_format": "triplet", "nli_strip_quotes": True},
     "nli_strip_quotes removes quotes from nli sources, and a triplet training set is read as it is"),
    # NaN from the first step: the NaN guard stopped the run with run_args.json written.
    ({"hard_negative_weight": float("nan")}, "hard_negative_weight: expected a finite number, got nan"),
    # The push was skipped without a word at the end of training: no results, no card.
    ({"test_data": [], "push_to_hub": True, "hub_model_id": "me/model"}, "push_to_hub needs test_data"),
    ({"push_to_hub": True}, r"push_to_hub needs hub_model_id \(<owner>/<name>\)"),
    # Tracebacks once training had begun (the optimizer's, the dataloaders', a division by zero), after run_args.json
    # was written; the first evaluation's, after eval_steps of training.
    ({"adam_beta1": 1.5}, r"adam_beta1 \(a decay rate\) must be in \[0, 1\), got 1.5"),
    ({"adam_beta2": 1.0}, r"adam_beta2 \(a decay rate\) must be in \[0, 1\), got 1.0"),
    ({"adam_epsilon": -1}, "adam_epsilon .* must be at least 0, got -1"),
    ({"dataloader_num_workers": -1}, "dataloader_num_workers .* must be at least 0, got -1"),
    ({"gradient_accumulation_steps": 0}, "gradient_accumulation_steps .* must be at least 1, got 0"),
    ({"per_device_eval_batch_size": 0}, "per_device_eval_batch_size .* must be at least 1, got 0"),
    ({"seed": -1}, r"seed \(a random seed\) must be in \[0, 4294967296\), got -1"),
    ({"data_seed": 2**32}, r"data_seed \(a random seed\) must be in \[0, 4294967296\), got 4294967296"),
    # Steps scored between saves, the best of them (step 6) without a checkpoint: the run exported the last step's
    # weights, its card saying "kept: step 6".
    ({"save_steps": 12}, "save_steps 12 with eval_steps 3: load_best_model_at_end loads the best scored step only"),
    ({"save_steps": 0}, "save_steps 0 with eval_steps 3: load_best_model_at_end"),
    # Ran without a word: negative weight decay, no training at all, evaluation at "every -1 steps".
    ({"weight_decay": -0.01}, "weight_decay .* must be at least 0, got -0.01"),
    ({"num_train_epochs": -1}, "num_train_epochs .* must be at least 0, got -1"),
    ({"eval_steps": -1}, "eval_steps .* must be at least 0, got -1"),
    # Every sentence cut to [CLS] [SEP] (NaN scores, a traceback at the card) or to nothing (0 meant no limit).
    ({"max_seq_length": 2}, "max_seq_length 2 leaves no room for a sentence: the tokenizer adds 2 special token"),
    ({"max_seq_length": 0}, "max_seq_length 0 leaves no room for a sentence"),
    ({"hub_model_id": "bad id"}, "hub_model_id: repo id 'bad id' is not of the form <owner>/<name>"),  # the card's
    # Tracebacks when training began, after the tokenization, with run_args.json written (the scheduler's arguments,
    # NEFTune's hook, which our model has no input embeddings for, the Liger package).
    ({"lr_scheduler_type": "warmup_stable_decay"},
     r"lr_scheduler_kwargs \{\}: .*missing 1 required positional argument: 'num_decay_steps'"),
    ({"lr_scheduler_type": "polynomial", "lr_scheduler_kwargs": {"power": 2.0, "powr": 1}},
     "lr_scheduler_kwargs .*unexpected keyword argument 'powr'"),
    ({"optim": "adamw_torch_xla"}, "optim adamw_torch_xla: Trainer failed to import syncfree AdamW from torch_xla"),
    # The card said "constant_with_warmup num_cycles 3" of a schedule built without them.
    ({"lr_scheduler_type": "constant", "lr_scheduler_kwargs": {"min_lr_rate": 0.1}},
     r'lr_scheduler_kwargs \{"min_lr_rate": 0.1\}: Trainer builds lr_scheduler_type constant without them'),
    ({"lr_scheduler_type": "constant_with_warmup", "lr_scheduler_kwargs": {"num_cycles": 3}},
     r'lr_scheduler_kwargs \{"num_cycles": 3\}: Trainer builds lr_scheduler_type constant_with_warmup without them'),
    # Passed over by Trainer without a word, and named by the card: adamw_torch reads no optim_args, sgd its own only.
    ({"optim": "adamw_torch", "optim_args": "amsgrad=True"},
     "optim_args amsgrad: Trainer's adamw_torch optimizer does not read it, so the run would train as if unset"),
    ({"optim": "sgd", "optim_args": "momentun=0.9, nesterov=true, dampning=0.1"},
     "optim_args momentun, dampning: Trainer's sgd optimizer does not read them"),
    # Trainer builds these without warmup_steps: the card said "constant, warm-up 6 steps" of a constant rate.
    ({"lr_scheduler_type": "constant", "warmup_steps": 6},
     "lr_scheduler_type constant takes no warm-up .* warmup_steps 6 would not happen, .*: use constant_with_warmup, or "
     "leave warmup_steps 0"),
    ({"lr_scheduler_type": "reduce_lr_on_plateau", "warmup_steps": 0.1},
     "lr_scheduler_type reduce_lr_on_plateau takes no warm-up .* warmup_steps 0.1 would not happen"),
    # Stepped on the dev score, higher-is-better: "min" lowers the rate as the score rises.
    ({"lr_scheduler_type": "reduce_lr_on_plateau", "lr_scheduler_kwargs": {"mode": "min"}},
     'lr_scheduler_type reduce_lr_on_plateau with lr_scheduler_kwargs mode "min" would lower the learning rate while '
     "the dev score rises"),
    # Trained on without a word, other batches at each step than the seed's (smoke: AVG 40.58 against 43.37).
    ({"dataloader_num_workers": 2, "dataloader_in_order": False},
     "dataloader_in_order: false hands the steps their batches in the order DataLoader workers finish them"),
    # Trained without a word on gradients of other dropout masks than the loss's (smoke: AVG 41.04 against 43.37).
    ({"activation_checkpointing": True, "activation_checkpointing_kwargs": {"preserve_rng_state": False}},
     "preserve_rng_state false recomputes each checkpointed layer under new dropout masks"),
    # Tracebacks at the first step.
    ({"activation_checkpointing": True, "activation_checkpointing_kwargs": {"every_n_layers": 0}},
     "every_n_layers .* must be a whole number of at least 1"),
    ({"activation_checkpointing": True, "activation_checkpointing_kwargs": {"every_n_layers": 2.5}},
     "every_n_layers .* must be a whole number of at least 1"),
    ({"activation_checkpointing": True, "activation_checkpointing_kwargs": {"offload": True}},
     "offload holds the saved activations in pinned host memory, which needs a GPU"),
    # Text, not a boolean: "false" is true to Python.
    ({"activation_checkpointing": True, "activation_checkpointing_kwargs": {"offload": "false"}},
     r'activation_checkpointing_kwargs \{"offload": "false"\}: offload must be true or false'),
    ({"activation_checkpointing": True, "activation_checkpointing_kwargs": {"use_reentrant": False, "bogus": 1}},
     r"neither transformers \(every_n_layers, offload\) nor torch's checkpoint \(.*use_reentrant\) takes bogus"),
    ({"activation_checkpointing": True, "activation_checkpointing_kwargs": {"debug": True}},
     # torch's message; 2.15's names a third argument ("Passing `context_fn`, `debug`, or `respect_saved_...`").
     r"Passing `context_fn`(,| or) `debug`.* is only supported when use_reentrant=False"),
    ({"activation_checkpointing": True,
      "activation_checkpointing_kwargs": {"use_reentrant": False, "determinism_check": "always"}},
     "determinism_check should be one of"),
    ({"neftune_noise_alpha": 5.0}, "neftune_noise_alpha: NEFTune adds noise to the input embeddings"),
    ({"use_liger_kernel": True}, "use_liger_kernel: Liger's kernels replace layers of decoder models"),
    ({"accelerator_config": {"dispatch_batches": True}},
     "accelerator_config.dispatch_batches: true has the main process load every batch and hand the others slices"),
    ({"accelerator_config": {"use_seedable_sampler": False}},
     "accelerator_config.use_seedable_sampler: false draws each epoch's order from torch's random state"),
    # A resumed run trained its epoch's first batches again and never its last ones.
    ({"ignore_data_skip": True}, "ignore_data_skip: a run resumed within an epoch would train that epoch's first"),
    # Trainer made num_steps gradient_accumulation_steps after the checks and the record: the card said 1; other
    # keys than the plugin's were a traceback once the data had loaded.
    ({"accelerator_config": {"gradient_accumulation_kwargs": {"num_steps": 2, "sync_each_batch": True}}},
     "^error: accelerator_config.gradient_accumulation_kwargs.num_steps: Trainer would take it as "
     "gradient_accumulation_steps after this job had checked and recorded those; set gradient_accumulation_steps "
     "instead$"),
    ({"accelerator_config": {"gradient_accumulation_kwargs": {"steps": 2}}},
     r"accelerator_config.gradient_accumulation_kwargs \{\"steps\": 2\}: .*unexpected keyword argument 'steps'"),
    # A ZeroDivisionError at the first evaluation; an AssertionError at the first step.
    ({"eval_accumulation_steps": 0}, r"eval_accumulation_steps \(evaluation batches between transfers\) must be at "
                                     "least 1, got 0"),
    ({"dataloader_num_workers": 1, "dataloader_prefetch_factor": 0},
     r"dataloader_prefetch_factor \(batches each worker loads ahead\) must be at least 1, got 0"),
    ({"debug": "tpu_metrics_debug"}, "debug tpu_metrics_debug prints torch_xla's metrics, and this machine has no "
                                     "torch_xla"),  # a NameError at the first evaluation
    ({"preprocessing_num_workers": -1},
     r"preprocessing_num_workers \(tokenization processes\) must be at least 0, got -1"),
    ({"dataloader_multiprocessing_context": "spawn"},
     "dataloader_multiprocessing_context spawn: DataLoader takes a way of starting worker processes only where it has "
     "some"),
    # accelerate refused the backend once the data and the model had loaded, torch the mode at the first step.
    ({"torch_compile": True, "torch_compile_backend": "nosuch"},
     "torch_compile_backend nosuch: accelerate compiles with one of eager, aot_eager, inductor, "),
    ({"torch_compile": True, "torch_compile_mode": "fast"},
     "torch_compile_backend inductor with torch_compile_mode fast: Unrecognized mode=fast, should be one of: default"),
    # The final evaluation cast the model to bf16 in place: the export was written in bf16 under a card saying fp32.
    ({"bf16_full_eval": True}, "bf16_full_eval and fp16_full_eval: Trainer would cast the model to half precision"),
    # Replaced by cosine_spearman without a word (as it must be where it is Trainer's default).
    ({"metric_for_best_model": "eval_loss"}, "metric_for_best_model: loss, on the dev set, is the mean squared error"),
    # TrainingArguments keeps these for scripts; ignored, "do_train": false trained all the same.
    ({"hub_strategy": "all_checkpoints"}, "hub_strategy all_checkpoints: checkpoints never go to the Hub"),
    ({"train_data": [f"{SAMPLE}/nli.tsv", f"{SAMPLE}/../sample_data/nli.tsv"]},
     "train_data names '.*/sample_data/../sample_data/nli.tsv' twice: each of its rows would be trained on twice"),
    ({"dropout": 0.1, "config_overrides": "hidden_size=64,num_hidden_layers=2,num_attention_heads=2,"
      "intermediate_size=128,max_position_embeddings=128,hidden_dropout_prob=0.2"},
     "dropout and config_overrides both set hidden_dropout_prob: set it in one of them"),
    # DistilBERT's dropout keys are `dropout` and `attention_dropout`: BERT's, added to its config, are read by nothing.
    ({"model_type": "distilbert", "dropout": 0.1,
      "config_overrides": "dim=64,n_layers=2,n_heads=2,hidden_dim=128,max_position_embeddings=128"},
     "dropout: a distilbert config has no hidden_dropout_prob / attention_probs_dropout_prob to set; leave dropout "
     "unset and set the encoder's own dropout keys in config_overrides"),
    ({"do_train": False}, "do_train false: run_simcse.py always trains"),
    # A Hub model's branch for a model made from a config; the note on the tokenizer is tokenizer_revision's alone.
    ({"model_revision": "v1"}, "model_revision v1: it names a branch, tag or commit of a Hub model, and no "
     "model_name_or_path is given$"),
    # A decoder's first token sees only itself: a GPT-2 trained an epoch into one embedding for every sentence ("the
    # final model's similarities are ... all the same"); T5 and ViT were tracebacks at the first forward pass.
    ({"model_type": "gpt2", "pooler_type": "cls_before_pooler", "config_overrides": "n_embd=64,n_layer=2,n_head=2"},
     "pooler_type 'cls_before_pooler': the first token of GPT2Model sees none of the tokens after it"),
    ({"model_type": "t5", "pooler_type": "cls_before_pooler", "config_overrides": "d_model=64,num_layers=2,d_ff=128"},
     "T5Model is an encoder-decoder model, whose last_hidden_state is its decoder's"),
    ({"model_type": "vit", "config_overrides": "hidden_size=64,num_hidden_layers=2,intermediate_size=128"},
     "ViTModel does not embed token ids: it is not a text encoder"),
    # A traceback from transformers listing its 700 model types, after the data had loaded.
    ({"model_type": "bertt"}, "model_type 'bertt' is not a model type transformers knows \\(did you mean 'bert'"),
    ({"do_eval": False}, "do_eval false, yet eval_strategy is 'steps'"),
    ({"do_predict": True, "test_data": []}, "do_predict true, yet test_data is empty"),
    # Read, tokenized and never scored: the card said "final model" of a run whose config named a dev set.
    ({"eval_strategy": "no", "save_strategy": "no", "load_best_model_at_end": False},
     'dev_data is never scored with eval_strategy "no": set eval_strategy "steps"'),
])
def test_settings_that_would_misbehave_are_errors(tmp_path, changes, message):
    config = smoke_config(tmp_path, **changes)
    with pytest.raises(SystemExit, match=message):
        run_simcse.main([config])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("changes", [
    # num_train_epochs 0 trains nothing only where max_steps does not set the steps either.
    {"num_train_epochs": 0, "max_steps": 1},
    {"seed": 0, "data_seed": 0},
    # Saves between evaluations where no best checkpoint is loaded (0: the last step's only, as Trainer does).
    {"save_steps": 0, "load_best_model_at_end": False},
    {"save_steps": 12, "load_best_model_at_end": False},
    {"save_strategy": "best"},
    {"dropout": 0.0},
    # The encoder's dropout set in config_overrides alone.
    {"config_overrides": "hidden_size=64,num_hidden_layers=2,num_attention_heads=2,intermediate_size=128,"
     "max_position_embeddings=128,hidden_dropout_prob=0.2"},
    # One process: no other process's batches to line up with, or to split a batch with.
    {"accelerator_config": {"even_batches": False, "split_batches": True,
                            "gradient_accumulation_kwargs": {"sync_each_batch": True}}},
    # Two rows a batch: each has a negative.
    {"train_format": "text", "train_data": [f"{SAMPLE}/sentences.txt"], "per_device_train_batch_size": 2},
    # The schedulers without a warm-up, without one; with a warm-up, those with one.
    {"lr_scheduler_type": "constant", "warmup_steps": 0},
    {"lr_scheduler_type": "constant_with_warmup", "warmup_steps": 6},
    {"lr_scheduler_type": "reduce_lr_on_plateau", "lr_scheduler_kwargs": {"mode": "max", "patience": 0}},
    # optim_args the optimizer reads, a default value too.
    {"optim": "sgd", "optim_args": "momentum=0.9,nesterov=false"},
    {"optim": "adagrad", "optim_args": "lr_decay=0.1,eps=1e-10"},
    # Without workers, or with one, batches come in the order drawn; without activation checkpointing, its kwargs are
    # not read.
    {"dataloader_in_order": False},
    {"dataloader_in_order": False, "dataloader_num_workers": 1},
    {"activation_checkpointing_kwargs": {"preserve_rng_state": False}},
    {"activation_checkpointing": True, "activation_checkpointing_kwargs": {"every_n_layers": 2, "use_reentrant": True}},
    {"activation_checkpointing": True,
     "activation_checkpointing_kwargs": {"use_reentrant": False, "debug": True, "determinism_check": "none"}},
])
def test_settings_beside_those_refused_are_accepted(tmp_path, changes):
    training_args = run_arguments.parse_arguments([smoke_config(tmp_path, **changes)])[3]  # no SystemExit
    assert all(getattr(training_args, key) == value for key, value in changes.items()
               if hasattr(training_args, key) and not isinstance(value, dict))  # a dict is made a config object


def test_a_training_set_of_two_rows_trains_with_the_card_saying_every_step_holds_both(tmp_path):
    """One row is refused (no negatives); two are the fewest that train, each the other's negative, as the card says."""
    run_simcse.main([smoke_config(tmp_path, train_format="pair", sentence_columns=["sentence1", "sentence2"],
                                  max_train_samples=2, max_steps=1)])
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "| contrastive batch | 8 rows (but the training set has only 2 rows, which every step holds) |" in card


def test_a_process_that_sees_several_gpus_is_refused(tmp_path, monkeypatch):
    """Trainer would wrap the model in nn.DataParallel, which splits each batch and its in-batch negatives."""
    monkeypatch.setattr(TrainingArguments, "n_gpu", property(lambda self: 1))
    assert run_arguments.parse_arguments([smoke_config(tmp_path)])[3].n_gpu == 1
    monkeypatch.setattr(TrainingArguments, "n_gpu", property(lambda self: 2))
    with pytest.raises(SystemExit, match="2 GPUs are visible to one process; launch one process per GPU"):
        run_arguments.parse_arguments([smoke_config(tmp_path)])


def test_one_row_a_process_is_a_contrastive_batch_where_processes_gather_their_negatives(tmp_path, monkeypatch):
    """2 processes of 1 row each: a batch of 2 rows with gather_negatives (the default), of 1 row without it."""
    monkeypatch.setattr(TrainingArguments, "world_size", property(lambda self: 2))
    text = {"train_format": "text", "train_data": [f"{SAMPLE}/sentences.txt"], "per_device_train_batch_size": 1}
    assert run_arguments.parse_arguments([smoke_config(tmp_path, **text)])[3].world_size == 2
    with pytest.raises(SystemExit, match="a contrastive batch of 1 row has no negatives"):
        run_arguments.parse_arguments([smoke_config(tmp_path, **text, gather_negatives=False)])


@pytest.mark.parametrize("module, availability, changes, message", [
    # Trainer made the reporting callbacks after the data had loaded and the model was built (a traceback), and looked
    # for the optimizer's package when training began, after the tokenization, with run_args.json written.
    ("transformers.integrations.integration_utils", "is_tensorboard_available", {"report_to": "tensorboard"},
     "report_to tensorboard: TensorBoardCallback requires tensorboard to be installed"),
    ("transformers.trainer_optimizer", "is_bitsandbytes_available", {"optim": "adamw_bnb_8bit"},
     "optim adamw_bnb_8bit: You need to install `bitsandbytes`"),
])
def test_a_package_that_is_not_installed_is_named_before_anything_loads(tmp_path, monkeypatch, module, availability,
                                                                        changes, message):
    monkeypatch.setattr(importlib.import_module(module), availability, lambda: False)
    data_loaded = []
    monkeypatch.setattr(run_simcse, "load_training_set", lambda *args: data_loaded.append(args))
    with pytest.raises(SystemExit, match=message):
        run_simcse.main([smoke_config(tmp_path, **changes)])
    assert not data_loaded and not (tmp_path / "out").exists()


@pytest.mark.parametrize("changes, message", [
    ({}, "cuda_graphs needs a CUDA device; this run's device is cpu"),
    ({"embedding_chunk_size": 8}, "cuda_graphs does not go with embedding_chunk_size"),
    ({"gradient_accumulation_steps": 2}, "cuda_graphs does not go with gradient_accumulation_steps > 1"),
    ({"activation_checkpointing": True}, "cuda_graphs does not go with activation_checkpointing"),
    ({"gradient_checkpointing": True}, "cuda_graphs does not go with activation_checkpointing"),  # its old name
])
def test_cuda_graphs_settings_that_cannot_work_are_errors(tmp_path, changes, message):
    config = smoke_config(tmp_path, cuda_graphs=True, **changes)
    with pytest.raises(SystemExit, match=message):
        run_simcse.main([config])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("training, simcse, conflict", [
    ({}, {}, None),  # the published settings, on a GPU
    ({"device": types.SimpleNamespace(type="cpu")}, {}, "needs a CUDA device"),
    ({"gradient_accumulation_steps": 2}, {}, "gradient_accumulation_steps > 1"),
    ({"activation_checkpointing": True}, {}, "activation_checkpointing"),
    ({}, {"embedding_chunk_size": 64}, "embedding_chunk_size"),
])
def test_cuda_graphs_conflict_on_a_gpu_with_each_setting_that_cannot_work_alone(training, simcse, conflict):
    """On a CUDA device each setting cuda_graphs cannot work with is one conflict of its own, and a run with none of
    them has none (on a CPU every run has the device's, which the test above cannot tell from the others)."""
    training_args = types.SimpleNamespace(**{"device": types.SimpleNamespace(type="cuda"),
                                             "gradient_accumulation_steps": 1, "activation_checkpointing": False,
                                             **training})
    simcse_args = types.SimpleNamespace(**{"embedding_chunk_size": None, **simcse})
    conflicts = run_arguments.cuda_graphs_conflicts(training_args, simcse_args)
    assert len(conflicts) == (conflict is not None) and all(conflict in c for c in conflicts)


@pytest.mark.parametrize("environment, changes, named", [
    ({"ACCELERATE_USE_FSDP": "true"}, {}, "FSDP"),
    ({"ACCELERATE_USE_DEEPSPEED": "true"}, {}, "DeepSpeed"),  # was a traceback: DeepSpeed needs its package
    ({"ACCELERATE_USE_MEGATRON_LM": "true"}, {}, "Megatron-LM"),  # as DeepSpeed
    ({}, {"fsdp": "full_shard"}, "FSDP"),
    ({}, {"deepspeed": {"zero_optimization": {"stage": 2}}}, "DeepSpeed"),
    # accelerate launch --use_parallelism_config --parallelism_config_tp_size 2 (was a traceback from torch.distributed)
    ({"ACCELERATE_USE_PARALLELISM_CONFIG": "true", "PARALLELISM_CONFIG_TP_SIZE": "2",
      "PARALLELISM_CONFIG_DP_REPLICATE_SIZE": "2"}, {}, r"parallelism_config \(tp_size\)"),
])
def test_fsdp_and_deepspeed_are_refused_before_anything_runs(tmp_path, monkeypatch, environment, changes, named):
    """An accelerate config of distributed type FSDP or DeepSpeed reaches Trainer through the environment; the export
    and the gathered negatives are written for a whole model in every process and were never tried under either."""
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    config = smoke_config(tmp_path, **changes)
    with pytest.raises(SystemExit, match=f"^error: {re.escape(config)}: {named} .asked for by the arguments or by the "
                                         "accelerate config.: this job trains with DDP only"):
        run_simcse.main([config])
    (tmp_path / "ds.json").write_text(json.dumps(changes.get("deepspeed", {})))
    flags = {"fsdp": ["--fsdp", "full_shard"], "deepspeed": ["--deepspeed", str(tmp_path / "ds.json")]}
    with pytest.raises(SystemExit, match=f"error: {named} "):  # the flags-only command line too
        run_simcse.main(["--model_type", "bert", "--output_dir", str(tmp_path / "out"),
                         *[flag for key in changes for flag in flags[key]]])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("environment", [
    # Data parallel alone (replicated: DDP), sizes of 1, or sizes without the switch, which accelerate then ignores.
    {"ACCELERATE_USE_PARALLELISM_CONFIG": "true", "PARALLELISM_CONFIG_DP_REPLICATE_SIZE": "2"},
    {"ACCELERATE_USE_PARALLELISM_CONFIG": "true", "PARALLELISM_CONFIG_TP_SIZE": "1", "PARALLELISM_CONFIG_CP_SIZE": "1"},
    {"PARALLELISM_CONFIG_TP_SIZE": "2"},
])
def test_a_parallelism_config_that_only_replicates_the_model_is_accepted(environment):
    assert run_arguments.sharding_problem(False, False, environment) is None


def test_cuda_graphs_default_is_on_only_where_it_was_tested_to_work(monkeypatch, caplog):
    """Unset `cuda_graphs` means on for one process on a CUDA device with packed batches (and Triton), off for every
    setting it does not go with or was not tried with; a CPU run (the smoke job, every test here) has it off."""
    import types

    import torch.utils._triton

    monkeypatch.setattr(torch.utils._triton, "has_triton", lambda: True)
    monkeypatch.setattr(run_simcse, "triton_build_problem", lambda: None)
    gpu = dict(device=torch.device("cuda"), world_size=1, fp16=False, torch_compile=False,
               gradient_accumulation_steps=1, activation_checkpointing=False, debug=[])
    simcse = dict(compile_layers=False, embedding_chunk_size=None)

    def default(packed=True, **changes):
        training = types.SimpleNamespace(**{**gpu, **{k: v for k, v in changes.items() if k in gpu}})
        args = types.SimpleNamespace(**{**simcse, **{k: v for k, v in changes.items() if k in simcse}})
        return run_simcse.cuda_graphs_by_default(training, args, packed)

    assert default()
    for changes in ({"device": torch.device("cpu")}, {"world_size": 2}, {"fp16": True}, {"torch_compile": True},
                    {"gradient_accumulation_steps": 2}, {"activation_checkpointing": True}, {"compile_layers": True},
                    {"embedding_chunk_size": 64}, {"packed": False}, {"debug": [DebugOption.UNDERFLOW_OVERFLOW]}):
        assert not default(**changes), changes
    monkeypatch.setattr(torch.utils._triton, "has_triton", lambda: False)
    assert not default()
    # Where only a conflicting setting keeps it off, the log says which (activation checkpointing costs the graphs).
    monkeypatch.setattr(torch.utils._triton, "has_triton", lambda: True)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="run_simcse"):
        assert not default(activation_checkpointing=True) and not default(fp16=True)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("cuda_graphs left off")]
    assert len(said) == 1 and said[0].endswith("cuda_graphs does not go with activation_checkpointing "
                                               "(pytorch/pytorch#154306); set one of them (embedding_chunk_size also "
                                               "trains large batches in little memory)"), said
    # Where Triton cannot build its modules (no C compiler, say), on by default would stop the first step: off, said.
    monkeypatch.setattr(run_simcse, "triton_build_problem", lambda: "no C compiler: ...")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="run_simcse"):
        assert not default()
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "cuda_graphs left off: Triton, which compiles them, cannot build its modules here (no C compiler: ...); with "
        "them, steps of about 26 ms against 50 ms eager on an H100 (bench/RESULTS.md). \"cuda_graphs\": true asks for "
        "them anyway (where Triton's cache holds its modules already)"]


def test_triton_build_problem_names_what_triton_would_miss(tmp_path, monkeypatch):
    """Triton compiles C modules with $CC, else gcc or clang, against Python's headers; either missing is named."""
    import shutil
    import sysconfig

    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert run_simcse.triton_build_problem() == "no C compiler: CC is not set and neither gcc nor clang is on the PATH"
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}" if name == "clang" else None)
    monkeypatch.setattr(sysconfig, "get_paths", lambda scheme=None: {"include": str(tmp_path)})
    assert run_simcse.triton_build_problem() == (f"no Python.h in {tmp_path}: Python's development headers (e.g. "
                                                 "python3-dev) are not installed")
    (tmp_path / "Python.h").write_text("")
    assert run_simcse.triton_build_problem() is None
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("CC", "/opt/cc")
    assert run_simcse.triton_build_problem() is None


def test_large_training_sets_are_tokenized_by_one_process_a_usable_cpu(monkeypatch):
    """From TOKENIZE_IN_PARALLEL_FROM rows: one process a CPU this process may use (its affinity, its quota; not the
    machine's count), at most 8; below it one process (None); preprocessing_num_workers, when set, always. The card's
    hardware row names those CPUs too (it gave the machine's count alone)."""
    from joblib.externals.loky.backend import context  # where joblib.cpu_count reads the cgroup's cpu.max

    large = run_arguments.TOKENIZE_IN_PARALLEL_FROM
    monkeypatch.delenv("LOKY_MAX_CPU_COUNT", raising=False)
    monkeypatch.setattr(context, "_cpu_count_cgroup", lambda machine: machine)  # no container quota
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert run_simcse.tokenization_processes(large, None) == 3
    assert run_simcse.tokenization_processes(large - 1, None) is None
    assert run_simcse.tokenization_processes(10, 4) == 4 and run_simcse.tokenization_processes(large, 1) == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(32)), raising=False)
    assert run_simcse.tokenization_processes(large, None) == 8
    monkeypatch.setattr(context, "_cpu_count_cgroup", lambda machine: 2)  # cpu.max "200000 100000": 2 CPUs' time
    assert run_simcse.tokenization_processes(large, None) == 2
    monkeypatch.setattr(context, "_cpu_count_cgroup", lambda machine: machine)
    monkeypatch.setenv("LOKY_MAX_CPU_COUNT", "5")  # joblib's own cap
    assert run_simcse.tokenization_processes(large, None) == 5
    # The CPU row where the run trained on the CPU, on a GPU machine too ("use_cpu": true; it said "1 x H100").
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    on_cpu, on_gpu = (types.SimpleNamespace(world_size=1, device=torch.device(kind)) for kind in ("cpu", "cuda"))
    cpu = run_simcse.describe_environment(on_cpu, 1)["hardware"]
    assert cpu.startswith("CPU (") and cpu.endswith(", 5 of the machine's 64 cores)")
    assert run_simcse.describe_environment(on_gpu, 1)["hardware"] == "1 x NVIDIA H100 80GB HBM3"
    monkeypatch.delenv("LOKY_MAX_CPU_COUNT")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert run_simcse.describe_environment(on_cpu, 1)["hardware"].endswith(", 64 cores)")


def test_worker_processes_are_left_out_where_their_own_library_puts_its_sockets_too_deep(monkeypatch, caplog):
    """Tokenization's processes (multiprocess, datasets') and DataLoader workers (multiprocessing, torch's) each by
    where their library puts its sockets: CPython's multiprocessing takes /tmp where TMPDIR is too long (gh-132124),
    and multiprocess may not."""
    def arguments():
        return types.SimpleNamespace(dataloader_num_workers=4, dataloader_persistent_workers=True,
                                     dataloader_prefetch_factor=2, dataloader_multiprocessing_context="spawn")

    short, deep = "/tmp/pymp-abcdefgh", "/" + "d" * 80 + "/pymp-abcdefgh"  # with the socket: 36 and 113 bytes
    caplog.set_level(logging.WARNING, logger="run_simcse")
    for pool_folder, loader_folder, expected, loader_workers, said in [
        (short, short, (2, 2), 4, None),
        (deep, short, (None, None), 4, "tokenizing in this process"),
        (short, deep, (2, 2), 0, "loading batches in this process"),
        (deep, deep, (None, None), 0, "tokenizing and loading batches in this process"),
    ]:
        monkeypatch.setattr(multiprocess.util, "get_temp_dir", lambda folder=pool_folder: folder)
        monkeypatch.setattr(multiprocessing.util, "get_temp_dir", lambda folder=loader_folder: folder)
        caplog.clear()
        training = arguments()
        assert run_simcse.worker_processes(training, 10, 2) == expected
        assert (training.dataloader_num_workers, training.dataloader_persistent_workers,
                training.dataloader_prefetch_factor, training.dataloader_multiprocessing_context) == (
            (4, True, 2, "spawn") if loader_workers else (0, False, None, None))
        assert (said in caplog.text) if said else not caplog.text, (pool_folder, loader_folder, caplog.text)
    # Nothing asked of a library whose workers the run does not want.
    monkeypatch.setattr(multiprocess.util, "get_temp_dir", lambda: pytest.fail("asked"))
    monkeypatch.setattr(multiprocessing.util, "get_temp_dir", lambda: pytest.fail("asked"))
    training = arguments()
    training.dataloader_num_workers = 0
    assert run_simcse.worker_processes(training, 10, None) == (None, None)


def test_a_temporary_folder_too_long_for_a_socket_trains_without_worker_processes(tmp_path):
    """A worker process talks through a Unix socket in TMPDIR, whose path may have 75 bytes at the most: with 76,
    datasets' process pool failed ("AF_UNIX path too long", then an EOFError), and the first training step waited for
    ever for the batches of DataLoader workers that could not send them. The run warns and uses no worker process."""
    folder = tmp_path / ("t" * max(1, 76 - len(os.fsencode(str(tmp_path))) - 1))
    folder.mkdir()
    config = smoke_config(tmp_path, preprocessing_num_workers=2, dataloader_num_workers=2,
                          dataloader_persistent_workers=True, dataloader_prefetch_factor=4,
                          dataloader_multiprocessing_context="spawn")
    with open(tmp_path / "stderr", "w+") as stderr:  # a file: worker processes left behind hold a pipe open
        run = subprocess.run([sys.executable, "run_simcse.py", config], cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=stderr, env=dict(os.environ, TMPDIR=str(folder)), timeout=300)
        stderr.seek(0)
        said = stderr.read()
    assert run.returncode == 0, said[-3000:]
    assert f"WARNING __main__: the temporary folder {folder} has too long a path ({len(str(folder))} bytes) for the " \
           "sockets of worker processes (at most 75): tokenizing and loading batches in this process" in said
    assert json.loads((tmp_path / "out" / "environment.json").read_text())["tokenization_processes"] == 1


@pytest.mark.parametrize("bad, message", [
    ("sentence1\tsentence2\tgold_label\n전제\t가설\tentailment\n전제\t가설2\tunsure\n",
     "bad.tsv, line 3: unknown NLI label"),
    ("sentence1\tsentence2\n전제\t가설\n", "bad.tsv: no label column"),
])
def test_bad_training_data_stops_before_anything_is_written(tmp_path, bad, message):
    (tmp_path / "bad.tsv").write_text(bad, encoding="utf-8")
    config = smoke_config(tmp_path, train_data=[str(tmp_path / "bad.tsv")])
    with pytest.raises(SystemExit, match=message):
        run_simcse.main([config])
    assert not (tmp_path / "out").exists()


def pretrained(model: str) -> dict:
    """smoke_config changes that train `model` (a pretrained encoder folder) instead of an encoder made from a
    config."""
    return dict(model_type=None, config_overrides=None, train_tokenizer_vocab_size=None, model_name_or_path=model)


def test_an_encoder_that_does_not_load_is_named_without_a_traceback(encoder_dir, tmp_path):
    """A folder without its weights (a Hub id out of reach, offline and not cached, fails the same way): it was
    transformers' OSError in a traceback."""
    folder = tmp_path / "no-weights"
    shutil.copytree(encoder_dir, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(SystemExit, match=f"error: {folder}: .*model.safetensors"):
        run_simcse.main([smoke_config(tmp_path, **pretrained(str(folder)))])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage, said", [
    ("pointer", "model.safetensors: a Git LFS pointer, not the file (the repository was cloned without Git LFS): run "
                "`git lfs install && git lfs pull` in {folder}, or name the model by its Hub id"),
    ("cut", "model.safetensors: could not be read (SafetensorError: "),
    ("link", "model.safetensors: a link to {folder}/blobs/gone, which is not there"),  # a Hub cache emptied under it
])
def test_weights_cloned_without_lfs_or_cut_short_are_named_before_anything_is_written(encoder_dir, tmp_path, damage,
                                                                                       said):
    """A Hub model cloned with git but without Git LFS holds pointers in place of its weights: transformers stopped,
    in both commands, with a traceback ending "Error while deserializing header: header too large" (a link to nothing:
    "no file named model.safetensors")."""
    folder = tmp_path / "cloned"
    shutil.copytree(encoder_dir, folder)
    weights = folder / "model.safetensors"
    if damage == "pointer":
        weights.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 123456\n")
    elif damage == "link":
        weights.unlink()
        weights.symlink_to(folder / "blobs" / "gone")
    else:
        weights.write_bytes(weights.read_bytes()[:weights.stat().st_size // 2])
    message = re.escape(f"{folder}/{said.format(folder=folder)}")
    with pytest.raises(SystemExit, match=f"error: model_name_or_path: {message}"):
        run_simcse.main([smoke_config(tmp_path, **pretrained(str(folder)))])
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit, match=f"error: {message}"):
        sts_evaluation.main([str(folder), "--set", f"s={SAMPLE}/sts.tsv"])


@pytest.mark.parametrize("model, tokenizer_name, message", [
    ("mistyped/encoder", None, "mistyped/encoder: no such folder here, so read as a Hub id: "),
    ("{encoder}", "mistyped/tokenizer", "{encoder} / mistyped/tokenizer: mistyped/tokenizer: no such folder here, so "
                                        "read as a Hub id: "),
])
def test_a_mistyped_folder_is_said_to_be_read_as_a_hub_id(encoder_dir, tmp_path, monkeypatch, model, tokenizer_name,
                                                          message):
    """A relative path is shaped like a Hub id (owner/name); offline, transformers said only that it could not reach
    the Hub."""
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # no retries against the real Hub
    changes = {**pretrained(model.format(encoder=encoder_dir)), "tokenizer_name": tokenizer_name}
    with pytest.raises(SystemExit, match=re.escape(f"error: {message.format(encoder=encoder_dir)}")):
        run_simcse.main([smoke_config(tmp_path, **changes)])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("inside, key, said, from_config", [
    ("", "model_name_or_path", "is output_dir itself, whose files the run's export replaces", False),
    ("checkpoint-3", "tokenizer_name", "is a checkpoint folder of output_dir {out}, where the run deletes checkpoints",
     False),
    # The tokenizer of an encoder made from a config (no model folder to look at first).
    ("checkpoint-3", "tokenizer_name", "is a checkpoint folder of output_dir {out}", True),
])
def test_an_encoder_in_the_folder_the_run_replaces_is_refused_before_anything_is_written(encoder_dir, tmp_path, inside,
                                                                                          key, said, from_config):
    """Trained into its own folder (overwrite_output_dir), an encoder was replaced by the export, or deleted with the
    checkpoints of the run it came from, and the card named a base model that was no longer there."""
    out = tmp_path / "out"
    shutil.copytree(encoder_dir, out / inside)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    model = {"train_tokenizer_vocab_size": None} if from_config else pretrained(str(encoder_dir))
    changes = {**model, key: str(out / inside)}
    with pytest.raises(SystemExit, match=re.escape(f"error: {key} {out / inside} {said.format(out=out)}")):
        run_simcse.main([smoke_config(tmp_path, **changes)])
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_an_encoder_beside_the_folder_the_run_replaces_is_no_problem(tmp_path):
    """Only output_dir itself and its checkpoint-* folders are refused as model or tokenizer folders: not a checkpoint
    of another folder, nor a folder of another name inside output_dir."""
    for folder in (tmp_path / "other" / "checkpoint-3", tmp_path / "out" / "tokenizer", tmp_path / "out-checkpoint-3"):
        folder.mkdir(parents=True)
        model_args = types.SimpleNamespace(model_name_or_path=str(folder), tokenizer_name=str(folder))
        assert run_arguments.sources_in_output_dir(model_args, str(tmp_path / "out")) == [], folder
    model_args = types.SimpleNamespace(model_name_or_path=None, tokenizer_name=str(tmp_path / "out" / "checkpoint-3"))
    (tmp_path / "out" / "checkpoint-3").mkdir()
    assert len(run_arguments.sources_in_output_dir(model_args, str(tmp_path / "out"))) == 1


# Run in a fresh process whose Hub client fails to write as a full disk (the weights' download: no room for them) or a
# read-only one (the cache's folders) does; the rest of the download is real, from the stand-in.
FAILING_HUB_CACHE = """
import errno, os, runpy, sys
import huggingface_hub.file_download as download
failure, hub_cache, script, *argv = sys.argv[1:]
if failure == "full":
    real_get = download.http_get
    def http_get(url, temp_file, *args, **kwargs):
        if url.endswith(".safetensors"):
            temp_file.write(b"half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_get(url, temp_file, *args, **kwargs)
    download.http_get = http_get
else:
    real_makedirs = os.makedirs
    def makedirs(path, *args, **kwargs):
        if os.fspath(path).startswith(hub_cache):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
        return real_makedirs(path, *args, **kwargs)
    os.makedirs = makedirs
sys.argv = [script, *argv]
runpy.run_path(script, run_name="__main__")
"""


@pytest.mark.parametrize("script, failure", [("run_simcse.py", "full"), ("run_simcse.py", "read-only"),
                                             ("sts_evaluation.py", "full")])
def test_a_hub_cache_without_room_or_the_right_to_write_is_named(encoder_dir, hub, tmp_path, script, failure):
    """A Hub model downloaded into a full or read-only cache was said to be "no such folder here, so read as a Hub id:
    [Errno 28] No space left on device" (the evaluation command: a traceback, once the weights' download began)."""
    hub.add_repo("kor/encoder", folder_files(Path(encoder_dir)))
    cache = tmp_path / "home" / "hub"
    if script == "run_simcse.py":
        argv = [smoke_config(tmp_path, **pretrained("kor/encoder"))]
    else:
        argv = ["kor/encoder", "--set", f"sample={SAMPLE}/sts.tsv"]
    proc = cli(["-c", FAILING_HUB_CACHE, failure, str(cache), script, *argv], hub, tmp_home=tmp_path / "home")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    if failure == "full":
        said = re.escape(f"error: kor/encoder: could not be downloaded: No space left on device in the Hub cache, "
                         f"{cache}; free space there, or set HF_HUB_CACHE (or HF_HOME) to a folder on a larger disk")
    else:  # the folder refused: the cache's own, or one inside it
        said = (re.escape(f"error: kor/encoder: could not be downloaded: Read-only file system: {cache}") + r"\S*"
                + re.escape(f" (the Hub cache, {cache}); set HF_HUB_CACHE (or HF_HOME) to a folder this user may write "
                            "to"))
    assert re.fullmatch(said, proc.stderr.strip().splitlines()[-1])
    assert not (tmp_path / "out").exists()


def test_an_encoder_with_its_own_code_is_refused_before_anything_is_written(custom_code_encoder_dir, tmp_path):
    with pytest.raises(SystemExit, match=f"error: {custom_code_encoder_dir} ships its own model code"):
        run_simcse.main([smoke_config(tmp_path, **pretrained(custom_code_encoder_dir))])
    assert not (tmp_path / "out").exists()


def test_a_built_in_encoder_is_trained_without_the_code_its_folder_ships(encoder_dir, tmp_path):
    """A BERT whose config.json also names code of its own (auto_map): trained as the built-in class, the shipped code
    never run (it would raise)."""
    folder = tmp_path / "encoder"
    shutil.copytree(encoder_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "shipped.Config", "AutoModel": "shipped.Model"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "shipped.py").write_text('raise RuntimeError("the shipped code ran")\n')
    results = run_simcse.main([smoke_config(tmp_path, **pretrained(str(folder)))])
    assert set(results) == {"sample-sts", "sample-sts-again"}


def test_a_training_file_without_rows_stops_before_anything_is_written(tmp_path):
    """It reached Trainer, whose sampler stopped with num_samples=0, leaving run_args.json behind."""
    (tmp_path / "pairs.tsv").write_text("sent0\tsent1\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=f"^error: {re.escape(str(tmp_path / 'pairs.tsv'))}: no rows$"):
        run_simcse.main([smoke_config(tmp_path, train_data=[str(tmp_path / "pairs.tsv")], train_format="pair")])
    assert not (tmp_path / "out").exists()


def test_bad_sts_score_and_non_empty_folder(tmp_path, caplog):
    (tmp_path / "sts.tsv").write_text("sentence1\tsentence2\tscore\n가\t나\t7\n", encoding="utf-8")
    config = json.loads(open(smoke_config(tmp_path)).read())
    config["test_data"] = [f"bad={tmp_path}/sts.tsv"]
    (tmp_path / "c.json").write_text(json.dumps(config))
    with pytest.raises(SystemExit, match="sts.tsv, line 2: STS score 7.0 is outside 0-5"):
        run_simcse.main([str(tmp_path / "c.json")])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="not empty and holds no run_args.json"):
        run_simcse.main([smoke_config(tmp_path, overwrite_output_dir=False)])
    assert os.listdir(tmp_path / "out") == ["notes.txt"]
    # overwrite_output_dir wrote the export over files of no run: a project's README.md with `--output_dir .`.
    (tmp_path / "out" / "README.md").write_text("# a project")
    (tmp_path / "out" / "1_Pooling").mkdir()
    with pytest.raises(SystemExit, match=re.escape(f"output_dir {tmp_path / 'out'} holds no run_args.json, so no run "
                                                   "of this job, but files that the run would write over (1_Pooling, "
                                                   "README.md): overwrite_output_dir replaces a run's folder only")):
        run_simcse.main([smoke_config(tmp_path, overwrite_output_dir=True)])
    assert sorted(os.listdir(tmp_path / "out")) == ["1_Pooling", "README.md", "notes.txt"]
    assert (tmp_path / "out" / "README.md").read_text() == "# a project"
    # Files the run does not write (one named like a module folder among them): it writes beside them, and says so.
    (tmp_path / "out" / "README.md").unlink()
    (tmp_path / "out" / "1_Pooling").rmdir()
    (tmp_path / "out" / "1_notes.txt").write_text("mine too")
    run_simcse.main([smoke_config(tmp_path, overwrite_output_dir=True)])
    assert (f"output_dir {tmp_path / 'out'} is not empty and holds no run_args.json; writing the run beside its files "
            "(none of them a file the run writes)") in caplog.text
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"
    assert (tmp_path / "out" / "1_notes.txt").read_text() == "mine too"
    # An output_dir that is a file, or below one: it was Trainer's traceback once the data and the model had loaded.
    for output_dir, named in (("out/notes.txt", ""), ("out/notes.txt/run", f": {tmp_path}/out/notes.txt")):
        with pytest.raises(SystemExit, match=f"output_dir {tmp_path}/{output_dir}{named} is a file, not a folder"):
            run_simcse.main([smoke_config(tmp_path, output_dir=str(tmp_path / output_dir))])
    # A link to nothing on the way: Trainer's makedirs stopped with FileExistsError in a traceback.
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    with pytest.raises(SystemExit, match=re.escape(f"output_dir {tmp_path}/gone/run: {tmp_path}/gone is a link to "
                                                   f"{tmp_path}/nowhere, which is not there")):
        run_simcse.main([smoke_config(tmp_path, output_dir=str(tmp_path / "gone" / "run"))])


def test_packing_an_unsupported_encoder_stops_before_anything_is_written(tmp_path):
    config = smoke_config(tmp_path, model_type="deberta-v2", pack_sequences=True)
    with pytest.raises(SystemExit, match="pack_sequences: not available for a deberta-v2 encoder"):
        run_simcse.main([config])
    assert not (tmp_path / "out").exists()
    # Asked of an encoder that packs (every other test leaves it to the default), it trains.
    run_simcse.main([smoke_config(tmp_path, pack_sequences=True, max_steps=1, test_data=[])])
    with open(tmp_path / "out" / "run_args.json") as f:
        assert json.load(f)["pack_sequences"] is True


def test_compiled_layers_of_a_one_layer_encoder_are_refused_before_the_folder_is_touched(tmp_path, monkeypatch):
    """compile_layers on an encoder with no list of repeated layers (one layer) was compile_layers' ValueError, in a
    traceback, after the earlier run's checkpoints in output_dir had been deleted. The cuda_graphs a GPU run gets by
    default, which compiled them too, stays off for it."""
    run_simcse.main([smoke_config(tmp_path, max_steps=1, test_data=[])])
    checkpoints = sorted(path.name for path in (tmp_path / "out").glob("checkpoint-*"))
    assert checkpoints
    one = "hidden_size=64,num_hidden_layers=1,num_attention_heads=2,intermediate_size=128,max_position_embeddings=128"
    said = "the bert encoder has no list of repeated layers to compile (one layer, say); set it to false"
    with pytest.raises(SystemExit, match=re.escape(f"error: compile_layers: {said}") + "$"):
        run_simcse.main([smoke_config(tmp_path, config_overrides=one, compile_layers=True, max_steps=1, test_data=[])])
    assert sorted(path.name for path in (tmp_path / "out").glob("checkpoint-*")) == checkpoints
    model = SimCSEModel.from_encoder(DistilBertModel(DistilBertConfig(vocab_size=64, dim=32, n_layers=1, n_heads=2,
                                                                      hidden_dim=64)))
    asked = types.SimpleNamespace(pack_sequences=None, compile_layers=False, cuda_graphs=True)
    with pytest.raises(SystemExit, match=re.escape("error: cuda_graphs: the distilbert encoder has no list")):
        run_simcse.check_trainable(model, None, asked, 32, None)
    monkeypatch.setattr(run_simcse, "cuda_graphs_by_default", lambda *args: True)  # as on a GPU
    run_simcse.main([smoke_config(tmp_path, config_overrides=one, max_steps=1, test_data=[])])


@pytest.mark.parametrize("world_size", [1, 2])
def test_cuda_graphs_across_processes_are_said_to_be_untried(monkeypatch, caplog, world_size):
    """cuda_graphs under DDP has never run (no GPU has been lent for it): a run of several processes is told so, and
    how to turn it off; one process, or layers compiled without graphs, are not. Each says what compiles."""
    compiled = []
    model = types.SimpleNamespace(compile_layers=lambda cuda_graphs: compiled.append(cuda_graphs) or 3)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: world_size)
    caplog.set_level(logging.INFO, logger="run_simcse")
    untried = "cuda_graphs with several processes (DDP) has not been tried; if a step fails, drop it"
    said = "3 encoder layers compile at their first call (the first steps wait for the compiler)"
    for graphs in (True, False):
        caplog.clear()
        run_simcse.compile_for_training(model, types.SimpleNamespace(compile_layers=not graphs, cuda_graphs=graphs))
        assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == (
            [untried] if graphs and world_size > 1 else [])
        assert caplog.records[-1].getMessage() == said + (
            ', as CUDA graphs ("cuda_graphs": false turns them off)' if graphs else "")
    assert compiled == [True, False]
    run_simcse.compile_for_training(model, types.SimpleNamespace(compile_layers=False, cuda_graphs=False))
    assert compiled == [True, False]  # neither asked: nothing compiled


def test_the_underflow_overflow_detector_runs_and_reports(tmp_path, caplog):
    """`debug: "underflow_overflow"` (transformers' detector, hooks on every module): it stopped the first step with
    NotImplementedError, unable to read sdpa attention's boolean masks; the encoder then attends eagerly. It trains,
    and where the activations overflow, the detector is what stops the run, with its report."""
    caplog.set_level(logging.INFO)
    run_simcse.main([smoke_config(tmp_path, debug="underflow_overflow", max_steps=2, test_data=[])])
    assert "the encoder attends with 'eager' attention in place of 'sdpa' (debug underflow_overflow" in caplog.text
    assert (tmp_path / "out" / "model.safetensors").is_file()
    with open(smoke_config(tmp_path)) as f:
        huge = "initializer_range=1e36," + json.load(f)["config_overrides"]  # activations past float32's range
    with pytest.raises(ValueError, match="DebugUnderflowOverflow: inf/nan detected"):
        run_simcse.main([smoke_config(tmp_path, debug="underflow_overflow", config_overrides=huge, max_steps=2,
                                      output_dir=str(tmp_path / "overflow"), test_data=[])])


def test_a_dev_score_scheduler_lowers_the_rate_when_the_score_stops_rising(tmp_path):
    """reduce_lr_on_plateau (greedy too) steps on the dev metric, higher-is-better, with Trainer's default mode "min":
    the smoke run's rate was cut tenfold after its second evaluation, whose score had risen, and again after its third.
    With mode "max" (set, and recorded for the card) it holds while the score rises (patience 0: it would be cut at the
    first evaluation that is not a new best)."""
    run_simcse.main([smoke_config(tmp_path, lr_scheduler_type="reduce_lr_on_plateau",
                                  lr_scheduler_kwargs={"patience": 0})])
    with open(tmp_path / "out" / "trainer_state.json") as f:
        history = json.load(f)["log_history"]
    rates = [e["learning_rate"] for e in history if "learning_rate" in e]
    scores = [e["eval_cosine_spearman"] for e in history if "eval_cosine_spearman" in e]
    assert len(rates) == len(scores) == 4
    for i in range(1, 4):  # logged at the step of evaluation i, which follows the scheduler's step on score i - 1
        expected = rates[i - 1] * (1 if scores[i - 1] > max(scores[:i - 1], default=-1) else 0.1)
        assert rates[i] == pytest.approx(expected), (rates, scores)
    with open(tmp_path / "out" / "run_args.json") as f:
        assert json.load(f)["lr_scheduler_kwargs"] == {"patience": 0, "mode": "max"}
    # The card says what the rate followed.
    assert ("| learning rate | 0.0005 (reduce_lr_on_plateau of the dev cosine_spearman, patience 0, mode max, "
            "warm-up 0) |" in (tmp_path / "out" / "README.md").read_text())
