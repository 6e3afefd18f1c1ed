"""Model card and Hub push, through the real huggingface_hub client against a local stand-in Hub."""

import contextlib
import errno
import fnmatch
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import types

import httpx2
import pytest
import transformers
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.errors import HfHubHTTPError
from transformers import BertConfig, BertModel, ElectraConfig, ElectraModel

import run_arguments
import run_simcse
import sts_evaluation
from conftest import ROOT, SAMPLE, TOKEN, cli, standin_env
from data_loading import rows_digest
from hub.__main__ import main as hub_cli
from hub.card import (cited_works, eval_results, hardware, render_card, results_table, software, training_data,
                      training_settings, training_time)
from hub.model_dir import METRIC_NAMES, PUBLISHED_PATTERNS, ModelDirError, load_results, published_files, whole_file
from hub.push import (Pushed, PushError, check_push_access, check_repo_id, check_revision, describe_push, push,
                      stopped_push)
from modeling_simcse import SimCSEModel
from sigterm import Terminated
from test_run_simcse import smoke_config

EXPECTED_FILES = {
    "1_Pooling/config.json", "2_Dense/config.json", "2_Dense/model.safetensors", "README.md", "config.json",
    "config_sentence_transformers.json", "dev_scores.png", "model.safetensors", "modules.json",
    "sentence_bert_config.json", "sts_results.json", "tokenizer.json", "tokenizer_config.json",
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hubrun")
    run_simcse.main([smoke_config(tmp)])
    return str(tmp / "out")


def test_card_metadata_and_numbers_come_from_the_results(model_dir, tmp_path):
    card = ModelCard.load(os.path.join(model_dir, "README.md"))
    with open(os.path.join(model_dir, "sts_results.json")) as f:
        results = json.load(f)
    data = card.data
    assert data.language == "ko" and data.pipeline_tag == "sentence-similarity" and data.license == "cc-by-sa-4.0"
    assert {"sentence-transformers", "transformers"} <= set(data.tags) and data.library_name == "sentence-transformers"
    by_metric = {(r.dataset_name, r.metric_type): r.metric_value for r in data.eval_results}
    assert len(by_metric) == 9 * len(results)
    assert by_metric[("sample-sts", "spearman_cosine")] == round(results["sample-sts"]["cosine_spearman"], 2)
    assert by_metric[("sample-sts", "avg_8")] == round(results["sample-sts"]["avg"], 2)
    row = next(line for line in card.text.splitlines() if "(this model)" in line)
    assert [float(x.strip("* ")) for x in row.split("|")[2:-1]] == [round(v, 2) for v in results["sample-sts"].values()]
    assert "pooler_output" in card.text and "![dev score over training steps](dev_scores.png)" in card.text
    with open(os.path.join(model_dir, "dev_scores.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "| epochs | 4 (12 steps) |" in card.text and "| temperature | 0.05 |" in card.text
    assert "fine-tuned with\nsupervised SimCSE (in-batch negatives plus one hard negative per sentence, temperature " \
           "0.05)." in card.text
    assert data.datasets is None and "datasets:" not in card.content  # trained on files, scored on no KLUE set
    smoke_rows = run_simcse.load_training_set(run_arguments.parse_arguments([smoke_config(tmp_path)])[1], None)
    assert f"| training rows | {len(smoke_rows)} (SHA-256 `{rows_digest(smoke_rows)}`) |" in card.text


@pytest.mark.parametrize("gather, contrastive", [
    (True, "256 rows, gathered from 8 processes"),
    (False, "32 rows, per device (negatives not gathered across processes)"),
])
def test_card_says_how_many_rows_are_negatives_for_each_other(gather, contrastive):
    args = {"per_device_train_batch_size": 32, "gradient_accumulation_steps": 2, "gather_negatives": gather,
            "num_train_epochs": 3}
    rows = dict(training_settings(args, {"processes": 8}, {}, {"epoch": 0.4, "global_step": 7}, {}))
    assert rows["batch"] == "512 (32 per device x 8 process(es) x 2 accumulation)"
    assert rows["contrastive batch"] == contrastive  # accumulation adds rows a step, not negatives
    for train_rows, fewer in ((300, ""), (256, ""), (255, "255 rows"), (1, "1 row")):  # a training set under a batch
        small = dict(training_settings(args, {"processes": 8, "train_rows": train_rows}, {}, {}, {}))
        assert small["contrastive batch"] == contrastive + (
            f" (but the training set has only {fewer}, which every step holds)" if fewer else "")
    assert rows["epochs"] == "0.4 (7 steps)"  # what ran (max_steps may stop a run early), not num_train_epochs
    # Counts as the rest of the card writes them (the training time's "4,831 s"): the published KorNLI epoch.
    epoch = dict(training_settings({**args, "train_rows_sha256": "ab"}, {"processes": 8, "train_rows": 277811}, {},
                                   {"epoch": 1.0, "global_step": 1086}, {}))
    assert epoch["training rows"] == "277,811 (SHA-256 `ab`)" and epoch["epochs"] == "1 (1,086 steps)"
    # Trainer clips where max_grad_norm > 0 only: -1.0 was "clipped at -1.0".
    for clip, said in ((1.0, "gradient norm clipped at 1.0"), (0.0, "no gradient clipping"),
                       (-1.0, "no gradient clipping"), (None, "no gradient clipping")):
        rows = dict(training_settings({**args, "optim": "adamw_torch", "weight_decay": 0.01, "max_grad_norm": clip},
                                      {}, {}, {}, {}))
        assert rows["optimizer"] == f"adamw_torch (weight decay 0.01, {said})"
    # Below 1, Trainer takes a share of the steps.
    for warmup, said in ((0, "0"), (0.1, "0.1 of the steps"), (1, "1 step"), (50, "50 steps")):
        rows = dict(training_settings({**args, "learning_rate": 5e-5, "lr_scheduler_type": "linear",
                                       "warmup_steps": warmup}, {}, {}, {}, {}))
        assert rows["learning rate"] == f"5e-05 (linear, warm-up {said})"
    # Settings that change the training and were missing from the card: the scheduler's and the optimizer's own
    # arguments, and batches grouped by length (which changes which sentences are negatives for each other).
    rows = dict(training_settings({**args, "learning_rate": 5e-5, "lr_scheduler_type": "cosine_with_min_lr",
                                   "lr_scheduler_kwargs": {"min_lr_rate": 0.1}, "warmup_steps": 0,
                                   "optim": "adamw_torch", "weight_decay": 0.0, "adam_beta1": 0.9, "adam_beta2": 0.98,
                                   "adam_epsilon": 1e-6, "max_grad_norm": 1.0,
                                   "train_sampling_strategy": "group_by_length"}, {}, {}, {}, {}))
    assert rows["learning rate"] == "5e-05 (cosine_with_min_lr min_lr_rate 0.1, warm-up 0)"
    assert rows["optimizer"] == ("adamw_torch (weight decay 0.0, beta2 0.98, epsilon 1e-06, gradient norm clipped at "
                                 "1.0)")
    assert rows["contrastive batch"] == "32 rows, grouped by length"
    rows = dict(training_settings({**args, "train_sampling_strategy": "sequential"}, {}, {}, {}, {}))
    assert rows["contrastive batch"] == "32 rows, in the data's order (not shuffled)"  # the card said nothing of it
    # Schedulers stepped on the dev score name it; a run's from before the job set mode "max" had the default, "min".
    for kwargs, said in (({"patience": 2, "mode": "max"}, "patience 2, mode max"), (None, "mode min")):
        rows = dict(training_settings({**args, "learning_rate": 5e-5, "lr_scheduler_type": "reduce_lr_on_plateau",
                                       "lr_scheduler_kwargs": kwargs, "metric_for_best_model": "avg"}, {}, {}, {}, {}))
        assert rows["learning rate"] == f"5e-05 (reduce_lr_on_plateau of the dev avg, {said}, warm-up 0)"
    assert dict(training_settings({**args, "seed": 42, "data_seed": 7}, {}, {}, {}, {}))["seed"] == \
        "42 (data order: data_seed 7)"
    assert dict(training_settings({**args, "seed": 42, "data_seed": None}, {}, {}, {}, {}))["seed"] == "42"
    # Each process of a run in several draws its dropout masks from a seed of its own; a run from before did not.
    for environment, said in (({"processes": 4, "dropout_seed_per_process": True},
                               "42 (data order: data_seed 7; dropout masks: 42 + the process's index, 0 to 3)"),
                              ({"processes": 4}, "42 (data order: data_seed 7)")):
        assert dict(training_settings({**args, "seed": 42, "data_seed": 7}, environment, {}, {}, {}))["seed"] == said
    rows = dict(training_settings({**args, "optim": "sgd", "optim_args": "momentum=0.9", "adam_beta2": 0.98,
                                   "weight_decay": 0.0, "max_grad_norm": 0.0}, {}, {}, {}, {}))
    assert rows["optimizer"] == "sgd (weight decay 0.0, momentum 0.9, no gradient clipping)"
    # A run before the test scores were the fp32 export's scored every set under its autocast.
    for bf16, environment, said in ((False, {}, "fp32"), (True, {}, "bf16 (training and every score)"),
                                    (True, {"test_scores_precision": "fp32"},
                                     "bf16 (training and dev scores; test scores in fp32, as the export loads)")):
        assert dict(training_settings({**args, "bf16": bf16}, environment, {}, {}, {}))["precision"] == said
    for train_format, weight in (("nli", "0.0"), ("triplet", "1.5"), ("pair", None), ("text", None)):  # none to weigh
        rows = dict(training_settings({**args, "train_format": train_format,
                                       "hard_negative_weight": float(weight or 0)}, {}, {}, {}, {}))
        assert rows.get("hard negative weight") == weight


@pytest.mark.parametrize("changes, said", [
    ({}, "`a.tsv`, `k/nli:snli:train` (nli)"),
    ({"nli_strip_quotes": True}, '`a.tsv`, `k/nli:snli:train` (nli: every `"` removed, as the SimCSE-KO code did)'),
    ({"train_format": "text", "sentence_columns": ["premise"]},
     "`a.tsv`, `k/nli:snli:train` (text: column `premise`, repeated sentences left out)"),
    ({"train_format": "text", "deduplicate_text": False}, "`a.tsv`, `k/nli:snli:train` (text)"),
    ({"train_format": "pair", "sentence_columns": ["q", "p"]}, "`a.tsv`, `k/nli:snli:train` (pair: columns `q`, `p`)"),
    # The columns read, as environment.json records them: the card named those of sentence_columns.
    ({"train_format": "text", "sentence_columns": ["premise"],
      "environment": {"train_columns": {"a.tsv": ["sentence1"], "k/nli:snli:train": ["premise"]}}},
     "`a.tsv`, `k/nli:snli:train` (text: column `sentence1` of `a.tsv` and `premise` of `k/nli:snli:train`, repeated "
     "sentences left out)"),
    ({"train_format": "text", "environment": {"train_columns": {"a.tsv": ["text"], "k/nli:snli:train": ["text"]}}},
     "`a.tsv`, `k/nli:snli:train` (text: column `text`, repeated sentences left out)"),
    ({"train_format": "pair", "environment": {"train_columns": {"a.tsv": ["anchor", "positive"],
                                                                "k/nli:snli:train": ["sent0", "sent1"]}}},
     "`a.tsv`, `k/nli:snli:train` (pair: columns `anchor`, `positive` of `a.tsv` and `sent0`, `sent1` of "
     "`k/nli:snli:train`)"),
])
def test_card_says_what_the_run_made_of_its_training_sources(changes, said):
    """Which column of a source an unsupervised run read (a KorNLI premise or hypothesis), and the quotes or repeats it
    took out, were in no row of the card."""
    args = {"train_data": ["a.tsv", "k/nli:snli:train"], "train_format": "nli", "sentence_columns": None,
            "nli_strip_quotes": False, "deduplicate_text": True}
    changes = dict(changes)  # the parameter itself stays as it is
    environment = changes.pop("environment", None)
    assert training_data({**args, **changes}, environment) == said


@pytest.mark.parametrize("args, state, said", [
    ({"eval_strategy": "steps", "eval_steps": 100}, {"eval_steps": 100}, "every 100 steps"),
    ({"eval_strategy": "steps", "eval_steps": 0.1}, {"eval_steps": 109}, "every 109 steps (0.1 of the run)"),
    ({"eval_strategy": "epoch", "eval_steps": 500}, {"eval_steps": 500}, "every epoch"),
    ({"eval_strategy": "steps", "eval_steps": 1}, {"eval_steps": 1}, "every step"),  # 1 is a step, not the run
    ({"eval_strategy": "steps", "eval_steps": 0.01}, {"eval_steps": 1}, "every step (0.01 of the run)"),
])
def test_card_says_how_often_the_dev_set_was_scored(args, state, said):
    """Trainer reads an eval_steps below 1 as a share of the run's steps (trainer_state.json holds the steps it used),
    and eval_strategy epoch leaves eval_steps unused."""
    args = {**args, "load_best_model_at_end": True, "metric_for_best_model": "cosine_spearman", "dev_data": "dev.tsv",
            "per_device_train_batch_size": 8}
    assert dict(training_settings(args, {}, {}, state, {}))["model selection"] == \
        f"best cosine_spearman on `dev.tsv`, {said}"
    assert dict(training_settings({**args, "load_best_model_at_end": False}, {}, {}, state, {}))["model selection"] == \
        "final model"


def test_card_says_when_the_dev_set_never_chose_or_the_untrained_encoder_scored_higher():
    """A run that ended before its first dev evaluation exports its final model; an evaluation at step 0
    (eval_on_start) has no checkpoint to keep, so the kept one may score below the encoder before training."""
    args = {"load_best_model_at_end": True, "metric_for_best_model": "eval_cosine_spearman", "dev_data": "dev.tsv",
            "eval_strategy": "steps", "eval_steps": 50, "per_device_train_batch_size": 8}
    never = {"eval_steps": 50, "global_step": 12, "log_history": [{"step": 12, "loss": 2.7}]}
    assert dict(training_settings({**args, "eval_delay": 100}, {}, {}, never, {}))["model selection"] == \
        "final model: the dev set was never scored (to be scored every 50 steps, eval_delay 100; the run took 12 steps)"
    history = [{"step": 0, "eval_cosine_spearman": 44.63}, {"step": 50, "eval_cosine_spearman": 41.7}]
    rows = dict(training_settings(args, {}, {}, {"eval_steps": 50, "best_metric": 41.7, "log_history": history}, {}))
    assert rows["model selection"] == ("best cosine_spearman on `dev.tsv`, every 50 steps (2 evaluations); the encoder "
                                       "before training scored higher, 44.63")
    for before in (30.0, 41.7):  # lower, or as high: not higher
        history[0]["eval_cosine_spearman"] = before
        rows = dict(training_settings(args, {}, {}, {"eval_steps": 50, "best_metric": 41.7, "log_history": history},
                                      {}))
        assert rows["model selection"] == "best cosine_spearman on `dev.tsv`, every 50 steps (2 evaluations)"
    # Trainer scores the dev set at the last step too: a run shorter than eval_steps is scored once.
    rows = dict(training_settings(args, {}, {}, {"eval_steps": 50, "global_step": 12, "best_metric": 41.7,
                                                 "log_history": history[1:]}, {}))
    assert rows["model selection"] == "best cosine_spearman on `dev.tsv`, every 50 steps (1 evaluation)"


def test_the_plot_marks_the_model_kept_whichever_it_is(model_dir, tmp_path, monkeypatch):
    """Trainer records the best dev step whenever metric_for_best_model is set: with load_best_model_at_end off the plot
    marked it "kept" and the card called it the checkpoint kept, while the export held the last step's weights."""
    import matplotlib.axes

    marked = []
    real_scatter = matplotlib.axes.Axes.scatter
    monkeypatch.setattr(matplotlib.axes.Axes, "scatter", lambda ax, x, *a, **k: marked.append(list(x)) or
                        real_scatter(ax, x, *a, **k))
    copy = shutil.copytree(model_dir, tmp_path / "run", ignore=shutil.ignore_patterns("checkpoint-*"))
    state = json.loads((copy / "trainer_state.json").read_text())
    best, last = state["best_global_step"], state["global_step"]
    assert best != last  # the smoke run's best is an earlier step
    caption = "Development score (cosine_spearman on `{dev}`) during training; {said}:"
    dev = json.loads((copy / "run_args.json").read_text())["dev_data"]
    card = render_card(str(copy))
    assert marked == [[best]] and caption.format(dev=dev, said="the marked point is the checkpoint kept") in card.text
    args = json.loads((copy / "run_args.json").read_text())
    (copy / "run_args.json").write_text(json.dumps({**args, "load_best_model_at_end": False}))
    card = render_card(str(copy))
    assert marked[1:] == [[last]] and caption.format(dev=dev, said="the marked point is the last step, whose model is "
                                                     "kept (load_best_model_at_end off)") in card.text
    # A last step the dev set did not score: nothing marked.
    state["log_history"] = [e for e in state["log_history"] if e["step"] != last]
    (copy / "trainer_state.json").write_text(json.dumps(state))
    card = render_card(str(copy))
    assert marked[2:] == [] and caption.format(dev=dev, said=f"the model kept is the last step's (step {last}), which "
                                               "the dev set did not score") in card.text


def test_card_metadata_names_only_hub_ids_wherever_it_is_rendered(model_dir, tmp_path):
    """A card rendered away from the run's machine listed its training files' paths as Hub datasets (the Hub refuses
    such a card at push: "datasets[0] ... is not valid"); base_model is what the run found, recorded in
    environment.json; KLUE-STS dev is klue/klue's config sts, split validation, in the model-index."""
    copy = shutil.copytree(model_dir, tmp_path / "run", ignore=shutil.ignore_patterns("checkpoint-*"))
    args = json.loads((copy / "run_args.json").read_text())
    train_data = ["/gpu-box/data/snli.ko.tsv", "/gpu-box/data/folder", "data/multinli.ko.tsv", "~/xnli.jsonl",
                  "https://x.org/a/b.tsv", "kakaobrain/kor_nli:multi_nli:train", "kakaobrain/kor_nli:snli:train"]
    (copy / "run_args.json").write_text(json.dumps({**args, "train_data": train_data,
                                                    "model_name_or_path": "/gpu-box/models/klue-bert"}))
    results = json.loads((copy / "sts_results.json").read_text())
    scores = next(iter(results.values()))
    (copy / "sts_results.json").write_text(json.dumps({"korsts-test": scores, "klue-sts-dev": scores}))
    environment = json.loads((copy / "environment.json").read_text())
    assert environment["hub_datasets"] == []  # the run trained on a file
    earlier = {k: v for k, v in environment.items() if k not in ("hub_base_model", "hub_datasets")}
    (copy / "environment.json").write_text(json.dumps(earlier))
    data = render_card(str(copy)).data  # as a run from before the records: the paths are no repo ids
    assert data.datasets == ["kakaobrain/kor_nli", "klue/klue"] and data.base_model is None
    index = {(r.dataset_type, r.dataset_config, r.dataset_split) for r in data.eval_results}
    assert index == {("korsts", None, "test"), ("klue/klue", "sts", "validation")}
    for recorded in ("klue/bert-base", None):  # the run's record wins over what the name looks like here
        (copy / "environment.json").write_text(json.dumps({**environment, "hub_base_model": recorded}))
        assert render_card(str(copy)).data.base_model == recorded
    (copy / "run_args.json").write_text(json.dumps({**args, "model_name_or_path": "klue/bert-base"}))
    (copy / "environment.json").write_text(json.dumps(earlier))
    assert render_card(str(copy)).data.base_model == "klue/bert-base"  # an earlier run's Hub id, no folder here
    # A relative folder (a dataset saved with save_to_disk) that is none here reads as a Hub id: the record wins.
    (copy / "run_args.json").write_text(json.dumps({**args, "train_data": ["kornli/train", "kakaobrain/kor_nli"]}))
    (copy / "environment.json").write_text(json.dumps(earlier))
    assert render_card(str(copy)).data.datasets == ["kakaobrain/kor_nli", "kornli/train", "klue/klue"]
    (copy / "environment.json").write_text(json.dumps({**earlier, "hub_datasets": ["kakaobrain/kor_nli"]}))
    assert render_card(str(copy)).data.datasets == ["kakaobrain/kor_nli", "klue/klue"]


@pytest.mark.parametrize("shared, noted", [([519, 519], True), ([8, 1379], False), ([7, 12], True), ([6, 12], True),
                                           ([5, 12], False), ([1, 1], True), ([0, 0], False)])
def test_card_says_when_a_test_set_is_mostly_the_dev_set(model_dir, tmp_path, shared, noted):
    """KorSTS-test shares 8 of its 1,379 pairs with KorSTS-dev (held out); a set half or more of whose pairs are in the
    dev set is not. A set the run recorded no count for (an earlier run's) has no note."""
    copy = shutil.copytree(model_dir, tmp_path / "run", ignore=shutil.ignore_patterns("checkpoint-*"))
    environment = json.loads((copy / "environment.json").read_text())
    names = list(json.loads((copy / "sts_results.json").read_text()))
    pairs = {names[0]: shared}
    (copy / "environment.json").write_text(json.dumps({**environment, "test_pairs_in_dev": pairs}))
    text = render_card(str(copy)).text
    note = f"Not held out: {shared[0]:,} of these {shared[1]:,} pairs are in the dev set"
    assert (note in text) == noted and text.count("Not held out") == noted
    assert not noted or text.index(note) < text.index(f"### {names[1]}")  # under its own table
    args = json.loads((copy / "run_args.json").read_text())
    (copy / "run_args.json").write_text(json.dumps({**args, "load_best_model_at_end": False}))
    assert "Not held out" not in render_card(str(copy)).text  # the final model: no set chose it


def test_the_model_index_names_each_sets_hub_dataset_config_and_split():
    """KLUE-STS dev is the Hub's klue/klue, config sts, split "validation"; KorSTS has no Hub copy of its files; a set
    of another name is named as it is, its split read from its last part where that is one."""
    results = {name: {m: 50.0 + i for i, m in enumerate(METRIC_NAMES)}
               for name in ("korsts-test", "klue-sts-dev", "my-sts-train", "sample-sts")}
    entries = {(r.dataset_name, r.metric_type): r for r in eval_results(results, "m")}
    assert len(entries) == 9 * 4
    said = {f"{name} {metric}": (r.dataset_type, r.dataset_config, r.dataset_split, r.metric_name, r.metric_value)
            for (name, metric), r in entries.items() if metric in ("avg_8", "spearman_cosine")}
    cosine_spearman = 50.0 + METRIC_NAMES.index("cosine_spearman")
    assert said == {
        "KorSTS test avg_8": ("korsts", None, "test", "AVG of 8 correlations", 50.0),
        "KorSTS test spearman_cosine": ("korsts", None, "test", "Spearman (cosine)", cosine_spearman),
        "KLUE-STS dev avg_8": ("klue/klue", "sts", "validation", "AVG of 8 correlations", 50.0),
        "KLUE-STS dev spearman_cosine": ("klue/klue", "sts", "validation", "Spearman (cosine)", cosine_spearman),
        "my-sts-train avg_8": ("my-sts-train", None, "train", "AVG of 8 correlations", 50.0),
        "my-sts-train spearman_cosine": ("my-sts-train", None, "train", "Spearman (cosine)", cosine_spearman),
        "sample-sts avg_8": ("sample-sts", None, None, "AVG of 8 correlations", 50.0),
        "sample-sts spearman_cosine": ("sample-sts", None, None, "Spearman (cosine)", cosine_spearman),
    }


def test_a_metric_named_with_its_eval_prefix_is_plotted(model_dir, tmp_path):
    """Trainer takes metric_for_best_model with or without "eval_"; the card plotted nothing for
    "eval_cosine_spearman"."""
    copy = shutil.copytree(model_dir, tmp_path / "run", ignore=shutil.ignore_patterns("checkpoint-*", "dev_scores.png"))
    with open(copy / "run_args.json") as f:
        args = json.load(f)
    (copy / "run_args.json").write_text(json.dumps({**args, "metric_for_best_model": "eval_cosine_spearman"}))
    card = render_card(str(copy))
    assert (copy / "dev_scores.png").is_file() and "](dev_scores.png)" in card.text
    assert "| model selection | best cosine_spearman on" in card.text


def test_the_plot_leaves_the_callers_matplotlib_backend_alone(tmp_path):
    """The card's plot chose the Agg backend for the whole process (`matplotlib.use`), so a notebook that trained or
    rendered a card lost its inline figures; it draws on a Figure of its own now. The PNG is a real one."""
    code = ("import matplotlib, sys; matplotlib.use('svg'); from hub.card import plot_dev_scores; "
            "state = {'log_history': [{'step': s, 'eval_cosine_spearman': 70 + s / 10} for s in (10, 20, 30)]}; "
            "print(plot_dev_scores(sys.argv[1], state, 'cosine_spearman', 20), matplotlib.get_backend())")
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0 and run.stdout.split() == ["dev_scores.png", "svg"], run.stderr[-2000:]
    assert (tmp_path / "dev_scores.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize("environment, train, said", [
    ({}, {"train_runtime": 184.2}, "184 s"),  # a run from before the record: Trainer's runtime
    ({"training_seconds": 4831.0, "resumed_at_step": None}, {"train_runtime": 4831.0}, "4,831 s"),
    ({"training_seconds": 7.25, "resumed_at_step": 600}, {"train_runtime": 3.0},
     "7.2 s (resumed at step 600; all sessions)"),
    ({"training_seconds": None, "resumed_at_step": 600}, {"train_runtime": 3000.0},
     "3,000 s from the resumption at step 600 (before it: not recorded)"),
    ({}, {}, "unknown"),
    ({"training_seconds": 10.0}, {}, "10 s"),  # whole seconds from 10 s
    ({"training_seconds": 9.94}, {}, "9.9 s"),
])
def test_card_training_time_covers_every_session_or_says_it_does_not(environment, train, said):
    assert training_time(environment, train) == said


A100, H100 = "1 x NVIDIA A100-SXM4-80GB", "1 x NVIDIA H100 80GB HBM3"


@pytest.mark.parametrize("environment, said", [
    ({"hardware": H100}, H100),  # a run from before the sessions' record
    ({"hardware": H100, "sessions": [{"from_step": 0, "hardware": H100}]}, H100),
    ({"hardware": H100, "sessions": [{"from_step": 0, "hardware": H100}, {"from_step": 600, "hardware": H100}]}, H100),
    ({"hardware": H100, "sessions": [{"from_step": 0, "hardware": A100}, {"from_step": 300, "hardware": A100},
                                     {"from_step": 600, "hardware": H100}]},
     f"{A100} from step 0; {H100} from step 600"),
    ({"hardware": H100, "sessions": [{"from_step": 600, "hardware": H100}]},
     f"up to step 600: not recorded; {H100} from step 600"),
    ({}, "unknown"),
])
def test_card_hardware_names_each_machine_of_a_run_resumed_on_another(environment, said):
    assert hardware(environment) == said


OLD, NEW = {"torch": "2.11.0+cu130", "transformers": "5.24.0"}, {"torch": "2.13.0", "transformers": "5.24.0"}


@pytest.mark.parametrize("environment, said", [
    ({}, ""),  # no row
    ({"versions": NEW}, "torch 2.13.0, transformers 5.24.0"),
    # Sessions recorded before their versions were: the last session's, as before.
    ({"versions": NEW, "sessions": [{"from_step": 0, "hardware": H100}, {"from_step": 600, "hardware": H100}]},
     "torch 2.13.0, transformers 5.24.0"),
    ({"versions": NEW, "sessions": [{"from_step": 0, "hardware": A100, "versions": NEW},
                                    {"from_step": 600, "hardware": H100, "versions": NEW}]},
     "torch 2.13.0, transformers 5.24.0"),
    ({"versions": NEW, "sessions": [{"from_step": 0, "hardware": H100, "versions": OLD},
                                    {"from_step": 600, "hardware": H100, "versions": NEW}]},
     "torch 2.11.0+cu130, transformers 5.24.0 from step 0; torch 2.13.0, transformers 5.24.0 from step 600"),
    ({"versions": NEW, "sessions": [{"from_step": 0, "hardware": H100},
                                    {"from_step": 600, "hardware": H100, "versions": NEW}]},
     "from step 0: not recorded; torch 2.13.0, transformers 5.24.0 from step 600"),
])
def test_card_software_names_the_versions_of_each_session_of_a_resumed_run(environment, said):
    """A run resumed under other library versions gave the last session's as the run's."""
    assert software(environment) == said


@pytest.mark.parametrize("changes, cites", [
    ({}, {"kornlu": False, "klue": False}),  # the smoke run: its own sample data, a model made from a config
    ({"train_data": ["kakaobrain/kor_nli:snli:train"]}, {"kornlu": True, "klue": False}),
    ({"train_data": ["/data/multinli.train.ko.tsv"], "model_name_or_path": "klue/roberta-base"},
     {"kornlu": True, "klue": True}),
    ({"test_data": ["korsts-test=/data/sts-test.tsv"]}, {"kornlu": True, "klue": False}),
    ({"dev_data": "https://raw.githubusercontent.com/kakaobrain/KorNLUDatasets/master/KorSTS/sts-dev.tsv"},
     {"kornlu": True, "klue": False}),
    ({"test_data": ["klue-sts-dev=klue/klue:sts:validation"]}, {"kornlu": False, "klue": True}),
    ({"model_name_or_path": "outputs/klue-bert-sup"}, {"kornlu": False, "klue": False}),  # a folder's name is no source
])
def test_card_cites_the_datasets_the_run_used(model_dir, tmp_path, changes, cites):
    """The card's BibTeX is SimCSE's plus the works of the data the run trained and was scored on (and of a KLUE
    encoder it started from): a run on one's own data cited KorNLI/KorSTS and KLUE, which it never read."""
    copy = shutil.copytree(model_dir, tmp_path / "run", ignore=shutil.ignore_patterns("checkpoint-*"))
    args = {**json.loads((copy / "run_args.json").read_text()), **changes}
    (copy / "run_args.json").write_text(json.dumps(args))
    assert cited_works(args) == cites
    bibtex = render_card(str(copy)).text.split("## Citation", 1)[1]
    assert re.findall(r"^@\w+\{(\w+),", bibtex, re.MULTILINE) == ["gao2021simcse"] + [
        key for work, key in (("kornlu", "ham2020kornli"), ("klue", "park2021klue")) if cites[work]]
    assert bibtex.count("```") == 2 and "\n\n" not in bibtex.split("```")[1]


def test_card_settings_name_the_config_changes_of_a_pretrained_encoder(model_dir, tmp_path):
    """config_overrides applies to pretrained encoders too: the card says so, and gives the dropout the exported config
    holds (DistilBERT keeps it under `dropout`) when the `dropout` argument was not used."""
    copy = str(tmp_path / "out")
    shutil.copytree(model_dir, copy)
    for name, changes in (("run_args.json", {"model_type": None, "model_name_or_path": "some/distilbert",
                                              "config_overrides": "dropout=0.25", "dropout": None}),
                          ("config.json", {"dropout": 0.25})):
        with open(os.path.join(copy, name)) as f:
            content = json.load(f)
        content.update(changes)
        content.pop("hidden_dropout_prob", None)
        with open(os.path.join(copy, name), "w") as f:
            json.dump(content, f)
    text = render_card(copy).text
    assert "| base model | `some/distilbert` with config changes `dropout=0.25` |" in text
    assert "| dropout | 0.25 |" in text


@pytest.mark.parametrize("encoder_class, config_class, pooler_type, needed", [
    (ElectraModel, ElectraConfig, "avg_first_last", "4.1"),
    (ElectraModel, ElectraConfig, "avg_top2", "4.1"),
    (ElectraModel, ElectraConfig, "avg", "3.4"),
    (BertModel, BertConfig, "avg_first_last", "3.4"),
])
def test_card_names_the_sentence_transformers_releases_that_load_the_export(model_dir, tokenizer, tmp_path,
                                                                           encoder_class, config_class, pooler_type,
                                                                           needed):
    """Before 4.1, sentence-transformers' layer weighting failed on an encoder without a pooler (ELECTRA: KeyError
    'all_layer_embeddings' under 3.4.1 and 4.0.0-4.0.2; bench/RESULTS.md): the card names the releases that work."""
    copy = str(tmp_path / "out")
    shutil.copytree(model_dir, copy)
    encoder = encoder_class(config_class(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, intermediate_size=32))
    SimCSEModel.from_encoder(encoder, pooler_type=pooler_type).export_encoder(copy, tokenizer)
    text = render_card(copy).text
    assert f"The files load with transformers 4.57 or newer and sentence-transformers {needed} or newer" in text


def test_card_regeneration_is_stable_and_cli(model_dir, tmp_path):
    copy = str(tmp_path / "out")  # the card names the model after its folder
    shutil.copytree(model_dir, copy)
    before = open(os.path.join(copy, "README.md")).read()
    os.remove(os.path.join(copy, "README.md"))
    proc = subprocess.run([sys.executable, "-m", "hub", "card", copy], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert open(os.path.join(copy, "README.md")).read() == before


def run_hub(*argv) -> tuple[int, str]:
    """`python -m hub ARGV` in this process -> (exit code, what it printed)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = hub_cli(list(argv))
        except SystemExit as e:  # argparse's errors
            code = e.code
    return code, out.getvalue()


@pytest.mark.parametrize("argv, said", [
    ([], "the following arguments are required: command"),
    (["push", "out"], "the following arguments are required: --repo-id"),
])
def test_a_missing_command_or_repo_id_is_a_usage_error(argv, said):
    """argparse says what is missing, before anything is read (not a traceback from the code that reads it)."""
    status, printed = run_hub(*argv)
    assert status == 2 and printed.startswith("usage: python -m hub") and said in printed, printed


@pytest.mark.parametrize("code, hint", [(errno.EROFS, True), (errno.EACCES, True), (errno.ENOSPC, False)])
def test_a_card_that_cannot_be_written_is_an_error_naming_the_file(model_dir, tmp_path, monkeypatch, code, hint):
    """A model folder on a read-only disk (or of another user): `hub card` said so in a traceback."""
    import matplotlib.figure

    copy = str(tmp_path / "out")
    shutil.copytree(model_dir, copy)

    def refused(self, path, *args, **kwargs):
        raise OSError(code, os.strerror(code), path)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", refused)
    status, said = run_hub("card", copy)
    plot = os.path.join(copy, "dev_scores.png")
    assert status == 1 and said.startswith(f"error: {plot}: {os.strerror(code)}"), said
    assert ("render them in a copy of " + copy in said) == hint


@pytest.mark.parametrize("command", [["card"], ["push", "--repo-id", "alice/x"]])
def test_a_file_of_the_folder_that_cannot_be_read_is_an_error_naming_it(model_dir, tmp_path, monkeypatch, hub,
                                                                         command):
    """A folder with a file of another user's that this one may not read: `hub push` said so in a traceback, and
    `hub card` advised a copy that it may write to, as for a card it cannot write."""
    copy = str(tmp_path / "out")
    shutil.copytree(model_dir, copy)
    unreadable = os.path.join(copy, "sts_results.json")
    real_open = open

    def refused(file, *args, **kwargs):
        if file == unreadable:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", refused)
    status, said = run_hub(command[0], copy, *command[1:])
    assert (status, said) == (1, f"error: {unreadable}: {os.strerror(errno.EACCES)}\n")
    assert hub.requests == []


def test_a_card_cut_short_by_a_full_disk_leaves_the_earlier_one(model_dir, tmp_path, monkeypatch):
    """The card and its figure are written whole or not at all: a full disk while writing README.md left it cut
    short (a card that a push then refused as edited by hand)."""
    copy = tmp_path / "out"
    shutil.copytree(model_dir, copy)
    before = {name: (copy / name).read_bytes() for name in ("README.md", "dev_scores.png")}

    def disk_fills(self, path):
        with open(path, "w") as f:
            f.write(str(self)[:100])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    monkeypatch.setattr(ModelCard, "save", disk_fills)
    status, said = run_hub("card", str(copy))
    assert status == 1 and said.startswith(f"error: {copy / 'README.md'}: {os.strerror(errno.ENOSPC)}"), said
    assert {name: (copy / name).read_bytes() for name in before} == before
    assert not list(copy.glob("*.tmp"))


def test_a_run_stopped_before_its_export_is_told_how_to_export_it(model_dir, tmp_path):
    """`hub card` or `hub push` in the output folder of a launch stopped after training (Ctrl-C in the final evaluation)
    said only "not an exported model"."""
    copy = str(tmp_path / "out")
    shutil.copytree(model_dir, copy, ignore=shutil.ignore_patterns("config.json"))
    for command in (["card", copy], ["push", copy, "--repo-id", "alice/m", "--dry-run"]):
        code, printed = run_hub(*command)
        assert code == 1 and printed == (
            f"error: {copy}: no config.json (not an exported model); it is the output folder of a run that was not "
            "exported: its launch stopped before the export was complete. Launch the run again with "
            "--resume_from_checkpoint last, which evaluates and exports it (and says what it trains again first, if "
            "anything)\n")
    os.remove(os.path.join(copy, "run_args.json"))  # any other folder
    assert run_hub("card", copy) == (1, f"error: {copy}: no config.json (not an exported model)\n")


def test_published_comparison_rows_are_labelled(model_dir, tmp_path):
    copy = str(tmp_path / "m")
    shutil.copytree(model_dir, copy)
    with open(os.path.join(copy, "sts_results.json")) as f:
        results = json.load(f)
    results = {"korsts-test": results["sample-sts"], "klue-sts-dev": results["sample-sts"]}
    with open(os.path.join(copy, "sts_results.json"), "w") as f:
        json.dump(results, f)
    text = render_card(copy, "alice/m").text
    assert "SimCSE-BERT-KO (sup) — published, not re-measured | **85.98** |" in text
    assert "### KorSTS test" in text and "### KLUE-STS dev" in text
    note = "Rows marked *published* are the figures of the SimCSE-KO model card"
    assert text.count(note) == 1
    without = render_card(copy, "alice/m", compare_published=False).text
    assert "published, not re-measured" not in without and note not in without
    # The push renders the card again (for the repo id in its snippet): it leaves the rows out when told to as well.
    for command in (["card", copy], ["push", copy, "--repo-id", "alice/m", "--dry-run"]):
        code, printed = run_hub(*command, "--no-comparison")
        assert code == 0
        text = printed if command[0] == "push" else open(os.path.join(copy, "README.md")).read()
        assert "### KorSTS test" in text and "published, not re-measured" not in text
    # The note goes with the rows: under a card with one published set among others, not under one with none.
    assert note not in render_card(model_dir, "alice/m", write=False).text
    with open(os.path.join(copy, "sts_results.json"), "w") as f:
        json.dump({"sample-sts": results["korsts-test"], "korsts-test": results["korsts-test"]}, f)
    assert note in render_card(copy, "alice/m", write=False).text


def test_bold_marks_the_best_of_several_rows_as_the_card_shows_them():
    """A column's best is bold as the table shows it (2 decimals): this model's 85.984 and the published 85.98 read
    alike, and both are bold; alone in its table, this model's row has nothing bold."""
    metrics = {**{m: 50.0 for m in METRIC_NAMES}, "avg": 85.984}
    table = results_table("korsts-test", metrics, "m", compare=True)
    assert "| **m** (this model) | **85.98** | 50.00 | 50.00 |" in table
    assert "| SimCSE-BERT-KO (sup) — published, not re-measured | **85.98** | – | **86.00** |" in table
    assert "| SimCSE-RoBERTa-KO (sup) — published, not re-measured | 83.06 |" in table
    alone = results_table("korsts-test", metrics, "m", compare=False)
    assert "**" not in alone.split("(this model)")[1]


def test_published_rows_carry_the_figures_of_the_simcse_ko_card():
    """Every published figure as the SimCSE-KO model card gives it (KorSTS test: AVG and cosine Spearman; KLUE-STS dev:
    AVG), in its model's row and its column; the rest of a published row is a dash, not a figure of its own."""
    models = ["SimCSE-BERT-KO (unsup)", "SimCSE-BERT-KO (sup)", "SimCSE-RoBERTa-KO (unsup)", "SimCSE-RoBERTa-KO (sup)"]
    cells = {  # AVG, cosine Pearson, cosine Spearman, in the order of `models`; the best of a column bold
        "korsts-test": ["72.85 | – | 72.77", "**85.98** | – | **86.00**", "75.79 | – | 75.57", "83.06 | – | 83.21"],
        "klue-sts-dev": ["65.27 | – | –", "83.96 | – | –", "80.78 | – | –", "**85.31** | – | –"],
    }
    for name, figures in cells.items():
        table = results_table(name, dict.fromkeys(METRIC_NAMES, 0.0), "m", compare=True).splitlines()
        assert table[3:] == [f"| {model} — published, not re-measured | {row}{' | –' * 6} |"
                             for model, row in zip(models, figures, strict=True)]


def test_the_card_licence_and_comparison_stick_until_changed(model_dir, tmp_path):
    """`hub card --license mit`, then `hub push` or `hub card` without --license: the card went out as cc-by-sa-4.0."""
    copy = str(tmp_path / "m")
    shutil.copytree(model_dir, copy)
    results = json.load(open(os.path.join(copy, "sts_results.json")))
    json.dump({"korsts-test": results["sample-sts"]}, open(os.path.join(copy, "sts_results.json"), "w"))
    assert run_hub("card", copy, "--license", "mit", "--no-comparison")[0] == 0
    for argv in (["card", copy], ["push", copy, "--repo-id", "alice/m", "--dry-run"]):
        code, printed = run_hub(*argv)
        pushed = argv[0] == "push"
        text = printed.split("files to upload:")[1] if pushed else open(os.path.join(copy, "README.md")).read()
        assert code == 0 and "license: mit" in text and "published, not re-measured" not in text, printed[-2000:]
    code, printed = run_hub("push", copy, "--repo-id", "alice/m", "--dry-run", "--license", "apache-2.0",
                            "--comparison")
    assert code == 0 and "license: apache-2.0" in printed and "published, not re-measured" in printed
    assert "license: mit" in open(os.path.join(copy, "README.md")).read()  # a push leaves the folder's card alone
    assert run_hub("card", copy, "--comparison")[0] == 0
    text = open(os.path.join(copy, "README.md")).read()
    assert "license: mit" in text and "published, not re-measured" in text


def test_a_card_edited_by_hand_is_not_replaced_without_a_word(model_dir, hub, tmp_path):
    copy = str(tmp_path / "m")
    shutil.copytree(model_dir, copy)
    assert run_hub("card", copy, "--repo-id", "alice/named")[0] == 0  # a snippet naming another repo is no edit
    assert run_hub("push", copy, "--repo-id", "alice/m", "--dry-run")[0] == 0
    with open(os.path.join(copy, "README.md"), "a") as f:
        f.write("\n## Limitations\n\nTrained on a tiny sample.\n")
    code, printed = run_hub("push", copy, "--repo-id", "alice/m", "--dry-run")
    assert code == 1 and "README.md is not the card the run's files render (edited by hand" in printed
    assert "--card-as-is" in printed and hub.requests == []
    code, printed = run_hub("push", copy, "--repo-id", "alice/m", "--card-as-is", "--license", "mit")
    assert code == 2 and "--license and --comparison are for a rendered card" in printed
    proc = cli(["-m", "hub", "push", copy, "--repo-id", "alice/m", "--card-as-is"], hub, tmp_home=tmp_path / "h")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert hub.repos["alice/m"].branches["main"]["README.md"] == open(os.path.join(copy, "README.md"), "rb").read()
    for text in ("---\nlicense: [unclosed\n---\n# My model\n", "# My model\n"):  # metadata that does not parse; none
        with open(os.path.join(copy, "README.md"), "w") as f:
            f.write(text)
        code, printed = run_hub("push", copy, "--repo-id", "alice/m", "--dry-run")
        assert code == 1 and "README.md is not the card the run's files render (edited by hand" in printed, printed
    # Rendering it again keeps the earlier card: it was "# My model" alone, edited by hand, and went without a word.
    code, printed = run_hub("card", copy + os.sep)  # as a shell completes a folder's name
    assert code == 0 and "kept the earlier README.md, which is not what the run's files render" in printed
    assert f"as {os.path.join(copy, 'README.md.bak')}\nwrote {os.path.join(copy, 'README.md')}\n" in printed, printed
    assert open(os.path.join(copy, "README.md.bak")).read() == "# My model\n"
    assert "README.md.bak" not in published_files(copy)
    assert "kept the earlier" not in run_hub("card", copy)[1]  # a card as rendered goes without a copy
    # Results changed since the card was rendered (a re-evaluation): the card would not say what the folder holds.
    results = json.load(open(os.path.join(copy, "sts_results.json")))
    results["sample-sts"]["avg"] += 1.0
    json.dump(results, open(os.path.join(copy, "sts_results.json"), "w"))
    code, printed = run_hub("push", copy, "--repo-id", "alice/m", "--dry-run")
    assert code == 1 and "the files changed since it was rendered" in printed


def test_a_folder_without_its_dev_score_plot_is_not_pushed_without_it(model_dir, hub, tmp_path):
    """A run stopped after its results, before its card (its other process killed, say): the push rendered a card
    without the figure the run's trainer_state.json has the points of."""
    copy = str(tmp_path / "m")
    shutil.copytree(model_dir, copy)
    for name in ("README.md", "dev_scores.png"):
        os.remove(os.path.join(copy, name))
    for argv in (["--dry-run"], []):
        code, printed = run_hub("push", copy, "--repo-id", "alice/m", *argv)
        assert code == 1 and (f"error: {copy} has no dev_scores.png, the dev-score plot of its card (the run stopped "
                              f"before rendering the card, or the file was deleted): render the card with `python -m "
                              f"hub card {copy}`, then push") in printed, printed
    assert hub.requests == [] and not os.path.exists(os.path.join(copy, "dev_scores.png"))
    assert run_hub("card", copy)[0] == 0
    code, printed = run_hub("push", copy, "--repo-id", "alice/m", "--dry-run")
    assert code == 0 and "  dev_scores.png\n" in printed and "](dev_scores.png)" in printed


def test_published_files_leave_out_training_state(model_dir, tmp_path, monkeypatch):
    files = set(published_files(model_dir))
    assert files == EXPECTED_FILES
    assert not any(f.startswith("checkpoint-") or f.endswith(("training_args.bin", "optimizer.pt")) for f in files)
    # Files of the published kinds in folders of other names, and hidden files in a module's folder, stay out.
    copy = tmp_path / "m"
    shutil.copytree(model_dir, copy)
    for extra in ("checkpoint-3/config.json", "checkpoint-3/model.safetensors", "1_Pooling/.DS_Store",
                  ".cache/config.json", "runs/x/README.md"):
        (copy / extra).parent.mkdir(parents=True, exist_ok=True)
        (copy / extra).write_text("{}")
    assert set(published_files(str(copy))) == EXPECTED_FILES
    # A module's folder kept elsewhere, linked: its files were left out of the push (SentenceTransformer failed to load
    # the repo). A link to a folder above is not walked down.
    shutil.move(copy / "1_Pooling", tmp_path / "pooling")
    (copy / "1_Pooling").symlink_to(tmp_path / "pooling")
    (copy / "2_Dense" / "up").symlink_to(copy)
    walked, scandir = [], os.scandir
    monkeypatch.setattr(os, "scandir", lambda path: walked.append(os.path.relpath(path, copy)) or scandir(path))
    assert set(published_files(str(copy))) == EXPECTED_FILES
    assert "1_Pooling" in walked and [p for p in walked if os.sep in p] == []  # one folder deep at most


@pytest.mark.parametrize("tokenizer", ["BertTokenizer", "RobertaTokenizer", "XLMRobertaTokenizer", "CamembertTokenizer",
                                       "ElectraTokenizer", "DebertaV2Tokenizer", "AlbertTokenizer", "MPNetTokenizer",
                                       "DistilBertTokenizer", "BigBirdTokenizer"])
def test_every_vocabulary_file_an_encoder_tokenizer_saves_is_published(tokenizer):
    """A tokenizer saves its vocabulary files beside tokenizer.json (DeBERTa-v2's spm.model was left out of pushes)."""
    for name in getattr(transformers, tokenizer).vocab_files_names.values():
        assert any(fnmatch.fnmatch(name, pattern) for pattern in PUBLISHED_PATTERNS), name


@pytest.mark.parametrize("repo_id", ["noowner", "a/b/c", "/name", "owner/", "own er/name", "owner/na..me",
                                     "owner/name.git", "owner/name-", "owner/name.", "-owner/name", "owner/na--me",
                                     "owner/" + "n" * 97, "o" * 97 + "/name", "owner/名前", None])
def test_bad_repo_ids(repo_id):
    """The rules of huggingface_hub's client, which refuses such an id before it sends anything ("owner/na--me" and a
    97-character name passed this check and failed the push that came after the training)."""
    with pytest.raises(PushError, match="<owner>/<name>"):
        check_repo_id(repo_id)


@pytest.mark.parametrize("repo_id", ["klue/bert-base", "alice/ko-simcse_v1.2", "a/b", "O" * 96 + "/" + "n" * 96])
def test_repo_ids_the_hub_accepts_pass(repo_id):
    check_repo_id(repo_id)


def test_a_card_for_a_repo_id_that_is_not_one_is_refused(model_dir, tmp_path):
    """The card names the repo in its title and usage snippet: `from_pretrained("not a repo")` was written."""
    copy = str(tmp_path / "m")
    shutil.copytree(model_dir, copy)
    before = open(os.path.join(copy, "README.md")).read()
    code, printed = run_hub("card", copy, "--repo-id", "not a repo")
    assert code == 1 and "error: repo id 'not a repo' is not of the form <owner>/<name>" in printed
    assert open(os.path.join(copy, "README.md")).read() == before


def test_bad_folders_send_nothing(model_dir, tmp_path, hub):
    with pytest.raises(ModelDirError, match="no config.json"):
        push(str(tmp_path), "alice/x")
    copy = str(tmp_path / "m")
    shutil.copytree(model_dir, copy)
    os.remove(os.path.join(copy, "sts_results.json"))
    with pytest.raises(ModelDirError, match="no sts_results.json"):
        push(copy, "alice/x")
    with open(os.path.join(copy, "sts_results.json"), "w") as f:
        json.dump({"sample-sts": {"avg": 1.0}}, f)
    with pytest.raises(ModelDirError, match="lacks cosine_pearson"):
        push(copy, "alice/x")
    shutil.copy(os.path.join(model_dir, "sts_results.json"), copy)
    os.rename(os.path.join(copy, "README.md"), os.path.join(tmp_path, "README.md"))
    with pytest.raises(PushError, match=f"^{re.escape(copy)}: no README.md model card \\(render it with `python -m"):
        push(copy, "alice/x")
    os.rename(os.path.join(tmp_path, "README.md"), os.path.join(copy, "README.md"))
    checkpoint = str(tmp_path / "checkpoint-3")  # a SimCSEModel saved in training
    SimCSEModel.from_exported(copy).save_pretrained(checkpoint)
    with pytest.raises(ModelDirError, match="checkpoint-3 is a training checkpoint, not an export: publish the run's"):
        push(checkpoint, "alice/x")
    with open(os.path.join(checkpoint, "config.json"), "w") as f:
        f.write('{"model_type": "bert",')  # cut short, as a copy that ran out of disk
    with pytest.raises(ModelDirError, match="checkpoint-3/config.json: not valid JSON"):
        push(checkpoint, "alice/x")
    with open(os.path.join(checkpoint, "config.json"), "w") as f:
        json.dump({"model_type": "bert"}, f)  # an encoder of another job's, as AutoModel saves one
    with pytest.raises(ModelDirError, match=r"checkpoint-3/config.json: no 'simcse' block \(not exported"):
        push(checkpoint, "alice/x")
    os.remove(os.path.join(copy, "run_args.json"))  # as in a model downloaded from the Hub: it was a TypeError
    with pytest.raises(ModelDirError, match="no run_args.json; the card's settings come from the run's own files"):
        render_card(copy, "alice/x", write=False)  # what `python -m hub push` does first
    os.remove(os.path.join(copy, "tokenizer.json"))
    with pytest.raises(ModelDirError, match="no tokenizer vocabulary \\(one of tokenizer.json, vocab.txt, "):
        push(copy, "alice/x")
    os.remove(os.path.join(copy, "tokenizer_config.json"))
    with pytest.raises(ModelDirError, match="no tokenizer_config.json \\(the export's tokenizer files\\)"):
        push(copy, "alice/x")
    os.remove(os.path.join(copy, "model.safetensors"))
    with pytest.raises(ModelDirError, match="no \\*.safetensors"):
        push(copy, "alice/x")
    assert hub.requests == []


def _modules_without(kind: str):
    """An edit of an export folder: its modules.json without the modules of type `kind`."""
    def edit(folder):
        modules = json.loads((folder / "modules.json").read_text())
        (folder / "modules.json").write_text(json.dumps([m for m in modules if not m["type"].endswith(kind)]))
    return edit


def _embedding(name: str):
    """An edit of an export folder: its config.json's simcse block names the embedding `name`."""
    def edit(folder):
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "simcse": {**config["simcse"], "embedding": name}}))
    return edit


