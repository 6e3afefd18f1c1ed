"""MODEL_CARD.md agrees with the reference run's own files in reference_run/."""

import json
import os
import re

from huggingface_hub import ModelCard

from conftest import ROOT
from hub.card import training_settings
from hub.model_dir import METRIC_NAMES, load_results

RUN = os.path.join(ROOT, "reference_run")


def card() -> ModelCard:
    return ModelCard.load(os.path.join(ROOT, "MODEL_CARD.md"))


def test_model_index_matches_results():
    results = load_results(RUN)
    index = {(r.dataset_name, r.metric_type): r.metric_value for r in card().data.eval_results}
    titles = {"korsts-test": "KorSTS test", "klue-sts-dev": "KLUE-STS dev"}
    assert len(index) == 9 * len(results)
    for name, metrics in results.items():
        for metric in METRIC_NAMES:
            sim, _, corr = metric.partition("_")
            key = "avg_8" if metric == "avg" else f"{corr}_{sim}"
            assert index[(titles[name], key)] == round(metrics[metric], 2), (name, metric)


def test_tables_match_results():
    text, results = card().text, load_results(RUN)
    titles = {"korsts-test": "### KorSTS test", "klue-sts-dev": "### KLUE-STS dev"}
    for name, metrics in results.items():
        section = text.split(titles[name])[1]
        row = next(line for line in section.splitlines() if "(this model)" in line)
        assert [float(x.strip(" *")) for x in row.split("|")[2:-1]] == [round(metrics[m], 2) for m in METRIC_NAMES]
    # Every other row is a labelled comparison, never a number of ours without a source.
    for line in text.splitlines():
        if line.startswith("| ") and re.search(r"\d\d\.\d\d", line) and "(this model)" not in line:
            assert "published, not re-measured" in line, line


def test_settings_and_figure_match_the_run():
    text = card().text
    with open(os.path.join(RUN, "run_args.json")) as f:
        args = json.load(f)
    with open(os.path.join(RUN, "train_results.json")) as f:
        train = json.load(f)
    with open(os.path.join(RUN, "trainer_state.json")) as f:
        state = json.load(f)
    assert f"| epochs | {state['epoch']:g} ({state['global_step']} steps) |" in text
    assert f"| batch | {args['per_device_train_batch_size']} (" in text
    assert f"| training time | {train['train_runtime']:.0f} s |" in text
    assert f"| seed | {args['seed']} |" in text
    # The whole settings table is the one the run's own files give.
    with open(os.path.join(RUN, "environment.json")) as f:
        environment = json.load(f)
    with open(os.path.join(RUN, "config.json")) as f:
        exported_config = json.load(f)
    rows = [f"| {k} | {v} |" for k, v in training_settings(args, environment, train, state, exported_config)]
    table = text.split("| setting | value |\n|---|---|\n")[1].split("\n\n")[0]
    assert table.splitlines() == rows
    assert "![dev score over training steps](reference_run/dev_scores.png)" in text
    assert os.path.isfile(os.path.join(RUN, "dev_scores.png"))
    assert any("eval_cosine_spearman" in e for e in state["log_history"])
