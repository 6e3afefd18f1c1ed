"""Render the model card (`README.md`) of an exported model folder from the run's own files.

Inputs, all written by `run_simcse.py` into the folder: `sts_results.json` (the numbers), `run_args.json` (the
settings), `config.json` (`simcse` block: the embedding), `trainer_state.json` (dev scores over training),
`train_results.json` and `environment.json` (time and hardware). Output: `README.md` with YAML metadata and a
`model-index` (huggingface_hub `ModelCard`/`ModelCardData`/`EvalResult`), and `dev_scores.png`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from data_sources import DataError, Source, is_repo_id
from hub.model_dir import (DEV_SCORE_SCHEDULERS, LAYER_POOLERS, METRIC_NAMES, RUN_ARGS_FILE, SIMILARITIES,
                           ModelDirError, check_export, load_results, read_json, weight_names, whole_file)

TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "card_template.md")
PLOT_FILE = "dev_scores.png"
CARD_FILE = "README.md"
DEFAULT_LICENSE = "cc-by-sa-4.0"  # the licence of KorNLI/KorSTS and KLUE
PUBLISHED_MARK = "published, not re-measured"  # in each comparison row's label

# Published SimCSE-KO figures (its model card), shown only as labelled comparison rows; None = not published.
PUBLISHED = {
    "korsts-test": {
        "SimCSE-BERT-KO (unsup)": {"avg": 72.85, "cosine_spearman": 72.77},
        "SimCSE-BERT-KO (sup)": {"avg": 85.98, "cosine_spearman": 86.00},
        "SimCSE-RoBERTa-KO (unsup)": {"avg": 75.79, "cosine_spearman": 75.57},
        "SimCSE-RoBERTa-KO (sup)": {"avg": 83.06, "cosine_spearman": 83.21},
    },
    "klue-sts-dev": {
        "SimCSE-BERT-KO (unsup)": {"avg": 65.27},
        "SimCSE-BERT-KO (sup)": {"avg": 83.96},
        "SimCSE-RoBERTa-KO (unsup)": {"avg": 80.78},
        "SimCSE-RoBERTa-KO (sup)": {"avg": 85.31},
    },
}
SET_TITLES = {"korsts-test": "KorSTS test", "klue-sts-dev": "KLUE-STS dev", "korsts-dev": "KorSTS dev"}
# model-index datasets: set name's prefix -> (type, config). KLUE-STS is the Hub's klue/klue, config sts, whose dev
# set is split "validation"; KorSTS has no Hub copy that is its files (kakaobrain/kor_nlu's sts drops rows of train
# and dev).
DATASETS = {"korsts": ("korsts", None), "klue-sts": ("klue/klue", "sts")}
HUB_SPLITS = {"klue/klue": {"dev": "validation"}}
COLUMN_TITLES = ["AVG"] + [f"{s.capitalize()} {c}" for s in SIMILARITIES for c in ("Pearson", "Spearman")]

USAGE = {  # indented into the card's `with torch.no_grad():` block
    "pooler_output": "    embeddings = model(**batch).pooler_output  # CLS + the trained MLP (folded into the pooler)",
    "cls": "    embeddings = model(**batch).last_hidden_state[:, 0]  # the CLS state (not pooler_output)",
    "avg": ("    hidden = model(**batch).last_hidden_state\n"
            "    mask = batch[\"attention_mask\"].unsqueeze(-1).float()\n"
            "    embeddings = (hidden * mask).sum(1) / mask.sum(1)  # mean over real tokens"),
    "avg_first_last": ("    states = model(**batch, output_hidden_states=True).hidden_states\n"
                       "    mask = batch[\"attention_mask\"].unsqueeze(-1).float()\n"
                       "    embeddings = ((states[1] + states[-1]) / 2 * mask).sum(1) / mask.sum(1)"),
    "avg_top2": ("    states = model(**batch, output_hidden_states=True).hidden_states\n"
                 "    mask = batch[\"attention_mask\"].unsqueeze(-1).float()\n"
                 "    embeddings = ((states[-1] + states[-2]) / 2 * mask).sum(1) / mask.sum(1)"),
}
EMBEDDING_TEXT = {
    "pooler_output": "the CLS token's final hidden state passed through the trained MLP (`pooler_output`)",
    "cls": "the CLS token's final hidden state (`last_hidden_state[:, 0]`, without any MLP)",
    "avg": "the mean of the final hidden states of the non-padding tokens",
    "avg_first_last": "the mean over non-padding tokens of the average of the first and last layers",
    "avg_top2": "the mean over non-padding tokens of the average of the last two layers",
}


def results_table(name: str, metrics: dict[str, float], model_name: str, compare: bool) -> str:
    """One eval set as a Markdown table: this model's row, then the published comparison rows; best per column bold."""
    rows = [(f"**{model_name}** (this model)", metrics)]
    if compare:
        rows += [(f"{label} — {PUBLISHED_MARK}", values) for label, values in PUBLISHED.get(name, {}).items()]
    # Compared as shown (2 decimals): values that read alike are bold alike.
    shown = [{m: round(values[m], 2) for m in METRIC_NAMES if values.get(m) is not None} for _, values in rows]
    present = {m: [r[m] for r in shown if m in r] for m in METRIC_NAMES}
    best = {m: max(v) if len(v) > 1 else None for m, v in present.items()}  # bold only where rows compete
    lines = ["| model | " + " | ".join(COLUMN_TITLES) + " |", "|---|" + "---|" * len(COLUMN_TITLES)]
    for (label, _), values in zip(rows, shown, strict=True):
        cells = []
        for m in METRIC_NAMES:
            value = values.get(m)
            cell = "–" if value is None else f"{value:.2f}"
            cells.append(f"**{cell}**" if value is not None and value == best[m] else cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def eval_results(results: dict[str, dict[str, float]], model_name: str) -> list[EvalResult]:
    """The model-index entries: every metric of every set."""
    out = []
    for name, metrics in results.items():
        prefix, _, suffix = name.rpartition("-")
        dataset, config = DATASETS.get(prefix, (name, None))
        split = suffix if suffix in ("train", "dev", "test", "validation") else None
        split = HUB_SPLITS.get(dataset, {}).get(split, split)
        for metric in METRIC_NAMES:
            sim, _, corr = metric.partition("_")
            out.append(EvalResult(
                task_type="semantic-similarity", task_name="Semantic Similarity", dataset_type=dataset,
                dataset_name=SET_TITLES.get(name, name), dataset_config=config, dataset_split=split,
                metric_type="avg_8" if metric == "avg" else f"{corr}_{sim}",
                metric_name="AVG of 8 correlations" if metric == "avg" else f"{corr.capitalize()} ({sim})",
                metric_value=round(metrics[metric], 2),
            ))
    return out


def not_held_out(shared: int, total: int) -> bool:
    """Whether a test set with `shared` of its `total` pairs in the dev set is that set rather than a held-out one
    (KorSTS-test shares a handful of pairs with KorSTS-dev, as STS-B's splits do)."""
    return shared > 0 and 2 * shared >= total


def held_out_note(name: str, args: dict, environment: dict) -> str:
    """The card's word under a test set's table where its pairs are mostly those of the dev set that chose the
    checkpoint; "" where they are not, or where no checkpoint was chosen (the final model exported)."""
    shared, total = environment.get("test_pairs_in_dev", {}).get(name, (0, 0))
    if not (args.get("load_best_model_at_end") and not_held_out(shared, total)):
        return ""
    return (f"Not held out: {shared:,} of these {total:,} pairs are in the dev set (`{args.get('dev_data')}`) that "
            "chose the checkpoint, and scores on the set a checkpoint was chosen on are biased upwards.")


def hub_datasets(train_data: list[str]) -> list[str]:
    """The Hub dataset ids among the training sources: the Hub refuses a card whose `datasets` lists a path. A source
    that is no file or folder here is read by its form; the run records its own answer (environment.json), since a
    card may be rendered elsewhere, where a relative folder (a dataset saved with save_to_disk) reads as a Hub id."""
    ids = set()
    for spec in train_data:
        try:
            repo = Source.parse(spec).repo
        except DataError:  # no file, URL or Hub id: a path of another machine
            continue
        if repo and is_repo_id(repo):
            ids.add(repo)
    return sorted(ids)


# Works the card cites beside SimCSE, and what in run_args.json shows the run used them: a pattern found in a training,
# dev or test source (its path, URL or Hub id) or a test set's name, or (KLUE's encoders) in the model or tokenizer.
# KorNLI/KorSTS: kakaobrain's KorNLUDatasets, the Hub's kakaobrain/kor_nli, KorNLI's files (multinli.train.ko.tsv).
CITED_DATA = {"kornlu": re.compile(r"kor[-_]?(nli|sts|nlu)|nli[^/]*\.ko\.tsv", re.IGNORECASE),
              "klue": re.compile(r"klue", re.IGNORECASE)}
CITED_MODELS = {"klue": re.compile(r"(^|/)klue/", re.IGNORECASE)}  # klue/bert-base, klue/roberta-base, ...


def cited_works(args: dict) -> dict[str, bool]:
    """run_args.json -> {work: whether the card cites it} for the works of `CITED_DATA`: a card cites the datasets the
    run trained and was scored on (and the paper of a KLUE encoder it started from), not every Korean benchmark."""
    data = [*args.get("train_data", []), args.get("dev_data") or "", *args.get("test_data", [])]
    models = [args.get("model_name_or_path") or "", args.get("tokenizer_name") or ""]
    return {work: any(pattern.search(spec) for spec in data)
            or any(CITED_MODELS[work].search(name) for name in models if work in CITED_MODELS)
            for work, pattern in CITED_DATA.items()}


def base_model_id(args: dict, environment: dict) -> str | None:
    """The Hub id of the encoder the run started from, None for a local folder or a model made from a config: as the
    run recorded it (`hub_base_model` in environment.json), else (earlier runs) a `model_name_or_path` that is a repo id
    and no folder here."""
    if "hub_base_model" in environment:
        return environment["hub_base_model"]
    name = args.get("model_name_or_path")
    return name if name and not os.path.isdir(name) and is_repo_id(name) else None


def dev_points(state: dict, metric: str) -> list[tuple[int, float]]:
    """trainer_state.json's contents -> the (step, eval_<metric>) pairs of its dev evaluations."""
    key = f"eval_{metric}"
    return [(e["step"], e[key]) for e in state.get("log_history", []) if key in e]


def kept_best(args: dict, state: dict) -> bool:
    """run_args.json and trainer_state.json -> whether the export holds the best checkpoint on the dev set
    (load_best_model_at_end, and a best recorded), not the last step's weights (Trainer records the best step either
    way)."""
    return bool(args.get("load_best_model_at_end")) and state.get("best_global_step") is not None


def kept_step(args: dict, state: dict) -> int | None:
    """run_args.json and trainer_state.json -> the training step whose weights the export holds (`kept_best`)."""
    return state["best_global_step"] if kept_best(args, state) else state.get("global_step")


def plot_caption(args: dict, state: dict, metric: str) -> str:
    """What the dev-score plot marks, for the card's sentence under it."""
    step = kept_step(args, state)
    if step not in dict(dev_points(state, metric)):
        return f"the model kept is the last step's (step {step}), which the dev set did not score"
    if kept_best(args, state):
        return "the marked point is the checkpoint kept"
    return "the marked point is the last step, whose model is kept (load_best_model_at_end off)"


def plot_dev_scores(model_dir: str, state: dict, metric: str, kept: int | None) -> str | None:
    """Plot eval_<metric> over steps from trainer_state.json into dev_scores.png, the step `kept` marked where the dev
    set scored it; None when there is nothing to plot."""
    points = dev_points(state, metric)
    if not points:
        return None
    from matplotlib.figure import Figure  # not pyplot: no backend chosen or switched for the process that calls this

    steps, scores = zip(*points, strict=True)
    fig = Figure(figsize=(6, 3.2), dpi=120)
    ax = fig.subplots()
    ax.plot(steps, scores, marker="o", markersize=3)
    if kept in steps:
        ax.scatter([kept], [scores[steps.index(kept)]], s=80, facecolors="none", edgecolors="red", zorder=3,
                   label=f"kept: step {kept}")
        ax.legend(loc="lower right")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"{metric} (x100)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with whole_file(os.path.join(model_dir, PLOT_FILE)) as scratch:
        fig.savefig(scratch, format="png")
    return PLOT_FILE


def _plot(model_dir: str, args: dict, state: dict, metric: str, write: bool) -> str | None:
    if write:
        return plot_dev_scores(model_dir, state, metric, kept_step(args, state))
    return PLOT_FILE if os.path.isfile(os.path.join(model_dir, PLOT_FILE)) else None


def sentence_transformers_needed(model_dir: str, embedding: str) -> str:
    """The sentence-transformers releases that load the export and give its embedding, in words (bench/RESULTS.md).

    Releases before 4.1 hand the layer-weighting module of `avg_first_last` / `avg_top2` the hidden states only
    where the encoder also returns a `pooler_output`: without a pooler (ELECTRA, DeBERTa, DistilBERT) they fail
    with KeyError 'all_layer_embeddings'.
    """
    if embedding in LAYER_POOLERS and not any(
            "pooler" in name.split(".") for name in weight_names(model_dir)):
        return ("sentence-transformers 4.1 or newer (earlier releases give its layer-weighting module no hidden states "
                "from an encoder without a pooler, such as this one)")
    return "sentence-transformers 3.4 or newer"


def contrastive_batch(per_device: int, processes: int, gather_negatives: bool, rows: int | None = None) -> str:
    """The rows that are negatives for each other, in words: '256 rows, gathered from 8 processes'. rows: the training
    rows, said where they are fewer than a batch (every step then holds all of them, and no more)."""
    if processes == 1:
        said = f"{per_device} rows"
    elif gather_negatives:
        said = f"{per_device * processes} rows, gathered from {processes} processes"
    else:
        said = f"{per_device} rows, per device (negatives not gathered across processes)"
    if rows is not None and rows < per_device * processes:
        said += f" (but the training set has only {rows} row{'' if rows == 1 else 's'}, which every step holds)"
    return said


def training_time(environment: dict, train: dict) -> str:
    """environment.json and train_results.json -> the card's training time: `training_seconds`, over every session of
    the run (run_simcse.TrainingClock), where recorded; else Trainer's `train_runtime`, which covers the last session
    only, and says so for a resumed run."""

    def seconds(value: float) -> str:
        return f"{value:,.0f} s" if value >= 10 else f"{value:.1f} s"

    resumed = environment.get("resumed_at_step")
    if environment.get("training_seconds") is not None:
        sessions = f" (resumed at step {resumed}; all sessions)" if resumed else ""
        return seconds(environment["training_seconds"]) + sessions
    if "train_runtime" not in train:
        return "unknown"
    if resumed:
        return f"{seconds(train['train_runtime'])} from the resumption at step {resumed} (before it: not recorded)"
    return seconds(train["train_runtime"])


def by_session(environment: dict, key: str, text: Callable[[object], str] = str) -> str:
    """environment.json -> `text` of the run's `key` ("hardware", "versions"), or, where a resumed run's sessions
    differ in it (another machine, other libraries), each with the step it took over from (run_simcse.TrainingClock's
    `sessions`); "not recorded" for steps trained before the sessions, or before that key, were recorded."""
    spans = []  # consecutive sessions alike in `key` are one span
    for session in environment.get("sessions") or []:
        if not spans or spans[-1].get(key) != session.get(key):
            spans.append(session)
    if all(span.get(key) is None for span in spans) or (len(spans) == 1 and spans[0]["from_step"] == 0):
        return text(environment[key]) if key in environment else "unknown"
    parts = [f"{text(span[key])} from step {span['from_step']}" if span.get(key) is not None
             else f"from step {span['from_step']}: not recorded" for span in spans]
    if spans[0]["from_step"]:  # resumed from a checkpoint written before sessions were recorded
        parts.insert(0, f"up to step {spans[0]['from_step']}: not recorded")
    return "; ".join(parts)


def hardware(environment: dict) -> str:
    """environment.json -> the card's hardware: '1 x NVIDIA H100 80GB HBM3', or each machine of a run resumed on
    another with the step it took over from."""
    return by_session(environment, "hardware")


def software(environment: dict) -> str:
    """environment.json -> the card's software: 'torch 2.13.0, transformers 5.24.0', or, where a resumed run's
    sessions ran other versions, each with the step it took over from; '' for a run that recorded none."""
    if "versions" not in environment:
        return ""
    return by_session(environment, "versions", lambda versions: ", ".join(f"{k} {v}" for k, v in versions.items()))


def model_selection(args: dict, state: dict) -> str:
    """The card's model-selection row from run_args.json and trainer_state.json: the dev metric and how often the dev
    set was scored, or "final model" (also where the run ended before its first dev evaluation)."""
    if not args.get("load_best_model_at_end"):
        return "final model"
    metric = dev_metric(args)
    if args.get("eval_strategy") == "epoch":
        every = "every epoch"
    else:  # trainer_state.json holds the steps Trainer used: an eval_steps below 1 is a share of the run's steps
        asked, steps = args.get("eval_steps"), state.get("eval_steps") or args.get("eval_steps")
        every = "at every evaluation"
        if steps:
            every = "every step" if steps == 1 else f"every {steps:g} steps"
            if asked and asked < 1:
                every += f" ({asked:g} of the run)"
    scores = dict(dev_points(state, metric))
    if "log_history" in state and not scores:
        delay = f", eval_delay {args['eval_delay']:g}" if args.get("eval_delay") else ""
        return (f"final model: the dev set was never scored (to be scored {every}{delay}; the run took "
                f"{state.get('global_step')} steps)")
    selection = f"best {metric} on `{args.get('dev_data')}`, {every}" + (
        f" ({len(scores)} evaluation{'s' if len(scores) > 1 else ''})" if scores else "")
    kept = state.get("best_metric")
    if 0 in scores and kept is not None and scores[0] > kept:  # eval_on_start: no checkpoint of step 0 to keep
        selection += f"; the encoder before training scored higher, {scores[0]:.2f}"
    return selection


def dev_metric(args: dict) -> str:
    """The metric the run picked its checkpoint by, as the dev scores are logged (`eval_<metric>`): Trainer takes
    metric_for_best_model with or without its "eval_" prefix."""
    return (args.get("metric_for_best_model") or "cosine_spearman").removeprefix("eval_")


def warm_up(steps: float) -> str:
    """TrainingArguments.warmup_steps -> the card's words: below 1 it is a share of the run's steps."""
    if 0 < steps < 1:
        return f"{steps:g} of the steps"
    return f"{steps:g} step{'s' * (steps != 1)}" if steps else "0"


# Trainer's train_sampling_strategy, where it changes which rows are negatives for each other (random: no words).
SAMPLING_IN_WORDS = {"group_by_length": ", grouped by length", "sequential": ", in the data's order (not shuffled)"}
ADAM_DEFAULTS = {"adam_beta1": 0.9, "adam_beta2": 0.999, "adam_epsilon": 1e-8}  # TrainingArguments'


def settings_in_words(settings: dict | str | None, lead: str = "") -> str:
    """{"min_lr_rate": 0.1} -> lead + "min_lr_rate 0.1"; "" when there are none."""
    if isinstance(settings, str):  # optim_args: "key=value,key=value"
        settings = dict(item.partition("=")[::2] for item in settings.split(",") if item)
    return lead + ", ".join(f"{key} {value}" for key, value in settings.items()) if settings else ""


def optimizer(args: dict) -> str:
    """The card's optimizer row: the optimizer, its weight decay, its arguments where they are not the defaults, and the
    gradient clipping."""
    adam = {key.removeprefix("adam_"): args[key] for key, default in ADAM_DEFAULTS.items()
            if "adam" in args["optim"] and args.get(key, default) != default}
    parts = [f"weight decay {args.get('weight_decay')}", settings_in_words(adam),
             settings_in_words(args.get("optim_args")),
             # Trainer clips where max_grad_norm > 0 only (None, 0 and below: not at all)
             f"gradient norm clipped at {args['max_grad_norm']}" if (args.get("max_grad_norm") or 0) > 0
             else "no gradient clipping"]
    return f"{args['optim']} ({', '.join(part for part in parts if part)})"


def training_data(args: dict, environment: dict | None = None) -> str:
    """The card's training-data row: the sources, their format and what the run made of them (the columns read, quotes
    removed, repeats left out). The columns are those environment.json records as read from each source, which may not
    be those `sentence_columns` named (a .txt file's is `text`); a run before that record, those named."""
    train_format = args.get("train_format")
    made = []
    read = (environment or {}).get("train_columns")
    if train_format != "nli" and (read or args.get("sentence_columns")):
        per_source = list(read.values()) if read else [args["sentence_columns"]]
        named = [", ".join(f"`{c}`" for c in columns) for columns in per_source]
        if len(set(named)) == 1:
            said = named[0]
        else:
            said = " and ".join(f"{columns} of `{source}`" for source, columns in zip(read, named, strict=True))
        made.append(f"column{'s' * (len(per_source[0]) > 1)} {said}")
    if train_format == "nli" and args.get("nli_strip_quotes"):
        made.append('every `"` removed, as the SimCSE-KO code did')
    if train_format == "text" and args.get("deduplicate_text", True):
        made.append("repeated sentences left out")
    sources = ", ".join(f"`{d}`" for d in args.get("train_data", []))
    return f"{sources} ({train_format}{': ' + ', '.join(made) if made else ''})"


def thousands(count: object) -> str:
    """277811 -> '277,811', as the card writes counts; anything else as it is."""
    return f"{count:,}" if isinstance(count, int) else str(count)


def seed(args: dict, environment: dict) -> str:
    """The card's seed row: the seed, the data order's where data_seed is another, and, for a run of several processes
    that recorded it (run_simcse.DropoutSeedPerProcess), the seed of each process's dropout masks."""
    said = []
    if args.get("data_seed") not in (None, args.get("seed")):
        said.append(f"data order: data_seed {args['data_seed']}")
    if environment.get("dropout_seed_per_process"):
        said.append(f"dropout masks: {args.get('seed')} + the process's index, 0 to {environment['processes'] - 1}")
    return f"{args.get('seed')}" + (f" ({'; '.join(said)})" if said else "")


def training_settings(
    args: dict, environment: dict, train: dict, state: dict, encoder_config: dict
) -> list[tuple[str, str]]:
    """The card's settings table, (setting, value) rows, from a run's run_args.json, environment.json,
    train_results.json, trainer_state.json and exported config.json."""
    processes = environment.get("processes", 1)
    per_device = args.get("per_device_train_batch_size")
    accumulation = args.get("gradient_accumulation_steps", 1)
    epochs, steps = state.get("epoch", args.get("num_train_epochs")), state.get("global_step")
    dropout = args.get("dropout")
    if dropout is None:  # the encoder's own, as exported (config_overrides may have set it; DistilBERT's is `dropout`)
        dropout = encoder_config.get("hidden_dropout_prob", encoder_config.get("dropout", "encoder default"))
    overrides = args.get("config_overrides")
    def at_revision(name_key: str, revision_key: str) -> str:  # a model or tokenizer as the run named it
        return f"`{args[name_key]}`" + (f" at revision `{args[revision_key]}`" if args.get(revision_key) else "")

    if args.get("model_name_or_path"):
        base = at_revision("model_name_or_path", "model_revision") + (
            f" with config changes `{overrides}`" if overrides else "")
    else:
        base = f"`{args.get('model_type')} made from a config ({overrides})`"
    tokenizer = None  # the encoder's own
    if args.get("train_tokenizer_vocab_size"):
        tokenizer = f"WordPiece trained on the training sentences ({encoder_config.get('vocab_size')} pieces)"
    elif args.get("tokenizer_name") not in (None, args.get("model_name_or_path")):
        tokenizer = at_revision("tokenizer_name", "tokenizer_revision")
    schedule = args.get("lr_scheduler_type")
    if schedule in DEV_SCORE_SCHEDULERS:  # stepped on the dev score, not on the steps
        # A run from before run_arguments set mode "max" trained with the scheduler's default.
        kwargs = {**(args.get("lr_scheduler_kwargs") or {})}
        kwargs.setdefault("mode", "min")
        schedule += f" of the dev {dev_metric(args)}" + settings_in_words(kwargs, ", ")
    else:
        schedule = f"{schedule}{settings_in_words(args.get('lr_scheduler_kwargs'), ' ')}"
    precision = "bf16" if args.get("bf16") else "fp16" if args.get("fp16") else "fp32"
    if precision != "fp32":  # the dev scores are in it; the test scores are the fp32 export's where the run says so
        precision += (" (training and dev scores; test scores in fp32, as the export loads)"
                      if environment.get("test_scores_precision") == "fp32" else " (training and every score)")
    rows = [
        ("base model", base),
        ("tokenizer", tokenizer),
        ("training data", training_data(args, environment)),
        # The digest (data_loading.rows_digest) lets a reader check that their copy of the data is the one trained on.
        ("training rows", thousands(environment.get("train_rows", "")) + (
            f" (SHA-256 `{args['train_rows_sha256']}`)" if args.get("train_rows_sha256") else "")),
        ("epochs", f"{round(epochs, 2):g}" + (f" ({thousands(steps)} steps)" if steps else "")
         if epochs is not None else None),
        ("max length", args.get("max_seq_length")),
        ("batch", f"{per_device * processes * accumulation} ({per_device} per device x {processes} process(es)"
                  f" x {accumulation} accumulation)"),
        # Accumulated micro-batches are separate contrastive batches: they add rows, not negatives.
        ("contrastive batch", contrastive_batch(per_device, processes, args.get("gather_negatives", True),
                                                environment.get("train_rows")) + SAMPLING_IN_WORDS.get(
            args.get("train_sampling_strategy"), "")),
        ("learning rate", f"{args.get('learning_rate')} ({schedule}, "
                          f"warm-up {warm_up(args.get('warmup_steps') or 0)})"),
        ("optimizer", optimizer(args) if args.get("optim") else None),
        ("dropout", dropout),
        ("temperature", args.get("temperature")),
        ("pooler", f"`{args.get('pooler_type')}`" + (" (MLP in training only)" if args.get("mlp_only_train") else "")),
        # Pair and text rows have no hard negatives to weigh.
        ("hard negative weight", args.get("hard_negative_weight") if args.get("train_format") in ("nli", "triplet")
         else None),
        ("model selection", model_selection(args, state)),
        ("precision", precision),
        ("seed", seed(args, environment)),
        ("hardware", hardware(environment)),
        ("training time", training_time(environment, train)),
        ("date", environment.get("date", "unknown")),
        ("software", software(environment)),
    ]
    return [(k, str(v)) for k, v in rows if v not in (None, "")]


def render_card(
    model_dir: str,
    repo_id: str | None = None,
    license: str = DEFAULT_LICENSE,
    compare_published: bool = True,
    write: bool = True,
    revision: str | None = None,
) -> ModelCard:
    """Render `<model_dir>/README.md` and its figure; returns the card.

    repo_id: the Hub id used in the usage snippet (default: the folder name).
    revision: the branch the usage snippet loads (a push to a branch; None: the default branch).
    compare_published: add the published SimCSE-KO figures as labelled comparison rows.
    write: save README.md and dev_scores.png into the folder (False: only return the card, e.g. for a dry run).
    """
    check_export(model_dir)
    results = load_results(model_dir)
    args = read_json(model_dir, RUN_ARGS_FILE)
    if args is None:  # e.g. a model downloaded from the Hub: a push does not publish the run's arguments
        raise ModelDirError(f"{model_dir}: no {RUN_ARGS_FILE}; the card's settings come from the run's own files, so "
                            "render it in the run's output folder")
    config = read_json(model_dir, "config.json")
    environment = read_json(model_dir, "environment.json", {})
    train = read_json(model_dir, "train_results.json", {})
    state = read_json(model_dir, "trainer_state.json", {})
    embedding = config["simcse"]["embedding"]
    repo_id = repo_id or os.path.basename(os.path.abspath(model_dir))
    model_name = repo_id.split("/")[-1]
    metric = dev_metric(args)

    # As the run recorded them, else (earlier runs) read from the sources' form here, as base_model_id does.
    datasets = list(environment["hub_datasets"]) if "hub_datasets" in environment else hub_datasets(
        args.get("train_data", []))
    datasets += [d for d in ("klue/klue",) if any(n.startswith("klue") for n in results) and d not in datasets]
    card_data = ModelCardData(
        language="ko",
        license=license,
        library_name="sentence-transformers",
        pipeline_tag="sentence-similarity",
        tags=["sentence-transformers", "transformers", "feature-extraction", "sentence-similarity", "simcse", "korean"],
        datasets=datasets or None,
        base_model=base_model_id(args, environment),
        model_name=model_name,
        eval_results=eval_results(results, model_name),
    )
    supervised = args.get("train_format", "nli") != "text"
    base = (f"`{args['model_name_or_path']}`" if args.get("model_name_or_path")
            else f"a {args.get('model_type')} encoder made from a config")
    compared = compare_published and any(name in PUBLISHED for name in results)
    card = ModelCard.from_template(
        card_data,
        template_path=TEMPLATE,
        model_name=model_name,
        repo_id=repo_id,
        revision_arg=f', revision="{revision}"' if revision else "",
        base_description=base,
        supervised=supervised,
        objective=("in-batch negatives plus one hard negative per sentence, temperature "
                   f"{args.get('temperature')}" if args.get("train_format") in ("nli", "triplet") else
                   f"in-batch negatives, temperature {args.get('temperature')}"),
        embedding_description=EMBEDDING_TEXT[embedding],
        usage_embedding=USAGE[embedding],
        sentence_transformers_needed=sentence_transformers_needed(model_dir, embedding),
        max_seq_length=args.get("max_seq_length", 64),
        tables=[{"title": SET_TITLES.get(name, name),
                 "markdown": results_table(name, metrics, model_name, compare_published),
                 "note": held_out_note(name, args, environment)} for name, metrics in results.items()],
        comparison_note=("Rows marked *published* are the figures of the SimCSE-KO model card (klue/bert-base or "
                         "klue/roberta-base, trained on KorNLI), copied for comparison and not measured by this run; "
                         "– marks a figure that card does not give.") if compared else "",
        settings=training_settings(args, environment, train, state, config),
        plot=_plot(model_dir, args, state, metric, write) if args.get("dev_data") else None,
        plot_caption=plot_caption(args, state, metric),
        dev_metric=metric,
        dev_name=f"`{args.get('dev_data')}`",
        cites=cited_works(args),
    )
    if write:
        with whole_file(os.path.join(model_dir, CARD_FILE)) as scratch:
            card.save(scratch)
    return card


def folder_card_choices(model_dir: str) -> tuple[str | None, bool | None]:
    """(licence, whether it has the published comparison rows) of the card `model_dir` holds; (None, None) without one
    or where its metadata does not parse. A card rendered again takes these where it is not told otherwise, so
    `hub card --license mit` sticks."""
    path = os.path.join(model_dir, CARD_FILE)
    if not os.path.isfile(path):
        return None, None
    try:
        card = ModelCard.load(path)
    except (yaml.YAMLError, ValueError):  # metadata that does not parse: a card edited by hand, without choices to keep
        return None, None
    return card.data.license, PUBLISHED_MARK in card.text


def card_choices(model_dir: str, license: str | None = None, compare_published: bool | None = None) -> tuple[str, bool]:
    """The licence and comparison choice a card rendered again takes: those given, else the folder card's, else
    `DEFAULT_LICENSE` and the comparison rows on."""
    saved_license, saved_compare = folder_card_choices(model_dir)
    compare = compare_published if compare_published is not None else saved_compare is not False
    return license or saved_license or DEFAULT_LICENSE, compare


def folder_card_is_rendered(model_dir: str, repo_id: str | None = None) -> bool:
    """Whether the folder's README.md is a card `render_card` makes of the run's files now, for the model id its usage
    snippet names (the folder's name, the run's hub_model_id, `hub card --repo-id`'s or `repo_id`), with its own
    licence and comparison rows; True where the folder has no card."""
    path = os.path.join(model_dir, CARD_FILE)
    if not os.path.isfile(path):
        return True
    with open(path, encoding="utf-8") as f:
        text = f.read()
    names = {None, repo_id, *re.findall(r'from_pretrained\("([^"]+)"', text)}
    own = card_choices(model_dir)
    return any(str(render_card(model_dir, name, *own, write=False)) == text for name in names)


def card_for_push(model_dir: str, repo_id: str, license: str | None = None, compare_published: bool | None = None,
                  revision: str | None = None) -> str:
    """The card a push uploads: rendered again for `repo_id` and the branch `revision` (its usage snippet loads them),
    with the folder card's licence and comparison rows unless told otherwise.

    Raises ModelDirError where the folder's card is not one `render_card` makes of the run's files (edited by hand, the
    files changed since it was rendered, or another version of the renderer): the push would have replaced it without a
    word; and where the dev-score plot the card shows is missing."""
    if not folder_card_is_rendered(model_dir, repo_id):
        raise ModelDirError(
            f"{model_dir}/{CARD_FILE} is not the card the run's files render (edited by hand, the files changed "
            f"since it was rendered, or an earlier version of this project rendered it), and a push uploads the "
            f"rendered card: push it as it is with --card-as-is, "
            f"or render it again with `python -m hub card {model_dir}`")
    card = render_card(model_dir, repo_id, *card_choices(model_dir, license, compare_published), write=False,
                       revision=revision)  # first: its checks of the export and the run's files
    if not os.path.isfile(os.path.join(model_dir, PLOT_FILE)) and dev_points(
            read_json(model_dir, "trainer_state.json", {}), dev_metric(read_json(model_dir, RUN_ARGS_FILE))):
        # A push writes nothing into the folder (a dry run neither), so it does not draw the figure itself.
        raise ModelDirError(f"{model_dir} has no {PLOT_FILE}, the dev-score plot of its card (the run stopped before "
                            f"rendering the card, or the file was deleted): render the card with `python -m hub card "
                            f"{model_dir}`, then push")
    return str(card)