@pytest.mark.parametrize("edit, said", [
    (lambda f: (f / "modules.json").unlink(), "{m}: no modules.json (the export's sentence-transformers files): "
                                              "SentenceTransformer would load the folder with mean pooling, not its "
                                              "embedding (pooler_output)"),
    (lambda f: (f / "modules.json").write_text('[{"type": '), "{m}/modules.json: not valid JSON"),
    (lambda f: (f / "modules.json").write_text('{"type": "x"}'),
     "{m}/modules.json: expected a list of modules, each with its type and path"),
    (lambda f: (f / "modules.json").write_text(json.dumps([{k: v for k, v in m.items() if k != "path"} for m in
                                                           json.loads((f / "modules.json").read_text())])),
     "{m}/modules.json: expected a list of modules, each with its type and path"),
    (_modules_without("Dense"), "{m}/modules.json: its modules are Transformer, Pooling; the export's embedding "
                                "(pooler_output) is that of Transformer, Pooling, Dense"),
    (_embedding("avg"), "{m}/modules.json: its modules are Transformer, Pooling, Dense; the export's embedding "
                        "(avg) is that of Transformer, Pooling"),
    (_embedding("max"), "{m}/config.json: its simcse block names embedding 'max', none that run_simcse.py exports "
                        "(pooler_output, cls, avg, avg_first_last, avg_top2)"),
    (lambda f: shutil.rmtree(f / "1_Pooling"), "{m}: no 1_Pooling/config.json, which its modules.json names (the "
                                               "Pooling module of its sentence-transformers files; a copy with `cp -r` "
                                               "takes the folder's subfolders)"),
    (lambda f: (f / "2_Dense" / "model.safetensors").unlink(), "{m}: no 2_Dense/model.safetensors, which its "
                                                                "modules.json names (the Dense module"),
    (lambda f: (f / "sentence_bert_config.json").unlink(), "{m}: no sentence_bert_config.json, which its modules.json "
                                                           "names (the Transformer module"),
], ids=["no-modules", "modules-cut-short", "modules-not-a-list", "modules-without-paths", "no-dense-module",
        "modules-of-another-embedding", "unknown-embedding", "no-pooling-folder", "no-dense-weights",
        "no-sentence-bert-config"])
def test_an_export_whose_sentence_transformers_files_miss_its_embedding_sends_nothing(model_dir, tmp_path, hub, edit,
                                                                                      said):
    """The push published an export without modules.json, whose repo `SentenceTransformer` loaded with mean pooling
    (another embedding than the one evaluated and documented, in a warning), and one copied with `cp` without -r (no
    1_Pooling/ nor 2_Dense/), which it did not load at all."""
    copy = tmp_path / "m"
    shutil.copytree(model_dir, copy, ignore=shutil.ignore_patterns("checkpoint-*"))
    edit(copy)
    with pytest.raises(ModelDirError) as refused:
        push(str(copy), "alice/x")
    assert str(refused.value).startswith(said.format(m=copy))
    code, printed = run_hub("push", str(copy), "--repo-id", "alice/x", "--dry-run")
    assert code == 1 and said.format(m=copy) in printed
    assert hub.requests == []


@pytest.mark.parametrize("content, said", [
    ({}, "expected an object {eval set: {metric: value}}"),
    ([{"avg": 1.0}], "expected an object {eval set: {metric: value}}"),
    ({"s": 1.0}, "'s' is not an object of metrics"),
    ({"s": {"cosine_pearson": "73.5"}}, "not numbers in [-100, 100]: cosine_pearson"),
    ({"s": {"cosine_pearson": True}}, "not numbers in [-100, 100]: cosine_pearson"),
    ({"s": {"cosine_pearson": 100.5}}, "not numbers in [-100, 100]: cosine_pearson"),
    ({"s": {"cosine_pearson": -100.5, "dot_spearman": None}},
     "not numbers in [-100, 100]: cosine_pearson, dot_spearman"),
    ({"s": {"cosine_pearson": -100, "dot_spearman": 100.0}}, None),  # the bounds, an int among floats: scores
])
def test_results_that_are_not_scores_are_refused(tmp_path, content, said):
    """load_results reads what the card's tables and model-index are made of: an object of eval sets, each with every
    metric a number (not a bool, not a string) in [-100, 100]."""
    if isinstance(content, dict) and isinstance(content.get("s"), dict):
        content = {"s": {**dict.fromkeys(METRIC_NAMES, 50.0), **content["s"]}}
    (tmp_path / "sts_results.json").write_text(json.dumps(content))
    if said is None:
        assert load_results(str(tmp_path)) == content
        return
    with pytest.raises(ModelDirError) as raised:
        load_results(str(tmp_path))
    assert str(raised.value).endswith(said)


def test_a_file_written_whole_or_not_at_all_keeps_what_its_block_raised(tmp_path):
    """whole_file leaves the old content and no scratch file where its block fails, and passes the failure on as it is:
    an OSError of its scratch file named as the file, another file's under that file's name, Ctrl-C as Ctrl-C."""
    path = tmp_path / "results.json"
    path.write_text("old")
    elsewhere = str(tmp_path / "elsewhere")
    for raised, named in ((OSError(errno.ENOSPC, "No space left on device", None), str(path)),
                          (OSError(errno.EACCES, "Permission denied", elsewhere), elsewhere),
                          (KeyboardInterrupt(), None)):
        with pytest.raises(type(raised)) as caught:
            with whole_file(str(path)) as scratch, open(scratch, "w") as f:
                f.write("new, cut short")
                if isinstance(raised, OSError) and raised.filename is None:
                    raised.filename = scratch
                raise raised
        assert getattr(caught.value, "filename", None) == named
        assert path.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["results.json"]
    with whole_file(str(path)) as scratch, open(scratch, "w") as f:
        f.write("new")
    assert path.read_text() == "new" and sorted(os.listdir(tmp_path)) == ["results.json"]


def test_weights_cut_short_are_refused_before_anything_is_sent(model_dir, tmp_path, hub):
    copy = str(tmp_path / "m")
    shutil.copytree(model_dir, copy)
    with open(os.path.join(copy, "model.safetensors"), "r+b") as f:
        f.truncate(5)  # inside its header, as a copy that ran out of disk
    with pytest.raises(ModelDirError, match="m/model.safetensors: not readable safetensors weights"):
        push(copy, "alice/x")
    # A clone of the pushed repo made without Git LFS: its weights are a pointer.
    with open(os.path.join(copy, "model.safetensors"), "w") as f:
        f.write("version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 123456\n")
    with pytest.raises(ModelDirError, match=re.escape("m/model.safetensors: a Git LFS pointer, not the weights (a "
                                                      "repository cloned without Git LFS: `git lfs pull` there)")):
        push(copy, "alice/x")
    assert hub.requests == []


def test_the_hub_command_imports_neither_torch_nor_transformers():
    """`python -m hub` reads an export's files as JSON: importing torch, transformers, datasets and scipy took 4.5 of
    the 5.7 s its --help took on 2 CPU cores (2026-12-03)."""
    heavy = ("torch", "transformers", "datasets", "scipy", "matplotlib")
    code = f"import sys, hub.__main__; print([m for m in {heavy!r} if m in sys.modules])"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr[-2000:]


def test_push_one_private_commit_then_load_back(model_dir, hub, tmp_path):
    proc = cli(["-m", "hub", "push", model_dir, "--repo-id", "alice/ko-simcse", "--private"], hub,
               tmp_home=tmp_path / "h1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    repo = hub.repos["alice/ko-simcse"]
    assert repo.private
    assert len(repo.commits) == 1 and set(repo.commits[0]["files"]) == EXPECTED_FILES
    assert set(repo.branches["main"]) == EXPECTED_FILES
    weights = open(os.path.join(model_dir, "model.safetensors"), "rb").read()
    assert repo.branches["main"]["model.safetensors"] == weights
    # The weights and the figure went as large files (LFS), as the Hub takes them; the text files inside the commit.
    uploaded = {hashlib.sha256(content).hexdigest() for content in hub.lfs_objects.values()}
    assert uploaded == {hashlib.sha256(repo.branches["main"][f]).hexdigest()
                        for f in ("model.safetensors", "2_Dense/model.safetensors", "dev_scores.png")}
    assert 'AutoModel.from_pretrained("alice/ko-simcse")' in repo.branches["main"]["README.md"].decode()
    # The token appears in no output and no file.
    assert TOKEN not in proc.stdout + proc.stderr
    for root, _, names in os.walk(model_dir):
        for name in names:
            assert TOKEN.encode() not in open(os.path.join(root, name), "rb").read()

    load = ("import sys, torch\n"
            "from transformers import AutoModel, AutoTokenizer\n"
            "from sentence_transformers import SentenceTransformer\n"
            "s = ['남자가 피아노를 연주한다.', '강아지가 잔디밭에서 뛰어논다.']\n"
            "tok = AutoTokenizer.from_pretrained('alice/ko-simcse')\n"
            "m, info = AutoModel.from_pretrained('alice/ko-simcse', output_loading_info=True)\n"
            "assert not info['missing_keys'], info\n"
            "with torch.no_grad(): a = m.eval()(**tok(s, padding=True, return_tensors='pt')).pooler_output\n"
            "b = SentenceTransformer('alice/ko-simcse', device='cpu').encode(s, convert_to_tensor=True)\n"
            "torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)\n"
            "local = SentenceTransformer(sys.argv[1], device='cpu').encode(s, convert_to_tensor=True)\n"
            "torch.testing.assert_close(local, b)\n"
            "print('LOADED')\n")
    proc = cli(["-c", load, model_dir], hub, tmp_home=tmp_path / "h2")
    assert proc.returncode == 0 and "LOADED" in proc.stdout, proc.stderr[-3000:]
    # A private repo is invisible without the owner's token.
    proc = cli(["-c", "from transformers import AutoConfig; AutoConfig.from_pretrained('alice/ko-simcse')"], hub,
               token=None, tmp_home=tmp_path / "h3")
    assert proc.returncode != 0


def test_refused_and_missing_token_are_clear(model_dir, hub, tmp_path):
    proc = cli(["-m", "hub", "push", model_dir, "--repo-id", "alice/x"], hub, token="hf_notAValidToken1234",
               tmp_home=tmp_path)
    assert proc.returncode == 1 and "refused the token (HTTP 401)" in proc.stderr
    assert "hf_notAValidToken1234" not in proc.stdout + proc.stderr
    proc = cli(["-m", "hub", "push", model_dir, "--repo-id", "alice/x"], hub, token=None, tmp_home=tmp_path)
    assert proc.returncode == 1 and "no Hugging Face token" in proc.stderr
    assert hub.repos == {}


def test_a_token_check_the_server_answers_with_another_error_is_named_before_anything_is_sent(model_dir, hub):
    """HF_ENDPOINT set to a server that is not the Hub (a proxy, a mistyped address): its 404 to the token check is no
    refusal of the token."""
    hub.whoami_failure = (404, "NotFound", "no such page")
    with pytest.raises(PushError, match=r"^could not check the token and the repo: .*404.*no such page"):
        push(model_dir, "alice/x", api=HfApi(endpoint=hub.url, token=TOKEN))
    assert hub.requests == ["GET /api/whoami-v2"]


def test_a_read_only_token_or_someone_elses_namespace_is_refused_before_anything_is_sent(model_dir, hub, tmp_path):
    """A read-only token, an owner that is neither the account nor one of its organizations, a fine-grained token
    without repo.write there: all passed the token check and failed at the repo's creation, which for a training run
    came after training."""
    hub.tokens["hf_aliceReadOnlyToken0000"] = "alice"
    hub.read_only_tokens.add("hf_aliceReadOnlyToken0000")
    hub.orgs["alice"] = ["ko-nlp"]
    proc = cli(["-m", "hub", "push", model_dir, "--repo-id", "alice/x"], hub, token="hf_aliceReadOnlyToken0000",
               tmp_home=tmp_path)
    assert proc.returncode == 1 and "the Hugging Face token of alice is read-only" in proc.stderr, proc.stderr[-2000:]
    proc = cli(["-m", "hub", "push", model_dir, "--repo-id", "bob/x"], hub, tmp_home=tmp_path)
    assert proc.returncode == 1 and "bob/x: the token is alice's, who can push to alice, ko-nlp only" in proc.stderr
    assert hub.repos == {} and not any(r.startswith(("POST", "PUT")) for r in hub.requests)
    proc = cli(["-m", "hub", "push", model_dir, "--repo-id", "ko-nlp/simcse"], hub, tmp_home=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert set(hub.repos["ko-nlp/simcse"].branches["main"]) == EXPECTED_FILES
    # A fine-grained token writes only where it was given repo.write: on alice's repos here, not ko-nlp's.
    hub.tokens["hf_aliceFineGrainedToken00"] = "alice"
    hub.fine_grained_tokens["hf_aliceFineGrainedToken00"] = [("alice", ["repo.write"]), ("ko-nlp", [])]
    proc = cli(["-m", "hub", "push", model_dir, "--repo-id", "ko-nlp/other"], hub, token="hf_aliceFineGrainedToken00",
               tmp_home=tmp_path)
    said = "the fine-grained Hugging Face token of alice has no repo.write permission on ko-nlp or ko-nlp/other"
    assert proc.returncode == 1 and said in proc.stderr, proc.stderr[-2000:]
    assert "ko-nlp/other" not in hub.repos
    proc = cli(["-m", "hub", "push", model_dir, "--repo-id", "alice/fine"], hub, token="hf_aliceFineGrainedToken00",
               tmp_home=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    config = smoke_config(tmp_path, push_to_hub=True, hub_model_id="bob/from-training")
    proc = cli(["run_simcse.py", config], hub, tmp_home=tmp_path)
    assert proc.returncode != 0 and "bob/from-training: the token is alice's" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("answer", [{"name": "alice"}, {"name": "alice", "auth": {"type": "oauth"}},
                                    {"name": "alice", "auth": None, "orgs": None},
                                    {"name": "alice", "auth": {"accessToken": {"role": "fineGrained",
                                                                               "fineGrained": {"scoped": "all"}}}}])
def test_a_token_whose_answer_gives_no_role_is_left_to_the_hub(answer):
    """whoami's answer for a token that is no access token may lack `auth.accessToken`, and a fine-grained token's
    permissions may come in another shape than the Hub's: the check goes on to the repo (the Hub judges the push)
    rather than fail on the answer's shape."""
    api = types.SimpleNamespace(token="hf_x", endpoint="http://hub", whoami=lambda token: answer,
                                repo_exists=lambda repo_id: repo_id == "alice/old")
    assert check_push_access("alice/new", api=api) is False and check_push_access("alice/old", api=api) is True
    with pytest.raises(PushError, match="the token is alice's, who can push to alice only"):
        check_push_access("bob/x", api=api)


def test_private_is_refused_for_an_existing_public_repo(model_dir, hub):
    """create_repo(exist_ok=True) leaves an existing repo's visibility as it is: the push went to the public repo."""
    api = HfApi(endpoint=hub.url, token=TOKEN)
    push(model_dir, "alice/pub", api=api)
    sent = len(hub.requests)
    with pytest.raises(PushError, match="alice/pub exists and is public, and a push does not change"):
        push(model_dir, "alice/pub", private=True, api=api)
    assert len(hub.repos["alice/pub"].commits) == 1
    assert not any(r.startswith(("POST", "PUT")) for r in hub.requests[sent:])
    push(model_dir, "alice/priv", private=True, api=api)
    card = open(os.path.join(model_dir, "README.md"), encoding="utf-8").read() + "\nEdited.\n"
    push(model_dir, "alice/priv", private=True, api=api, card=card)  # an existing private repo takes the push
    assert hub.repos["alice/priv"].private and len(hub.repos["alice/priv"].commits) == 2


def test_a_new_repos_visibility_is_the_owners_default_unless_asked(model_dir, hub, tmp_path):
    """Where an organization's settings make new repos private: a push that says nothing (no --private, no
    hub_private_repo) leaves it to them; hub_private_repo false and `python -m hub push --no-private` ask for a public
    repo (both got the owner's default once: false was passed on as unset, and the command had no flag for it)."""
    hub.private_by_default.add("alice")
    for repo, flags in (("alice/unsaid", []), ("alice/cli-public", ["--no-private"])):
        proc = cli(["-m", "hub", "push", model_dir, "--repo-id", repo, *flags], hub, tmp_home=tmp_path / "h")
        assert proc.returncode == 0, proc.stderr[-3000:]
    api = HfApi(endpoint=hub.url, token=TOKEN)
    push(model_dir, "alice/public", private=False, api=api)
    push(model_dir, "alice/private", private=True, api=api)
    assert {name: repo.private for name, repo in hub.repos.items()} == {
        "alice/unsaid": True, "alice/cli-public": False, "alice/public": False, "alice/private": True}


def test_pushing_an_unchanged_export_again_makes_no_commit(model_dir, hub, caplog):
    """As on the Hub, the client leaves the files the branch already holds out of a commit, and makes none when every
    file is unchanged; the push then answers with the branch's last commit. With one file changed, only it is sent."""
    api = HfApi(endpoint=hub.url, token=TOKEN)
    first = push(model_dir, "alice/again", api=api)
    assert first.new_commit and first.commit_url.endswith(hub.repos["alice/again"].sha("main"))
    again = push(model_dir, "alice/again", api=api)
    assert again == (first.commit_url, False)
    assert len(hub.repos["alice/again"].commits) == 1
    assert "No files have been modified since last commit" in caplog.text
    said = describe_push(model_dir, "alice/again", None, again)
    assert said == f"nothing to push: alice/again holds {model_dir}'s files already, as of {first.commit_url}"
    card = open(os.path.join(model_dir, "README.md"), encoding="utf-8").read() + "\nEdited.\n"
    edited = push(model_dir, "alice/again", api=api, card=card)
    assert edited.new_commit and edited.commit_url != first.commit_url
    assert describe_push(model_dir, "alice/again", "dev", edited) == (
        f"pushed {model_dir} to alice/again (branch dev): {edited.commit_url}")
    assert [c["files"] for c in hub.repos["alice/again"].commits][1:] == [["README.md"]]


def test_a_card_the_hub_refuses_fails_the_push_before_the_upload_and_leaves_no_repo(model_dir, hub, tmp_path):
    """The Hub refuses a licence it does not know (SPDX's gpl-2.0-or-later, for one); huggingface_hub has the card
    validated before it uploads anything, and the repo the push created goes again."""
    proc = cli(["-m", "hub", "push", model_dir, "--repo-id", "alice/lic", "--license", "gpl-2.0-or-later"], hub,
               tmp_home=tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]
    said = ('push to alice/lic failed: ValueError: Invalid metadata in README.md. - "license" must be one of '
            '[apache-2.0,')
    assert said in proc.stderr, proc.stderr[-2000:]
    assert "POST /api/validate-yaml" in hub.requests and hub.repos == {} and hub.lfs_objects == {}
    proc = cli(["-m", "hub", "push", model_dir, "--repo-id", "alice/lic", "--license", "gpl-2.0"], hub,
               tmp_home=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "license: gpl-2.0" in hub.repos["alice/lic"].branches["main"]["README.md"].decode()


def test_a_run_trained_on_another_machines_files_pushes(model_dir, hub, tmp_path):
    """Trained on a GPU machine, pushed from another: the card listed the training file's path under `datasets`, which
    the Hub refuses ("is not valid", as the stand-in does)."""
    copy = shutil.copytree(model_dir, tmp_path / "run", ignore=shutil.ignore_patterns("checkpoint-*"))
    args = json.loads((copy / "run_args.json").read_text())
    (copy / "run_args.json").write_text(json.dumps({**args, "train_data": ["/gpu-box/data/kornli/snli.ko.tsv"]}))
    assert cli(["-m", "hub", "card", str(copy)], hub, tmp_home=tmp_path).returncode == 0
    proc = cli(["-m", "hub", "push", str(copy), "--repo-id", "alice/moved"], hub, tmp_home=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"pushed {copy} to alice/moved: {hub.url}/alice/moved/commit/{hub.repos['alice/moved'].sha('main')}" in (
        proc.stdout)
    assert "/gpu-box" not in hub.repos["alice/moved"].branches["main"]["README.md"].decode().split("---")[1]


def test_dry_run_sends_nothing(model_dir, hub, tmp_path):
    proc = cli(["-m", "hub", "push", model_dir, "--repo-id", "alice/x", "--dry-run"], hub, tmp_home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    listed = proc.stdout.split("files to upload:\n")[1].split("\n(and, in the same commit")[0].split()
    assert set(listed) == EXPECTED_FILES
    assert "model-index:" in proc.stdout and 'AutoModel.from_pretrained("alice/x")' in proc.stdout
    assert hub.requests == []
    assert 'from_pretrained("alice/x")' not in open(os.path.join(model_dir, "README.md")).read()  # nothing rewritten


def test_transient_errors_are_retried_and_a_failed_push_changes_nothing(model_dir, hub, tmp_path, monkeypatch):
    hub.fail_next_commits = 2
    proc = cli(["-m", "hub", "push", model_dir, "--repo-id", "alice/r"], hub, tmp_home=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(hub.repos["alice/r"].commits) == 1 and "retrying" in proc.stderr
    # The Hub's rate limit (429 Too Many Requests) is waited out, until its window resets (+1 s).
    hub.fail_next_commits, hub.commit_failure, hub.rate_limit_reset = 2, (429, "TooManyRequests", "slow down"), 30
    waits = []
    monkeypatch.setattr("hub.push.time.sleep", waits.append)
    push(model_dir, "alice/limited", api=HfApi(endpoint=hub.url, token=TOKEN))
    assert len(hub.repos["alice/limited"].commits) == 1 and hub.fail_next_commits == 0 and waits == [31, 31]
    before = dict(hub.repos["alice/r"].branches["main"])
    hub.reject_commits = True  # another licence: a changed card, so there is a commit to refuse
    proc = cli(["-m", "hub", "push", model_dir, "--repo-id", "alice/r", "--license", "apache-2.0"], hub,
               tmp_home=tmp_path)
    assert proc.returncode == 1 and "push to alice/r failed" in proc.stderr, proc.stderr[-2000:]
    assert hub.repos["alice/r"].branches["main"] == before and len(hub.repos["alice/r"].commits) == 1
    # A failed first push leaves no empty repo behind.
    proc = cli(["-m", "hub", "push", model_dir, "--repo-id", "alice/new"], hub, tmp_home=tmp_path)
    assert proc.returncode == 1 and "alice/new" not in hub.repos


def test_a_server_error_is_retried_after_1_then_2_s_and_a_refusal_is_not_retried(model_dir, hub, monkeypatch, caplog):
    """5xx answers (500 too) are the Hub's own trouble: tried again, waiting 1, 2, 4 s. A 4xx refusal (a commit the Hub
    finds wrong) would be refused again: one try, and the error's first line, not its request ids."""
    waits = []
    monkeypatch.setattr("hub.push.time.sleep", waits.append)
    api = HfApi(endpoint=hub.url, token=TOKEN)
    hub.fail_next_commits, hub.commit_failure = 2, (500, "InternalServerError", "try later")
    push(model_dir, "alice/five", api=api)
    assert len(hub.repos["alice/five"].commits) == 1 and hub.fail_next_commits == 0 and waits == [1, 2]
    tries = re.findall(r"uploading failed \(Server error '500 Internal Server Error' for url '\S+': try later\); "
                       r"retrying in (\d) s \((\d)/(\d)\)", caplog.text)
    assert tries == [("1", "1", "3"), ("2", "2", "3")], caplog.text
    assert not hub.repos["alice/five"].private  # push's default: a public repo
    hub.requests.clear()
    hub.reject_commits = True
    with pytest.raises(PushError) as raised:
        push(model_dir, "alice/refused", api=api)
    assert sum("/commit/" in r for r in hub.requests) == 1 and waits == [1, 2]
    # The stand-in's reason phrase is Python's: "Unprocessable Content" from 3.13 (RFC 9110), "Entity" before.
    assert re.fullmatch(r"push to alice/refused failed: Client error '422 Unprocessable (Entity|Content)' for url "
                        r"'http://[\d.:]+/api/models/alice/refused/commit/main': commit rejected by the stand-in",
                        str(raised.value)), str(raised.value)


def test_a_card_given_is_pushed_from_a_folder_without_one(model_dir, hub, tmp_path):
    """push(card=...): the card pushed is the one given, whether or not the folder holds a README.md."""
    copy = tmp_path / "m"
    shutil.copytree(model_dir, copy)
    card = (copy / "README.md").read_text(encoding="utf-8").replace("# ", "# Given: ", 1)
    (copy / "README.md").unlink()
    push(str(copy), "alice/given", card=card, api=HfApi(endpoint=hub.url, token=TOKEN))
    assert hub.repos["alice/given"].branches["main"]["README.md"].decode() == card and not (copy / "README.md").exists()


def test_a_failure_is_said_in_one_line_without_a_token():
    """An HTTP error: its first line (status, URL, request id) and the Hub's reason, which huggingface_hub puts last
    (it was left out: "push failed: Client error '400 Bad Request' for url ..." said nothing of why). Other errors (the
    large-file upload's) give their reason on later lines: kept, after the error's type. A token is masked, and a long
    message cut at 500 characters."""
    from hub.push import _describe

    request = httpx2.Request("POST", "http://hub/api/models/alice/x/commit/main")
    first = "Client error '400 Bad Request' for url 'http://hub/api/models/alice/x/commit/main' (Request ID: Root=1-a)"
    reason = 'Invalid metadata in README.md.\n- "license" must be one of [apache-2.0, mit] hf_AbCdEfGh12'
    http = HfHubHTTPError(f"{first}\nFor more information check: https://developer.mozilla.org/\n\n{reason}",
                          response=httpx2.Response(400, request=request), server_message=reason)
    assert _describe(http) == (f'{first}: Invalid metadata in README.md. - "license" must be one of [apache-2.0, '
                               'mit] hf_***')
    said_already = HfHubHTTPError("404 Client Error: Repository Not Found for url 'x'\nRequest ID: 1",
                                  response=httpx2.Response(404, request=request), server_message="Repository not found")
    assert _describe(said_already) == "404 Client Error: Repository Not Found for url 'x'"
    assert _describe(ValueError("refused:\n  by the batch API hf_AbCdEfGh12 ")) == (
        "ValueError: refused: by the batch API hf_***")
    assert _describe(ValueError()) == "ValueError"
    assert _describe(RuntimeError("x" * 486)) == "RuntimeError: " + "x" * 486  # 500 characters: whole
    assert _describe(RuntimeError("x" * 487)) == "RuntimeError: " + "x" * 483 + "..."


def test_network_failures_are_clear_and_leave_no_empty_repo(model_dir, hub, tmp_path, monkeypatch):
    """An unreachable Hub (a closed port) and connections dropped at the commit: a PushError after the retries (they
    were raw httpx tracebacks), and the repo a failed first push created is deleted again."""
    monkeypatch.setattr("hub.push.time.sleep", lambda seconds: None)
    closed = HfApi(endpoint="http://127.0.0.1:9", token=TOKEN)
    with pytest.raises(PushError,
                       match="could not reach the Hugging Face Hub at http://127.0.0.1:9 to check the token"):
        push(model_dir, "alice/x", api=closed)
    hub.drop_commits = True
    with pytest.raises(PushError, match="push to alice/dropped failed"):
        push(model_dir, "alice/dropped", api=HfApi(endpoint=hub.url, token=TOKEN))
    assert "alice/dropped" not in hub.repos
    assert sum("/commit/" in r for r in hub.requests) == 4  # every try of the commit reached the stand-in


def test_large_file_uploads_are_retried_and_a_refused_one_leaves_no_repo(model_dir, hub, tmp_path):
    """The weights go through the LFS batch API before the commit: a storage error is retried; a refusal, which the
    client raises as a ValueError (not an HTTP error), was a raw traceback that left the new, empty repo behind."""
    hub.fail_next_lfs_uploads = 1
    proc = cli(["-m", "hub", "push", model_dir, "--repo-id", "alice/lfs"], hub, tmp_home=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert set(hub.repos["alice/lfs"].branches["main"]) == EXPECTED_FILES
    assert sum(r.startswith("PUT /lfs-storage/") for r in hub.requests) == 4  # 3 large files, one of them twice
    hub.lfs_objects.clear()
    hub.refuse_lfs_uploads = True
    proc = cli(["-m", "hub", "push", model_dir, "--repo-id", "alice/refused"], hub, tmp_home=tmp_path)
    assert proc.returncode == 1 and "push to alice/refused failed" in proc.stderr, proc.stderr[-2000:]
    assert "large files are refused by the stand-in" in proc.stderr and "Traceback" not in proc.stderr
    assert "alice/refused" not in hub.repos


def push_as_in_a_terminal(hub, tmp_path, *args: str) -> subprocess.Popen:
    """`python -m hub push ARGS` against the stand-in, with Ctrl-C raising KeyboardInterrupt as in a terminal: a process
    started in the background by a non-interactive shell (`pytest ... &`) ignores SIGINT, and so would the push."""
    as_in_a_terminal = ("import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
                        "runpy.run_module('hub', run_name='__main__', alter_sys=True)")
    return subprocess.Popen([sys.executable, "-c", as_in_a_terminal, "push", *args], cwd=ROOT,
                            env=standin_env(hub, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("stop, code, said", [(signal.SIGINT, 130, ""), (signal.SIGTERM, 143, "SIGTERM: ")],
                         ids=["ctrl-c", "sigterm"])
def test_a_push_interrupted_during_the_upload_leaves_no_repo(model_dir, hub, tmp_path, stop, code, said):
    """Ctrl-C or SIGTERM while the weights upload: the push stops, and the repo it had just created is deleted again
    (SIGTERM, Python's default, ended the process there and left the new repo empty)."""
    hub.lfs_gate = threading.Event()
    proc = push_as_in_a_terminal(hub, tmp_path, model_dir, "--repo-id", "alice/int")
    deadline = time.monotonic() + 60
    while not any(r.startswith("PUT /lfs-storage/") for r in hub.requests) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "alice/int" in hub.repos, proc.communicate()[1][-2000:]
    proc.send_signal(stop)
    time.sleep(0.5)
    hub.lfs_gate.set()  # the uploads in flight end (the client waits for its upload threads)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code and stderr.endswith(f"\n{said}stopped: nothing was pushed to alice/int\n"), (
        proc.returncode, stdout, stderr[-3000:], hub.requests)
    assert "Traceback" not in stderr
    assert "alice/int" not in hub.repos and not any("/commit/" in r for r in hub.requests)


@pytest.mark.parametrize("stops, code, said", [([signal.SIGINT], 130, ""), ([signal.SIGTERM], 143, "SIGTERM: "),
                                                ([signal.SIGINT, signal.SIGINT], 130, "")],
                         ids=["ctrl-c", "sigterm", "ctrl-c-twice"])
def test_a_stop_while_the_hub_makes_the_commit_waits_for_its_answer(model_dir, hub, tmp_path, stops, code, said):
    """Ctrl-C or SIGTERM once the commit request is out, before its answer: the Hub made the commit all the same, and
    the push said "nothing was pushed". It now waits for the answer and says where the export went; a second Ctrl-C
    stops at once and says that the commit may have landed."""
    assert cli(["-m", "hub", "push", model_dir, "--repo-id", "alice/wait"], hub, tmp_home=tmp_path).returncode == 0
    hub.commit_answer_gate = threading.Event()
    proc = push_as_in_a_terminal(hub, tmp_path, model_dir, "--repo-id", "alice/wait", "--license", "mit")
    deadline = time.monotonic() + 60
    while len(hub.repos["alice/wait"].commits) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    for stop in stops:
        time.sleep(0.5)
        proc.send_signal(stop)
    if len(stops) > 1:  # the push has ended without the answer
        assert proc.wait(timeout=60) == code
    time.sleep(0.5)
    hub.commit_answer_gate.set()
    stdout, stderr = proc.communicate(timeout=60)
    commit = hub.repos["alice/wait"].commits[-1]
    assert "license: mit" in commit["snapshot"]["README.md"].decode()  # the commit is made, whatever was said
    ended = ("stopped before the Hub answered the commit, which may have landed on alice/wait" if len(stops) > 1 else
             f"stopped after the push: pushed {model_dir} to alice/wait: {hub.url}/alice/wait/commit/{commit['oid']}")
    assert proc.returncode == code and stderr.endswith(f"\n{said}{ended}\n"), (stdout, stderr[-3000:])
    assert "waiting for the Hub's answer to the commit" in stderr and "Traceback" not in stderr


def test_a_stop_before_the_upload_to_an_existing_repo_says_nothing_was_pushed(model_dir, hub, monkeypatch):
    """Ctrl-C while a push to a repo that exists looks at it, before any upload: nothing was sent, which is what is
    said (not that a commit may have landed, which only a stop while the commit is out can leave unknown)."""
    api = HfApi(endpoint=hub.url, token=TOKEN)
    push(model_dir, "alice/early", api=api)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "list_repo_files", interrupted)
    with pytest.raises(KeyboardInterrupt) as stop:
        push(model_dir, "alice/early", api=api)
    assert stopped_push(model_dir, "alice/early", None, stop.value) == ("stopped: nothing was pushed to alice/early",
                                                                         True)
    assert len(hub.repos["alice/early"].commits) == 1


@pytest.mark.parametrize("stop, code, said", [(signal.SIGINT, 130, ""), (signal.SIGTERM, 143, "SIGTERM: ")],
                         ids=["ctrl-c", "sigterm"])
def test_a_signal_in_the_push_at_the_end_of_training_says_how_to_push(model_dir, hub, monkeypatch, capsys, stop, code,
                                                                        said):
    """The push that ends a training run, stopped by Ctrl-C or SIGTERM (push() leaves the Hub as it was: the test
    above): a traceback said neither that the model is exported nor how to push it; SIGTERM, nothing at all."""
    def stopped(*args, **kwargs):
        if stop == signal.SIGINT:
            raise KeyboardInterrupt
        # Python's default here would end this test session.
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL, "SIGTERM would end the process in the push"
        signal.raise_signal(stop)
        time.sleep(10)  # the handler raises before this ends

    monkeypatch.setattr("run_simcse.push", stopped)
    settings = types.SimpleNamespace(hub_private_repo=True, hub_revision="v1")
    try:
        with pytest.raises(SystemExit) as stopped_run:
            run_simcse.push_export(model_dir, "alice/int", settings, TOKEN)
    except (KeyboardInterrupt, Terminated):  # uncaught, it would end the whole test session
        pytest.fail("the signal ended the push with a traceback")
    assert stopped_run.value.code == code and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert capsys.readouterr().err == (f"\n{said}stopped: nothing was pushed to alice/int. The model is exported in "
                                       f"{model_dir}; push it with `python -m hub push {model_dir} --repo-id alice/int "
                                       "--private --revision v1`\n")


def test_a_stop_after_the_commit_in_the_push_at_the_end_of_training_says_where_it_went(model_dir, monkeypatch, capsys):
    """The same push, stopped after the Hub made its commit (the stop came while it made it: the test of `python -m
    hub push` above): the run says where the export went, not that nothing was pushed nor how to push it."""
    def stopped_after_the_commit(*args, **kwargs):
        stop = KeyboardInterrupt()
        stop.push_outcome = Pushed("https://hf.co/alice/int/commit/0123abcd", True)
        raise stop

    monkeypatch.setattr("run_simcse.push", stopped_after_the_commit)
    settings = types.SimpleNamespace(hub_private_repo=False, hub_revision="v1")
    with pytest.raises(SystemExit) as stopped_run:
        run_simcse.push_export(model_dir, "alice/int", settings, TOKEN)
    assert stopped_run.value.code == 130
    assert capsys.readouterr().err == (f"\nstopped after the push: pushed {model_dir} to alice/int (branch v1): "
                                       "https://hf.co/alice/int/commit/0123abcd\n")


def test_a_push_over_an_earlier_export_leaves_none_of_its_files(model_dir, hub, tmp_path):
    """A second push, of a model without the first one's 2_Dense/ and tokenizer vocabulary: a commit that only added
    files left them in the repo beside the new model. Files of other kinds (the owner's) stay."""
    first = shutil.copytree(model_dir, tmp_path / "first", ignore=shutil.ignore_patterns("checkpoint-*"))
    (first / "merges.txt").write_text("#version: 0.2\n")  # another tokenizer's file
    (first / "notes.md").write_text("not of an export")  # never pushed: not a published kind
    assert cli(["-m", "hub", "push", str(first), "--repo-id", "alice/again"], hub, tmp_home=tmp_path).returncode == 0
    hub.repos["alice/again"].branches["main"]["onnx/model.onnx"] = b"the owner's"  # uploaded by other means
    second = shutil.copytree(model_dir, tmp_path / "second", ignore=shutil.ignore_patterns("checkpoint-*", "2_Dense"))
    _modules_without("Dense")(second)  # and of an embedding without the MLP, as a cls_before_pooler export is
    _embedding("cls")(second)
    proc = cli(["-m", "hub", "push", str(second), "--repo-id", "alice/again", "--card-as-is"], hub, tmp_home=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    repo = hub.repos["alice/again"]
    assert len(repo.commits) == 2 and repo.commits[1]["deleted"] == ["2_Dense/config.json", "2_Dense/model.safetensors",
                                                                     "merges.txt"]
    assert set(repo.branches["main"]) == EXPECTED_FILES - {"2_Dense/config.json", "2_Dense/model.safetensors"} | {
        "onnx/model.onnx"}


def test_a_push_another_one_overtook_is_refused_whole(model_dir, hub):
    """Another push landing between this one's look at the branch and its commit (a tokenizer file of another export):
    the commit went on top of it, which left that file beside this export's. It is made on the commit it looked at
    now, so the Hub refuses it and the repo keeps the other push whole; pushing again then replaces it."""
    api = HfApi(endpoint=hub.url, token=TOKEN)
    push(model_dir, "alice/race", api=api)
    seen = hub.repos["alice/race"].sha("main")
    card = open(os.path.join(model_dir, "README.md"), encoding="utf-8").read() + "\nEdited.\n"  # something to commit

    class Overtaken(HfApi):
        def create_commit(self, *args, **kwargs):
            if len(hub.repos["alice/race"].commits) == 1:  # the other push, as this one is about to commit
                HfApi(endpoint=hub.url, token=TOKEN).upload_file(
                    path_or_fileobj=b"#version: 0.2\n", path_in_repo="merges.txt", repo_id="alice/race")
            return super().create_commit(*args, **kwargs)

    said = (f"push to alice/race stopped: the default branch moved on from commit {seen[:8]} while this push was "
            "under way (a commit from elsewhere; nothing of this push was committed). Push again:")
    with pytest.raises(PushError, match=re.escape(said)):
        push(model_dir, "alice/race", card=card, api=Overtaken(endpoint=hub.url, token=TOKEN))
    repo = hub.repos["alice/race"]
    assert len(repo.commits) == 2 and set(repo.branches["main"]) == EXPECTED_FILES | {"merges.txt"}
    assert "Edited." not in repo.branches["main"]["README.md"].decode()
    again = push(model_dir, "alice/race", card=card, api=api)
    assert again.new_commit and repo.commits[-1]["deleted"] == ["merges.txt"]
    assert set(repo.branches["main"]) == EXPECTED_FILES


@pytest.mark.parametrize("parent_checked_first", [True, False], ids=["parent-then-files", "files-then-parent"])
def test_a_commit_whose_answer_was_lost_is_not_made_twice(model_dir, hub, tmp_path, monkeypatch, parent_checked_first):
    """The commit landed and its answer was lost on the way: the retry finds every file on the branch and makes no
    second commit; where the push also deleted files, whose deletion cannot be sent twice, it says that its first
    try may have landed (whether the Hub refuses the retry for its parent commit or for a file it has not), and
    pushing again says the branch holds the export."""
    monkeypatch.setattr("hub.push.time.sleep", lambda seconds: None)
    hub.parent_checked_first = parent_checked_first
    api = HfApi(endpoint=hub.url, token=TOKEN)
    hub.lose_next_commit_answers = 1
    pushed = push(model_dir, "alice/lost", api=api)
    repo = hub.repos["alice/lost"]
    assert pushed == (f"{hub.url}/alice/lost/commit/{repo.sha('main')}", True) and len(repo.commits) == 1
    earlier = shutil.copytree(model_dir, tmp_path / "earlier", ignore=shutil.ignore_patterns("checkpoint-*"))
    (earlier / "merges.txt").write_text("#version: 0.2\n")
    push(str(earlier), "alice/lost", api=api)
    seen = repo.sha("main")
    hub.lose_next_commit_answers = 1
    said = (f"the default branch moved on from commit {seen[:8]} while this push was under way (a commit from "
            "elsewhere, or this push's own earlier try, whose answer was lost on the way and which may have landed).")
    with pytest.raises(PushError, match=re.escape(said)):
        push(model_dir, "alice/lost", api=api)
    assert len(repo.commits) == 3 and set(repo.branches["main"]) == EXPECTED_FILES  # the first try's commit, whole
    assert push(model_dir, "alice/lost", api=api) == (f"{hub.url}/alice/lost/commit/{repo.sha('main')}", False)


def test_a_branch_name_git_refuses_stops_the_push_before_anything_is_sent(model_dir, hub, tmp_path):
    """The Hub's branches are git's: a name `git check-ref-format --branch` refuses failed at the Hub, for a push at the
    end of training after all of it."""
    api = HfApi(endpoint=hub.url, token=TOKEN)
    for name in ("lr 3e-5", "a..b", "exp/", "-x", "v1.lock", "@", "v1~2", "a:b", ".hidden"):
        with pytest.raises(PushError, match=f"revision {re.escape(repr(name))} is not a branch name git accepts"):
            push(model_dir, "alice/rev", revision=name, api=api)
    assert hub.requests == []
    config = smoke_config(tmp_path, push_to_hub=True, hub_model_id="alice/from-training", hub_revision="lr 3e-5")
    with pytest.raises(SystemExit, match="revision 'lr 3e-5' is not a branch name git accepts"):
        run_simcse.main([config])
    assert not (tmp_path / "out").exists() and hub.requests == []
    for name in ("exp/lr-3e-5", "v1.0", "실험", "a@b"):
        check_revision(name)


def test_offline_mode_stops_the_push_at_once_and_says_so(model_dir, hub, tmp_path, monkeypatch):
    """HF_HUB_OFFLINE=1 (the README's advice for running offline) makes huggingface_hub refuse every request with a
    ConnectionError: the push retried it for 7 s, then told the user to check the network."""
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("hub.push.time.sleep", lambda seconds: pytest.fail("an offline refusal was retried"))
    said = "HF_HUB_OFFLINE is set, so huggingface_hub sends nothing to the Hub: unset it to push"
    with pytest.raises(PushError, match=said):
        push(model_dir, "alice/off", api=HfApi(endpoint=hub.url, token=TOKEN))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    config = smoke_config(tmp_path, push_to_hub=True, hub_model_id="alice/from-training")
    with pytest.raises(SystemExit, match=said):
        run_simcse.main([config])
    assert not (tmp_path / "out").exists() and hub.requests == []


def test_a_failed_push_to_a_new_branch_leaves_no_branch_behind(model_dir, hub, tmp_path):
    """--revision of a branch the repo has not: the push creates it from the default branch, then commits. A failed
    commit left the new branch behind in the existing repo; it is deleted again, and a branch that was there stays."""
    hub.add_repo("alice/br", {"README.md": b"the owner's card"})
    hub.reject_commits = True
    proc = cli(["-m", "hub", "push", model_dir, "--repo-id", "alice/br", "--revision", "v2"], hub, tmp_home=tmp_path)
    assert proc.returncode == 1 and "push to alice/br failed" in proc.stderr, proc.stderr[-2000:]
    repo = hub.repos["alice/br"]
    assert set(repo.branches) == {"main"} and repo.branches["main"] == {"README.md": b"the owner's card"}
    repo.branches["v3"] = {"config.json": b"{}"}
    proc = cli(["-m", "hub", "push", model_dir, "--repo-id", "alice/br", "--revision", "v3"], hub, tmp_home=tmp_path)
    assert proc.returncode == 1 and repo.branches["v3"] == {"config.json": b"{}"}


def test_a_failed_push_whose_clean_up_fails_says_what_it_left_and_reports_its_own_error(model_dir, hub, caplog):
    """The deletion of the repo (or branch) a failed push made can fail too: a warning names what is left on the Hub,
    and the error raised is the push's, not the deletion's."""
    api = HfApi(endpoint=hub.url, token=TOKEN)
    hub.reject_commits = hub.refuse_deletions = True
    with pytest.raises(PushError, match=r"^push to alice/left failed: .*422.*commit rejected by the stand-in$"):
        push(model_dir, "alice/left", api=api)
    assert "could not remove the empty repo alice/left after the failed push" in caplog.text
    assert hub.repos["alice/left"].commits == [] and "DELETE /api/repos/delete" in hub.requests
    caplog.clear()
    with pytest.raises(PushError, match=r"^push to alice/left failed: .*422"):
        push(model_dir, "alice/left", revision="v2", api=api)
    assert "could not remove the branch v2 of alice/left after the failed push" in caplog.text
    assert "v2" in hub.repos["alice/left"].branches and hub.requests[-1] == "DELETE /api/models/alice/left/branch/v2"


def test_a_push_that_fails_before_making_its_branch_deletes_no_branch(model_dir, hub):
    """A failure before the branch is made (here the repo's creation, on a repo that exists) leaves the branches as
    they were: only a branch this push made is deleted after its failure."""
    hub.add_repo("alice/kept", {"README.md": b"the owner's card"})
    hub.repos["alice/kept"].branches["v3"] = {"config.json": b"{}"}

    class Refused(HfApi):
        def create_repo(self, *args, **kwargs):
            raise RuntimeError("refused here")

    with pytest.raises(PushError, match="push to alice/kept failed: RuntimeError: refused here"):
        push(model_dir, "alice/kept", revision="v3", api=Refused(endpoint=hub.url, token=TOKEN))
    assert hub.repos["alice/kept"].branches["v3"] == {"config.json": b"{}"}
    assert not any(r.startswith("DELETE") for r in hub.requests)


def test_push_to_a_branch(model_dir, hub, tmp_path):
    """The card on the branch loads the branch: its snippets loaded the default branch, which holds no model."""
    proc = cli(["-m", "hub", "push", model_dir, "--repo-id", "alice/b", "--revision", "v1"], hub, tmp_home=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    repo = hub.repos["alice/b"]
    assert repo.branches["main"] == {} and set(repo.branches["v1"]) == EXPECTED_FILES
    assert f"pushed {model_dir} to alice/b (branch v1): {hub.url}/alice/b/commit/{repo.sha('v1')}" in proc.stdout
    card = repo.branches["v1"]["README.md"].decode()
    assert card.count('from_pretrained("alice/b", revision="v1")') == 2
    assert 'SentenceTransformer("alice/b", revision="v1")' in card
    assert 'revision=' not in open(os.path.join(model_dir, "README.md")).read()  # the folder's card is left alone
    # The branch exists now (the Hub answers its creation with 409): a push again finds it holds the export.
    proc = cli(["-m", "hub", "push", model_dir, "--repo-id", "alice/b", "--revision", "v1"], hub, tmp_home=tmp_path)
    assert proc.returncode == 0 and f"nothing to push: alice/b (branch v1) holds {model_dir}'s files already" in (
        proc.stdout), proc.stderr[-2000:]
    load = ("from sentence_transformers import SentenceTransformer\n"
            "print(SentenceTransformer('alice/b', revision='v1', device='cpu').encode(['남자가 걷는다.']).shape)\n")
    proc = cli(["-c", load], hub, tmp_home=tmp_path / "h2")
    assert proc.returncode == 0 and "(1, " in proc.stdout, proc.stderr[-3000:]


def test_a_branch_pushed_to_is_scored_from_the_hub_with_revision(model_dir, hub, tmp_path, capsys):
    """`sts_evaluation.py <repo> --revision <branch>` scores the export that `push --revision` put on a branch, as the
    folder scored; the evaluation had no way to name a branch or a commit. A revision, or a repo, that the Hub has not
    is an error naming it (a repo id it has not, mistyped or private, was a traceback)."""
    push(model_dir, "alice/rev", revision="v1", api=HfApi(endpoint=hub.url, token=TOKEN))
    score = ["sts_evaluation.py", "alice/rev", "--set", f"sample-sts={SAMPLE}/sts.tsv"]
    proc = cli(score + ["--revision", "v1", "--output", str(tmp_path / "r.json")], hub, tmp_home=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(os.path.join(model_dir, "sts_results.json")) as f:
        assert json.loads((tmp_path / "r.json").read_text())["sample-sts"] == pytest.approx(
            json.load(f)["sample-sts"], abs=1e-4)
    proc = cli(score + ["--revision", "v2"], hub, tmp_home=tmp_path)
    assert proc.returncode == 1 and proc.stderr.startswith(
        "error: alice/rev: no such folder here, so read as a Hub id: v2 is not a valid git identifier"), proc.stderr
    proc = cli(["sts_evaluation.py", "alice/no-such", "--set", f"s={SAMPLE}/sts.tsv"], hub, tmp_home=tmp_path)
    assert proc.returncode == 1 and proc.stderr.startswith(
        "error: alice/no-such: no such folder here, so read as a Hub id: alice/no-such is not a local folder "
        "and is not a valid model identifier"), proc.stderr
    with pytest.raises(SystemExit, match="2"):
        sts_evaluation.main([model_dir, "--revision", "v1"])
    assert f"--revision v1: {model_dir} is a folder here, which has no versions" in capsys.readouterr().err


def test_training_starts_from_a_branch_of_a_hub_model_with_model_revision(model_dir, hub, tmp_path):
    """model_revision: the encoder, its config and tokenizer from a branch (or tag, or commit) of a Hub model; the card
    names it. Without it the default branch is read (no model there: an error naming the model before anything is
    written); a folder has no versions."""
    push(model_dir, "alice/base", revision="v1", api=HfApi(endpoint=hub.url, token=TOKEN))
    scratch = {"model_type": None, "config_overrides": None, "train_tokenizer_vocab_size": None, "max_steps": 2}
    config = smoke_config(tmp_path, model_name_or_path="alice/base", model_revision="v1", **scratch)
    proc = cli(["run_simcse.py", config], hub, tmp_home=tmp_path / "home")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "out"
    assert "| base model | `alice/base` at revision `v1` |" in (out / "README.md").read_text()
    assert json.loads((out / "run_args.json").read_text())["model_revision"] == "v1"
    shutil.rmtree(out)
    proc = cli(["run_simcse.py", smoke_config(tmp_path, model_name_or_path="alice/base", **scratch)], hub,
               tmp_home=tmp_path / "home")
    assert proc.returncode == 1 and "\nerror: alice/base: no such folder here, so read as a Hub id" in proc.stderr, (
        proc.stderr[-3000:])
    assert not out.exists()
    with pytest.raises(SystemExit, match=f"model_revision v1: it names a branch, tag or commit of a Hub model, and "
                                         f"model_name_or_path {re.escape(model_dir)} is a folder here"):
        run_arguments.parse_arguments([smoke_config(tmp_path, model_name_or_path=model_dir, model_revision="v1",
                                                    **scratch)])


def test_a_tokenizer_from_a_branch_of_a_hub_model_with_tokenizer_revision(model_dir, hub, tmp_path):
    """tokenizer_revision: tokenizer_name read from a branch (or tag, or commit); the card names both. A folder has no
    versions, and a revision of no named tokenizer is refused."""
    push(model_dir, "alice/tok", revision="v1", api=HfApi(endpoint=hub.url, token=TOKEN))
    changes = {"train_tokenizer_vocab_size": None, "tokenizer_name": "alice/tok", "max_steps": 2}
    proc = cli(["run_simcse.py", smoke_config(tmp_path, tokenizer_revision="v1", **changes)], hub,
               tmp_home=tmp_path / "home")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "out"
    assert "| tokenizer | `alice/tok` at revision `v1` |" in (out / "README.md").read_text()
    assert json.loads((out / "run_args.json").read_text())["tokenizer_revision"] == "v1"
    shutil.rmtree(out)
    proc = cli(["run_simcse.py", smoke_config(tmp_path, **changes)], hub, tmp_home=tmp_path / "home")
    assert proc.returncode == 1 and "\nerror: alice/tok: no such folder here, so read as a Hub id" in proc.stderr, (
        proc.stderr[-3000:])
    assert not out.exists()
    for changed, said in [({"tokenizer_name": model_dir}, f"tokenizer_name {re.escape(model_dir)} is a folder here"),
                          ({"train_tokenizer_vocab_size": 600, "tokenizer_name": None},
                           r"no tokenizer_name is given \(model_revision pins the model's own tokenizer too\)")]:
        with pytest.raises(SystemExit, match="tokenizer_revision v1: it names a branch, tag or commit of a Hub "
                                             "model, and " + said):
            run_arguments.parse_arguments([smoke_config(tmp_path, tokenizer_revision="v1", **{**changes, **changed})])


def test_training_with_push_checks_the_token_first(hub, tmp_path):
    config = smoke_config(tmp_path, push_to_hub=True, hub_model_id="alice/from-training")
    proc = cli(["run_simcse.py", config], hub, token="hf_badBadBadToken0000", tmp_home=tmp_path / "h")
    assert proc.returncode != 0 and "refused the token" in proc.stderr
    assert not (tmp_path / "out").exists()
    hub.private_by_default.add("alice")  # no hub_private_repo: the owner's settings decide, as without --private
    proc = cli(["run_simcse.py", config], hub, tmp_home=tmp_path / "h")
    assert proc.returncode == 0, proc.stderr[-3000:]
    repo = hub.repos["alice/from-training"]
    assert len(repo.commits) == 1 and set(repo.branches["main"]) == EXPECTED_FILES and repo.private
    # A push that fails after training says where the export is and how to push it again, as asked: public (the
    # command had no flag for that, so it gave the owner's default, private here).
    hub.reject_commits = True
    again = tmp_path / "again"
    again.mkdir()
    config = smoke_config(again, push_to_hub=True, hub_model_id="alice/rejected", hub_private_repo=False)
    proc = cli(["run_simcse.py", config], hub, tmp_home=tmp_path / "h")
    assert proc.returncode != 0 and "push to alice/rejected failed" in proc.stderr
    command = f"python -m hub push {again / 'out'} --repo-id alice/rejected --no-private"
    assert f"{command}`" in proc.stderr, proc.stderr[-3000:]
    assert (again / "out" / "model.safetensors").is_file() and "alice/rejected" not in hub.repos
    hub.reject_commits = False
    proc = cli(command.split()[1:], hub, tmp_home=tmp_path / "h")
    assert proc.returncode == 0 and not hub.repos["alice/rejected"].private, proc.stderr[-3000:]


def test_training_push_takes_the_hub_settings_of_the_json(hub, tmp_path):
    """hub_token, hub_private_repo and hub_revision, TrainingArguments' own keys: the token was ignored (no HF_TOKEN
    here, so the run stopped at start-up); it reaches no file the run writes (checkpoints' training_args.bin held it)
    and no log."""
    config = smoke_config(tmp_path, push_to_hub=True, hub_model_id="alice/from-json", hub_token=TOKEN,
                          hub_private_repo=True, hub_revision="v1", num_train_epochs=1)
    proc = cli(["run_simcse.py", config], hub, tmp_home=tmp_path / "h", token=None)
    assert proc.returncode == 0, proc.stderr[-3000:]
    repo = hub.repos["alice/from-json"]
    assert repo.private and [c["branch"] for c in repo.commits] == ["v1"] and set(repo.branches["v1"]) == EXPECTED_FILES
    assert 'AutoModel.from_pretrained("alice/from-json", revision="v1")' in repo.branches["v1"]["README.md"].decode()
    assert f"to alice/from-json (branch v1): {hub.url}/alice/from-json/commit/{repo.sha('v1')}" in proc.stdout
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert written == [] and TOKEN not in proc.stdout + proc.stderr
