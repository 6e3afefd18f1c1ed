"""The arguments of `run_simcse.py` and every check made of them before anything loads.

`parse_arguments` reads one JSON file (its keys: the fields of `ModelArguments`, `DataArguments`, `SimCSEArguments`
below and of `transformers.TrainingArguments`; an unknown key is an error), optionally followed by flags that override
its keys, or the flags alone, through `HfArgumentParser`. It stops with one message naming every problem found
(`SystemExit("error: ...")`) before any data or model is loaded: values of the wrong type or out of range, settings
that would split the contrastive batch, break the STS scoring or the export, or fail only once training has begun.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import dataclasses
import difflib
import inspect
import json
import logging
import math
import os
import types
import typing
import warnings
from dataclasses import dataclass, field
from enum import Enum

import torch
from accelerate.utils import DynamoBackend, GradientAccumulationPlugin, TorchDynamoPlugin
from huggingface_hub import HfApi
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import CONFIG_MAPPING, HfArgumentParser, Trainer, TrainingArguments, get_scheduler
from transformers.debug_utils import DebugOption
from transformers.integrations import get_reporting_integration_callbacks
from transformers.utils import is_torch_xla_available

from data_loading import DataError, check_model_source, parse_named, parse_named_sets
from hub.model_dir import DEV_SCORE_SCHEDULERS, METRIC_NAMES
from hub.push import PushError, check_push_access, check_repo_id, check_revision
from modeling_simcse import (
    CUDA_GRAPH_LENGTHS,
    CUDA_GRAPH_ROWS,
    PACKABLE_ATTENTION,
    PACKABLE_MODEL_TYPES,
    POOLER_TYPES,
    SimCSEConfig,
)
from training_guards import CHECKPOINT

logger = logging.getLogger(__name__)


TRAIN_FORMATS = {  # format -> default sentence columns of the loaded training set
    "nli": None,  # premise / hypothesis / label rows, grouped into triplets
    "triplet": ["sent0", "sent1", "hard_neg"],
    "pair": ["sent0", "sent1"],
    "text": ["text"],
}
# Training sets this large are tokenized in several processes by default (a KorNLI epoch: 277,811 rows).
TOKENIZE_IN_PARALLEL_FROM = 50_000


@dataclass
class ModelArguments:
    """The encoder and its tokenizer: a pretrained one, or one made from a config."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Pretrained encoder: a Hub id (klue/bert-base) or a local folder."}
    )
    model_revision: str | None = field(
        default=None, metadata={"help": "The branch, tag or commit of model_name_or_path on the Hub (default: its "
                                        "default branch); its tokenizer's too, unless tokenizer_name is given."}
    )
    model_type: str | None = field(
        default=None, metadata={"help": "Train from scratch: an encoder type (bert, roberta, ...) made from a config."}
    )
    config_overrides: str | None = field(
        default=None, metadata={"help": "Encoder config settings to change: the shape of a model made from a config "
                                        "('hidden_size=64,num_hidden_layers=2'), or e.g. 'dropout=0.2' (DistilBERT)."}
    )
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer, if not the model's own."})
    tokenizer_revision: str | None = field(
        default=None, metadata={"help": "The branch, tag or commit of tokenizer_name on the Hub (default: its default "
                                        "branch)."}
    )
    train_tokenizer_vocab_size: int | None = field(
        default=None,
        metadata={"help": "Train a WordPiece tokenizer of this size on the training sentences (with model_type)."},
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where Hub models and datasets are cached."})


@dataclass
class DataArguments:
    """The training, dev and test sources, how rows are read from them, and tokenization."""

    train_data: list[str] = field(
        default_factory=list,
        metadata={"help": "Training sources (files, URLs, save_to_disk folders or Hub datasets "
                          "'owner/name[@revision][:config][:split]'), concatenated."},
    )
    train_format: str = field(
        default="nli",
        metadata={"help": "nli (premise/hypothesis/label -> triplets), triplet, pair, or text (unsupervised)."},
    )
    sentence_columns: list[str] | None = field(
        default=None, metadata={"help": "Sentence columns of triplet/pair/text sources, in order (default: sent0, "
                                        "sent1, hard_neg, or anchor, positive, negative; text, sentence or sentence1)."}
    )
    nli_strip_quotes: bool = field(
        default=False, metadata={"help": "Remove every '\"' from NLI sentences (as the published SimCSE-KO code did)."}
    )
    deduplicate_text: bool = field(
        default=True,
        metadata={"help": "text format: drop repeated sentences (a repeat in a batch is a false negative)."},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only the first N training rows."})
    dev_data: str | None = field(
        default=None, metadata={"help": "STS source scored during training (model selection)."}
    )
    test_data: list[str] = field(
        default_factory=list, metadata={"help": "Final STS sets as 'name=source', e.g. 'korsts-test=sts-test.tsv'."}
    )
    max_seq_length: int = field(default=64, metadata={"help": "Sentences are truncated to this many tokens."})
    preprocessing_num_workers: int | None = field(
        default=None,
        metadata={"help": "Processes for tokenization. Default: one, or up to 8 (one a CPU the process may run on) "
                          f"from {TOKENIZE_IN_PARALLEL_FROM:,} training rows."},
    )


@dataclass
class SimCSEArguments:
    """The contrastive objective, pooler and dropout; how a step is computed (negatives across processes, packing,
    compilation, memory); and `overwrite_output_dir`, which transformers 5's `TrainingArguments` no longer has."""

    pooler_type: str = field(default="cls", metadata={"help": f"One of {POOLER_TYPES}."})
    temperature: float = field(default=0.05, metadata={"help": "Softmax temperature of the contrastive loss."})
    hard_negative_weight: float = field(default=0.0, metadata={"help": "Log-weight added to each own hard negative."})
    mlp_only_train: bool = field(default=False, metadata={"help": "With pooler cls: MLP in training only."})
    dropout: float | None = field(default=None, metadata={"help": "Override the encoder's hidden/attention dropout."})
    gather_negatives: bool = field(
        default=True,
        metadata={"help": "With several processes, use every process's sentences as negatives (False: per device)."},
    )
    embedding_chunk_size: int | None = field(
        default=None,
        metadata={"help": "Encode a step in chunks of this many sentences, recomputed in backward (gradient cache)."},
    )
    pack_sequences: bool | None = field(
        default=None,
        metadata={"help": "Train on packed rows (sentences end to end, attention kept within each sentence): no "
                          "compute on padding, same math. Default: on where the encoder supports it "
                          f"({', '.join(PACKABLE_MODEL_TYPES)} with {' or '.join(PACKABLE_ATTENTION)} attention)."},
    )
    length_buckets: int | None = field(
        default=None,
        metadata={"help": "Without packing: encode a step's sentences sorted by length in this many pieces (less "
                          "padding). Default: 8 on CPU, 1 (one padded pass) on GPU."},
    )
    compile_layers: bool = field(
        default=False,
        metadata={"help": "Compile each encoder layer in place with torch.compile (dynamic shapes; one compile shared "
                          "by all layers): the fusion within the layers, where most kernels are, for a fraction of "
                          "the compile time of the whole-model torch_compile (use one of the two). For training "
                          "steps: evaluation runs the layers eagerly. An opt-in for GPUs."},
    )
    cuda_graphs: bool | None = field(
        default=None,
        metadata={"help": "compile_layers (implied) with each compiled layer replayed as a CUDA graph (torch.compile "
                          "mode 'reduce-overhead'): one launch a layer, forward and backward, instead of the ~1,000 "
                          "kernel launches a step that bound the eager step on an H100. Packed row counts are rounded "
                          f"up to a multiple of {CUDA_GRAPH_ROWS} and padded lengths to a multiple of "
                          f"{CUDA_GRAPH_LENGTHS}, so few shapes are recorded. On an H100 (bert-base, batch 256) it "
                          "compiled for 15 s once (an empty compiler cache) and then ran steps of 26 ms against 50 ms: "
                          "the 1,086-step KorNLI epoch 83 s against 88 s (bench/RESULTS.md). Unset: on for training in "
                          "one process on a CUDA device with packed batches and Triton (with a C compiler and "
                          "Python's headers to build its modules), without fp16, torch_compile, compile_layers, "
                          "embedding_chunk_size, gradient accumulation or activation_checkpointing (which it does not "
                          "go with), or debug underflow_overflow; false: off."},
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow an output_dir that holds another run (its checkpoints are deleted)."}
    )


ALL_ARGUMENTS = (ModelArguments, DataArguments, SimCSEArguments, TrainingArguments)
# TrainingArguments' fields that read text other than a JSON object ("{...}") as the path of a JSON file.
FILE_DICT_FIELDS = ("accelerator_config", "fsdp_config", "deepspeed")
# SimCSEArguments that are SimCSEConfig settings under the same name (length_buckets has a device-dependent default).
SIMCSE_CONFIG_KEYS = ("pooler_type", "temperature", "hard_negative_weight", "mlp_only_train", "gather_negatives",
                      "embedding_chunk_size")


# TrainingArguments values that transformers takes without a word and that fail once training has begun (the optimizer
# and the dataloaders check theirs only then) or mean nothing: field -> (lowest, None or the bound kept below, what).
TRAINING_VALUE_RANGES = {
    "per_device_train_batch_size": (1, None, "rows a step"), "per_device_eval_batch_size": (1, None, "pairs a batch"),
    "gradient_accumulation_steps": (1, None, "batches a step"), "learning_rate": (0, None, "the step size"),
    "weight_decay": (0, None, "AdamW's decay"), "adam_beta1": (0, 1, "a decay rate"),
    "adam_beta2": (0, 1, "a decay rate"), "adam_epsilon": (0, None, "AdamW's epsilon"),
    "num_train_epochs": (0, None, "epochs"),
    "dataloader_num_workers": (0, None, "worker processes"), "logging_steps": (0, None, "steps"),
    "eval_steps": (0, None, "steps"), "save_steps": (0, None, "steps"), "seed": (0, 2**32, "a random seed"),
    "data_seed": (0, 2**32, "a random seed"),
    "eval_accumulation_steps": (1, None, "evaluation batches between transfers"),
    "dataloader_prefetch_factor": (1, None, "batches each worker loads ahead"),
}


def parse_arguments(argv: list[str]) -> tuple[ModelArguments, DataArguments, SimCSEArguments, TrainingArguments]:
    """One JSON file (unknown keys are an error), optionally followed by flags that override its keys, or flags
    alone -> the four argument dataclasses, checked: every problem found is in one SystemExit."""
    (model_args, data_args, simcse_args, training_args), given = read_arguments(argv)
    # As TrainingArguments does for output_dir (data sources: data_sources.Source): no shell expands a JSON value's "~".
    for args, key in ((model_args, "model_name_or_path"), (model_args, "tokenizer_name"), (model_args, "cache_dir"),
                      (training_args, "resume_from_checkpoint")):
        if isinstance(value := getattr(args, key), str) and value.startswith("~"):
            setattr(args, key, os.path.expanduser(value))
    take_launcher_settings(training_args)
    problems = (job_problems(model_args, data_args, simcse_args, training_args)
                + trainer_setting_problems(training_args, data_args)
                + script_flag_problems(given, training_args, data_args))
    metric_asked = given.get("metric_for_best_model")
    if isinstance(metric_asked, str) and metric_asked.removeprefix("eval_") == "loss":
        # Trainer's own default where load_best_model_at_end has no metric, replaced below by cosine_spearman.
        problems.append("metric_for_best_model: loss, on the dev set, is the mean squared error between the cosine and "
                        "the gold score / 5, which SimCSE neither optimises nor scales its cosines to; pick one of "
                        f"{', '.join(METRIC_NAMES)} (x100, higher is better; default cosine_spearman)")
    if (problem := output_dir_problem(training_args.output_dir)) is not None:
        problems.append(problem)
    problems += sources_in_output_dir(model_args, training_args.output_dir)
    problems += hub_problems(training_args, data_args)
    if problems:
        raise SystemExit("error: " + "; ".join(problems))
    if training_args.metric_for_best_model in (None, "loss") and data_args.dev_data:
        training_args.metric_for_best_model, training_args.greater_is_better = "cosine_spearman", True
    if training_args.lr_scheduler_type in DEV_SCORE_SCHEDULERS:
        # Trainer steps them on metric_for_best_model and leaves them their default mode, "min": they lowered the rate
        # after evaluations whose score rose (fell, for them), and kept it while it fell.
        training_args.lr_scheduler_kwargs = {**(training_args.lr_scheduler_kwargs or {}), "mode": "max"}
    training_args.remove_unused_columns = False  # the collator reads the tokenized columns itself
    if training_args.ddp_find_unused_parameters is None:
        # Trainer's default, on where activation checkpointing is off, has DDP search the autograd graph for unused
        # parameters at every step and warn that it found none: every trainable parameter has a gradient
        # (tests/test_distributed.py), and the same 2-process runs score the same without the search.
        training_args.ddp_find_unused_parameters = False
    training_args.logging_nan_inf_filter = False  # NonFiniteLossGuard must see a NaN loss
    return model_args, data_args, simcse_args, training_args


def read_arguments(argv: list[str]) -> tuple[tuple, dict]:
    """argv (a JSON file and flags, or flags alone) -> the four argument dataclasses as HfArgumentParser makes them,
    and the keys given (the file's, with the flags' overrides); SystemExit on an unreadable file or an unknown key."""
    if argv and argv[0].lower().endswith(".json"):
        if not os.path.isfile(argv[0]):
            raise SystemExit(f"error: {argv[0]}: file not found")
        where = f"{argv[0]}{' with the flags after it' if argv[1:] else ''}: "
        try:
            with open(argv[0], encoding="utf-8-sig") as f:  # a byte-order mark, as Windows Notepad may save
                config = json.load(f, object_pairs_hook=_object_without_repeated_keys)
            if not isinstance(config, dict):
                raise ValueError("expected a JSON object of arguments, {\"key\": value, ...}")
            given = {**check_json_values(config, argv[0]), **flag_overrides(argv[1:], argv[0])}
        except (ValueError, TypeError) as e:  # malformed JSON, repeated keys, bad values
            raise SystemExit(f"error: {where}{e}") from None
    elif not argv:
        raise SystemExit("usage: run_simcse.py CONFIG.json [--key value ...] (or the --key value flags alone); "
                         "--help lists the keys")
    elif not argv[0].startswith("-"):
        raise SystemExit(f"error: {argv[0]}: the arguments file is a .json (one object of key: value)")
    else:
        where, given = "", flag_overrides(argv, None)  # refuses unknown flags and abbreviations
    # Before TrainingArguments are made: DeepSpeed makes them need the deepspeed package.
    if (problem := sharding_problem(bool(given.get("fsdp")), bool(given.get("deepspeed")))) is not None:
        raise SystemExit(f"error: {where}{problem}")
    try:
        if problems := non_finite_problems(given) + dict_text_problems(given):
            raise ValueError("; ".join(problems))
        return HfArgumentParser(ALL_ARGUMENTS).parse_dict(without_backend_of_one_process(given)), given
    except (ValueError, TypeError) as e:  # unknown keys, bad values, a combination TrainingArguments refuses
        raise SystemExit(f"error: {where}{e}{precision_hint(e)}") from None


def without_backend_of_one_process(config: dict, env: typing.Mapping[str, str] | None = None) -> dict:
    """The arguments without `ddp_backend` where this process was launched alone (no LOCAL_RANK, no world size over 1
    in `env`, default the process's: `python run_simcse.py`), with a word; else as they are. One process has no process
    group, yet accelerate takes a backend given as one, and stopped on making TrainingArguments ("Default process group
    has not been initialized"): a config written for several GPUs did not run in one process."""
    env = launcher_environment(env)
    sizes = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")  # accelerate's, for CPUs
    if (config.get("ddp_backend") is None or env.get("LOCAL_RANK", "-1").strip() != "-1"
            or any(env.get(size, "1").strip() not in ("", "0", "1") for size in sizes)):
        return config
    logger.info("ddp_backend %s is for several processes; this one is alone, and trains without it",
                config["ddp_backend"])
    return {key: value for key, value in config.items() if key != "ddp_backend"}


def precision_hint(error: Exception) -> str:
    """What to set where TrainingArguments refused bf16 on a device without it (the shipped configs train in bf16, which
    a T4 or a V100 has not, nor a CPU without use_cpu); else ""."""
    if "support bf16" not in str(error):
        return ""
    return (" (the configs in configs/ train in bf16, which needs an Ampere or newer GPU: add --bf16 false to train in "
            "fp32, or on an older GPU such as a T4 or a V100 --bf16 false --fp16 true for fp16 mixed precision, which "
            "this project has not yet run on a GPU)")


def _object_without_repeated_keys(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object's (key, value) pairs -> a dict; ValueError where a key repeats (json would keep its last value
    without a word: a key added at the end of a config while it is set above)."""
    counts = collections.Counter(key for key, _ in pairs)
    if repeated := sorted(key for key, count in counts.items() if count > 1):
        raise ValueError(", ".join(f"key {key!r} given {counts[key]} times" for key in repeated)
                         + ": keep one (a JSON object keeps the last without a word)")
    return dict(pairs)


def job_problems(model_args: ModelArguments, data_args: DataArguments, simcse_args: SimCSEArguments,
                 training_args: TrainingArguments) -> list[str]:
    """What in the model, data and SimCSE settings (and their fit with the training's) would stop or void the job."""
    problems = []
    if bool(model_args.model_name_or_path) == bool(model_args.model_type):
        problems.append("set exactly one of model_name_or_path (pretrained) and model_type (from a config)")
    for revision_key, key in (("model_revision", "model_name_or_path"), ("tokenizer_revision", "tokenizer_name")):
        revision, name = getattr(model_args, revision_key), getattr(model_args, key)
        if revision is not None and not (name and not os.path.isdir(name)):
            problems.append(f"{revision_key} {revision}: it names a branch, tag or commit of a Hub model, "
                            + (f"and {key} {name} is a folder here, which has no versions" if name
                               else f"and no {key} is given")
                            + (" (model_revision pins the model's own tokenizer too)"
                               if revision_key == "tokenizer_revision" and not name else ""))
    if model_args.model_type and model_args.model_type not in CONFIG_MAPPING:
        close = difflib.get_close_matches(model_args.model_type, sorted(CONFIG_MAPPING.keys()), n=3)
        problems.append(f"model_type {model_args.model_type!r} is not a model type transformers knows"
                        + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else
                           " (the model_type of an encoder's config.json: bert, roberta, electra, ...)"))
    if model_args.train_tokenizer_vocab_size and not model_args.model_type:
        problems.append("train_tokenizer_vocab_size is for models made from a config (model_type)")
    if model_args.model_type and not (model_args.tokenizer_name or model_args.train_tokenizer_vocab_size):
        problems.append("a model made from a config needs tokenizer_name or train_tokenizer_vocab_size")
    if not data_args.train_data:
        problems.append("train_data is empty")
    named = [os.path.realpath(os.path.expanduser(spec)) if os.path.exists(os.path.expanduser(spec)) else spec
             for spec in data_args.train_data]  # one file under two paths is one source
    if twice := [spec for i, spec in enumerate(data_args.train_data) if named[i] in named[:i]]:
        problems.append(f"train_data names {', '.join(map(repr, twice))} twice: each of its rows would be trained on "
                        "twice an epoch (and be a negative of its own copy where both share a batch)")
    if training_args.num_train_epochs == 0 and training_args.max_steps <= 0:
        problems.append("num_train_epochs 0 (and no max_steps) trains nothing, yet the card would call the export "
                        "fine-tuned; to score an encoder as it is: python sts_evaluation.py MODEL")
    if data_args.max_train_samples is not None and data_args.max_train_samples < 1:
        problems.append(f"max_train_samples must be at least 1, got {data_args.max_train_samples}")
    if data_args.preprocessing_num_workers is not None and data_args.preprocessing_num_workers < 0:
        # datasets refuses it only when it tokenizes, once the data and the model have loaded
        problems.append(f"preprocessing_num_workers (tokenization processes) must be at least 0, got "
                        f"{data_args.preprocessing_num_workers}")
    if data_args.train_format not in TRAIN_FORMATS:
        problems.append(f"train_format must be one of {sorted(TRAIN_FORMATS)}, got {data_args.train_format!r}")
    try:  # the model's own checks (pooler_type, temperature, embedding_chunk_size, length_buckets), before any loading
        SimCSEConfig(**{key: getattr(simcse_args, key) for key in SIMCSE_CONFIG_KEYS},
                     length_buckets=1 if simcse_args.length_buckets is None else simcse_args.length_buckets)
    except ValueError as e:
        problems.append(str(e))
    contrastive_rows = training_args.per_device_train_batch_size * (
        training_args.world_size if simcse_args.gather_negatives else 1)
    if contrastive_rows < 2 and data_args.train_format in ("pair", "text"):
        problems.append("a contrastive batch of 1 row has no negatives (its loss is 0 and nothing is learned); "
                        "set per_device_train_batch_size to 2 or more")
    if simcse_args.dropout is not None and not 0.0 <= simcse_args.dropout < 1.0:
        problems.append(f"dropout must be in [0, 1), got {simcse_args.dropout}")
    overridden = {item.split("=")[0].strip() for item in (model_args.config_overrides or "").split(",")}
    if simcse_args.dropout is not None and (both := sorted(overridden & {"hidden_dropout_prob",
                                                                          "attention_probs_dropout_prob"})):
        # config_overrides is applied last: the card's dropout row would name the value the run did not train with.
        problems.append(f"dropout and config_overrides both set {', '.join(both)}: set it in one of them")
    if simcse_args.hard_negative_weight and data_args.train_format not in ("nli", "triplet"):
        problems.append(f"hard_negative_weight weighs hard negatives, which a {data_args.train_format} training set "
                        "has not (only nli and triplet have them); leave it 0")
    if data_args.sentence_columns and data_args.train_format == "nli":
        problems.append("sentence_columns names the columns of triplet, pair and text sources; an nli source is read "
                        "by its premise (or sentence1), hypothesis (or sentence2) and label (or gold_label) columns: "
                        "leave sentence_columns out")
    if data_args.nli_strip_quotes and data_args.train_format != "nli":
        problems.append(f"nli_strip_quotes removes quotes from nli sources, and a {data_args.train_format} training "
                        "set is read as it is; leave it false")
    if simcse_args.mlp_only_train and simcse_args.pooler_type != "cls":
        problems.append(f"mlp_only_train is for pooler_type cls (the pooler with the MLP); {simcse_args.pooler_type} "
                        "has no MLP, so leave it false")
    if (simcse_args.compile_layers or simcse_args.cuda_graphs) and training_args.torch_compile:
        problems.append("compile_layers (or cuda_graphs) and torch_compile both compile the encoder: set one of them")
    if simcse_args.cuda_graphs:
        problems += cuda_graphs_conflicts(training_args, simcse_args)
    if training_args.eval_strategy != "no" and not data_args.dev_data:
        problems.append("eval_strategy needs dev_data (an STS set to score)")
    if training_args.load_best_model_at_end and not data_args.dev_data:
        problems.append("load_best_model_at_end needs dev_data")
    if data_args.dev_data and training_args.eval_strategy == "no" and not training_args.eval_on_start:
        problems.append("dev_data is never scored with eval_strategy \"no\": set eval_strategy \"steps\" (with "
                        "eval_steps) or \"epoch\" to score it during training and keep the best checkpoint, or leave "
                        "dev_data out to train without a dev set")
    try:
        parse_named_sets(data_args.test_data)
    except DataError as e:
        problems.append(f"test_data: {e}")
    if data_args.dev_data and not os.path.exists(os.path.expanduser(data_args.dev_data)):
        with contextlib.suppress(DataError):  # a source named as a test set is ('name=source'; a URL's '?a=b' is not)
            problems.append(f"dev_data: {data_args.dev_data!r} is one source, without a name (test_data's sets have "
                            f"names): dev_data: {parse_named(data_args.dev_data)[1]!r}?")
    for key, needs in (("model_name_or_path", "config.json"), ("tokenizer_name", "tokenizer_config.json")):
        try:
            if getattr(model_args, key):
                check_model_source(getattr(model_args, key), needs)
        except DataError as e:
            problems.append(f"{key}: {e}")
    return problems


def hub_problems(training_args: TrainingArguments, data_args: DataArguments) -> list[str]:
    """What would stop the push at the end (or the card naming its repo): asked of the Hub now, not after the
    training."""
    problems = []
    if training_args.hub_model_id and not training_args.push_to_hub:  # named in the model card's usage snippet
        try:
            check_repo_id(training_args.hub_model_id)
        except PushError as e:
            problems.append(f"hub_model_id: {e}")
    if training_args.push_to_hub:
        try:
            if not data_args.test_data:
                raise PushError("push_to_hub needs test_data: the model card is made of the final STS results")
            if not training_args.hub_model_id:
                raise PushError("push_to_hub needs hub_model_id (<owner>/<name>)")
            check_repo_id(training_args.hub_model_id)
            check_revision(training_args.hub_revision)
            # Now, not after hours of training: every refusal of check_push_access (token, owner, visibility).
            check_push_access(training_args.hub_model_id, bool(training_args.hub_private_repo),
                              HfApi(token=training_args.hub_token))
        except PushError as e:
            problems.append(str(e))
    return problems


def check_json_values(config: dict, path: str) -> dict:
    """A JSON args dict -> the same, with a string given for a list-of-strings field (train_data, test_data,
    sentence_columns ...) made a one-item list, test_data given as {"name": "source"} made ["name=source"], and
    `"resume_from_checkpoint": true` read as "last"; raises SystemExit naming the file, every unknown key (with the
    known keys closest to it) and every key whose value has the wrong type or is not one of the field's choices
    (HfArgumentParser passes JSON values through unchecked: "bf16": "false" would turn bf16 on, and
    "train_sampling_strategy": "grouped" trained as "random")."""
    hints, choices = argument_types()
    config, problems, known = dict(config), [], argument_names()
    for key, value in config.items():
        if key not in known:
            problems.append(f"unknown key {key!r}" + (f" ({hint})" if (hint := did_you_mean(key)) else ""))
            continue
        if key not in hints:  # a class whose type hints could not be read (above)
            continue
        if key == "resume_from_checkpoint" and isinstance(value, bool):  # as `Trainer.train` takes it
            config[key] = value = "last" if value else None
        if isinstance(value, str) and not _accepts(hints[key], value) and _accepts(hints[key], [value]):
            config[key] = value = [value]
        if key == "test_data" and isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            config[key] = value = [f"{name}={source}" for name, source in value.items()]  # {"name": "source", ...}
        if not _accepts(hints[key], value):
            problems.append(f"{key}: expected {_type_text(hints[key])}, got {json.dumps(value, ensure_ascii=False)}")
        elif key in choices and any(v not in choices[key] for v in (value if isinstance(value, list) else [value])
                                    if v is not None):  # a list's items, as argparse takes them from `--key a b`
            problems.append(f"{key}: expected one of {', '.join(choices[key])}, got "
                            f"{json.dumps(value, ensure_ascii=False)}")
    if problems:
        raise SystemExit(f"error: {path}: " + "; ".join(problems))
    return config


def non_finite_problems(config: dict) -> list[str]:
    """A message for each key whose value is a number that is not finite (JSON's NaN and Infinity, a flag's "inf"):
    Trainer made an infinite num_train_epochs, warmup_steps or eval_steps an OverflowError once the data had loaded, and
    an infinite temperature or learning rate trains nothing or NaN."""
    return [f"{key}: expected a finite number, got {value}" for key, value in config.items()
            if isinstance(value, float) and not math.isfinite(value)]


def dict_text_problems(config: dict) -> list[str]:
    """What is wrong with each text value of a field that takes a dict (`lr_scheduler_kwargs`, `accelerator_config`
    ...), which TrainingArguments reads as a JSON object where it starts with "{", and else as the path of a JSON file
    (FILE_DICT_FIELDS) or not at all: JSON that is not an object, a file that is not there or does not hold one, other
    text. A message each, naming the key; none where the values are right. (TrainingArguments stopped on them with a
    message that named no key, or with a traceback.)"""
    problems, (hints, _) = [], argument_types()
    for key, value in config.items():
        if not isinstance(value, str) or key not in hints or not _accepts(hints[key], {}):
            continue
        what, text = json.dumps(value), value
        if not value.startswith("{"):
            if key not in FILE_DICT_FIELDS:
                problems.append(f"{key}: expected a JSON object, {{\"key\": value, ...}}, got {what}")
                continue
            what = f"{value} (a JSON file's path, as text that is not an object \"{{...}}\")"
            try:
                with open(value, encoding="utf-8") as f:
                    text = f.read()
            except (OSError, ValueError) as e:
                problems.append(f"{key}: {what} cannot be read ({e.strerror if isinstance(e, OSError) else e})")
                continue
        try:
            parsed = json.loads(text)
        except ValueError as e:
            problems.append(f"{key}: {what} is not JSON ({e})")
            continue
        if not isinstance(parsed, dict):
            problems.append(f"{key}: {what} holds {json.dumps(parsed)}, not a JSON object {{\"key\": value, ...}}")
    return problems


def argument_types() -> tuple[dict[str, object], dict[str, list]]:
    """The init fields of the four argument dataclasses -> ({name: type hint}, {name: its `choices`, the values the
    command line's flags take: HfArgumentParser hands them to argparse, and JSON values skip it}), of the classes whose
    type hints can be read."""
    hints, choices = {}, {}
    for dtype in ALL_ARGUMENTS:
        try:
            types_of = typing.get_type_hints(dtype)
        except (NameError, TypeError):  # a forward reference a later transformers may add: leave that class unchecked
            continue
        fields = [f for f in dataclasses.fields(dtype) if f.init]
        hints.update({f.name: types_of[f.name] for f in fields})
        choices.update({f.name: list(f.metadata["choices"]) for f in fields if "choices" in f.metadata})
    return hints, choices


def argument_names() -> set[str]:
    """The keys an arguments file may hold: the init fields of the four argument dataclasses (as HfArgumentParser)."""
    return {f.name for dtype in ALL_ARGUMENTS for f in dataclasses.fields(dtype) if f.init}


def did_you_mean(key: str, prefix: str = "") -> str:
    """An unknown argument name (a key, or a flag: `--a-b`, `--a_b=1`) -> "did you mean 'a' or 'b'?" naming the closest
    known ones (those within a hair of the closest), or "" if none is close; `prefix` ("--") goes before each."""
    key = key.split("=")[0].lstrip("-").replace("-", "_")
    ratios = {name: difflib.SequenceMatcher(None, key, name).ratio()
              for name in difflib.get_close_matches(key, sorted(argument_names()), n=2)}
    close = [f"'{prefix}{name}'" for name, ratio in ratios.items() if ratio >= max(ratios.values()) - 0.05]
    return f"did you mean {' or '.join(close)}?" if close else ""


def _type_text(annotation) -> str:
    """A field's type as an error names it: `list[str] | None`, a literal as its JSON value (`str | None | false`)."""
    origin, arms = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_text(arm) for arm in arms)
    if origin is typing.Literal:
        return " | ".join(json.dumps(arm) for arm in arms)
    if annotation is type(None):
        return "None"
    return str(annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")


def _accepts(annotation, value) -> bool:
    """Whether a JSON value fits a dataclass field's type. An enum takes a string (TrainingArguments checks that it
    names a member); another class (accelerate's ParallelismConfig) only an instance of it, which JSON never holds."""
    origin, arms = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(arm, value) for arm in arms)
    if origin is typing.Literal:
        return value in arms
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str or (isinstance(annotation, type) and issubclass(annotation, Enum)):
        return isinstance(value, str)
    if (origin or annotation) is list:
        return isinstance(value, list) and (not arms or all(_accepts(arms[0], v) for v in value))
    if (origin or annotation) is dict:
        return isinstance(value, dict)
    # A dict given for parallelism_config was a traceback from TrainingArguments.to_dict at start-up.
    return not isinstance(annotation, type) or isinstance(value, annotation)


def flag_overrides(flags: list[str], path: str | None) -> dict:
    """Command-line flags given after the JSON args file `path` (or alone: `path` None) -> {key: value} of the keys they
    set, typed as `HfArgumentParser` types flags (`--bf16 false`, `--test_data a=x.tsv b=y.tsv`); unknown flags are an
    error."""
    # allow_abbrev off: `--learning` must not pass for `--learning_rate`; exit_on_error off: a bad value raises, named
    # below.
    parser = HfArgumentParser(ALL_ARGUMENTS, allow_abbrev=False, exit_on_error=False)
    for action in parser._actions:
        action.default = argparse.SUPPRESS  # the namespace then holds only the keys the flags set
    where = f"{path}: " if path else ""
    try:
        given, unknown = parser.parse_known_args(flags)
    except argparse.ArgumentError as e:
        raise SystemExit(f"error: {where}{e}") from None
    if unknown:
        hints = "".join(f" ({flag.split('=')[0]}: {hint})" for flag in unknown
                        if flag.startswith("--") and (hint := did_you_mean(flag, "--")))
        raise SystemExit(f"error: {where}unknown command-line argument(s){' after it' if path else ''} (a flag is the "
                         f"whole key): {' '.join(unknown)}{hints}")
    return vars(given)


def script_flag_problems(given: dict, training_args: TrainingArguments, data_args: DataArguments) -> list[str]:
    """`do_train`, `do_eval` and `do_predict`, the flags `TrainingArguments` keeps for scripts, where `given` (the keys
    the JSON file or the flags set) sets them against what this job does: it always trains, scores the dev set when
    `eval_strategy` says and every `test_data` set at the end. They are accepted where they agree (as the original
    SimCSE scripts pass them) and refused where they do not, rather than ignored."""
    problems = []
    if given.get("do_train") is False:
        problems.append("do_train false: run_simcse.py always trains (leave the key out); to score an encoder as it "
                        "is: python sts_evaluation.py MODEL")
    scores_dev = training_args.eval_strategy != "no"
    if "do_eval" in given and given["do_eval"] != scores_dev:
        problems.append(f"do_eval {str(given['do_eval']).lower()}, yet eval_strategy is "
                        f"{training_args.eval_strategy.value!r}: the dev set is scored during training where "
                        "eval_strategy is steps or epoch (with dev_data), and not where it is \"no\"; leave do_eval "
                        "out")
    if "do_predict" in given and given["do_predict"] != bool(data_args.test_data):
        problems.append(f"do_predict {str(given['do_predict']).lower()}, yet test_data is "
                        f"{'set' if data_args.test_data else 'empty'}: every test_data set is scored at the end, and "
                        "only those; leave do_predict out")
    return problems


def trainer_setting_problems(training_args: TrainingArguments, data_args: DataArguments) -> list[str]:
    """`TrainingArguments` that would split the contrastive batch, train on other batches than the seed's or other
    gradients than the loss's, break the STS scoring or the export, or fail once training has begun -> what is wrong
    with each. (FSDP and DeepSpeed are refused before they are made: `sharding_problem`.)"""
    problems = []
    for key, (low, below, what) in TRAINING_VALUE_RANGES.items():
        value = getattr(training_args, key)
        if value is not None and not (low <= value and (below is None or value < below)):
            problems.append(f"{key} ({what}) must be {f'at least {low}' if below is None else f'in [{low}, {below})'}, "
                            f"got {value}")
    if (training_args.load_best_model_at_end and training_args.save_strategy == "steps"
            and training_args.save_steps != training_args.eval_steps):
        # Trainer records the best step at every evaluation, and loads it at the end only where that step was saved:
        # a best step between saves left an older checkpoint or the last step's weights, which the export and the
        # card ("kept: step 6") called the best. Trainer takes save_steps 0 as "save no step but the last".
        problems.append(f"save_steps {training_args.save_steps:g} with eval_steps {training_args.eval_steps:g}: "
                        "load_best_model_at_end loads the best scored step only where it was saved, and a step scored "
                        "between saves has no checkpoint (the export would be an older one's or the last step's "
                        "weights, called the best); set save_steps to eval_steps (save_total_limit 1 keeps the best "
                        "and the newest checkpoints only), or save_strategy \"best\" to save only new bests")
    if training_args.fp16 and training_args.device.type == "cpu":  # accelerate then trains in fp32 without a word
        problems.append("fp16 on a CPU: accelerate has no fp16 mixed precision there and would train in fp32, while "
                        "run_args.json and the card said fp16; leave fp16 out on a CPU (bf16 works there)")
    if training_args.mixed_precision not in ("no", "bf16", "fp16"):  # the launcher's, where the JSON sets neither
        problems.append(f"mixed_precision {training_args.mixed_precision} (accelerate launch --mixed_precision, or the "
                        "accelerate config): this job trains in fp32, bf16 or fp16; fp8 would swap the encoder's "
                        "linear layers for Transformer Engine's or torchao's, which its export, its card and its CUDA "
                        "graphs were never tried with (and without either package it stops once the data has loaded); "
                        "launch with --mixed_precision bf16, or set bf16 in the arguments, which wins")
    if training_args.n_gpu > 1:  # Trainer would fall back to nn.DataParallel, which splits the in-batch negatives
        problems.append(f"{training_args.n_gpu} GPUs are visible to one process; launch one process per GPU with "
                        "`accelerate launch --num_processes N run_simcse.py CONFIG`, or pick one GPU with "
                        "CUDA_VISIBLE_DEVICES")
    if training_args.hub_strategy in ("checkpoint", "all_checkpoints"):  # Trainer's own pushes are off (run_simcse)
        problems.append(f"hub_strategy {training_args.hub_strategy.value}: checkpoints never go to the Hub (they "
                        "hold optimizer states and training_args.bin); push_to_hub uploads the exported model once, at "
                        "the end")
    if training_args.world_size > 1 and not training_args.accelerator_config.even_batches:
        # Processes then get batches of different sizes or counts: the last step's gathers do not line up.
        problems.append("accelerator_config.even_batches: false leaves processes with batches of different sizes, "
                        "which the gathered negatives and the evaluation's gathers cannot line up; keep it true")
    accelerator_config = training_args.accelerator_config
    if training_args.world_size > 1 and accelerator_config.split_batches:
        problems.append(f"accelerator_config.split_batches: true splits each batch of per_device_train_batch_size "
                        f"between the {training_args.world_size} processes, while run_args.json and the card count it "
                        "per process (the contrastive batch would be a share of what they say); keep it false and set "
                        "per_device_train_batch_size to the rows of one process")
    if accelerator_config.dispatch_batches:
        problems.append("accelerator_config.dispatch_batches: true has the main process load every batch and hand "
                        "the others slices of it, which cuts packed batches apart (2 processes stopped in training on "
                        "an IndexError); each process loads its own batches: leave it unset")
    accumulation = accelerator_config.gradient_accumulation_kwargs or {}
    if isinstance(accumulation, dict) and "num_steps" in accumulation:  # Trainer's, once the data have loaded
        problems.append("accelerator_config.gradient_accumulation_kwargs.num_steps: Trainer would take it as "
                        "gradient_accumulation_steps after this job had checked and recorded those; set "
                        "gradient_accumulation_steps instead")
    try:  # as Trainer makes it, once the data and the model have loaded
        GradientAccumulationPlugin(**{**accumulation, "num_steps": 1})
    except (TypeError, ValueError) as e:
        problems.append(f"accelerator_config.gradient_accumulation_kwargs {json.dumps(accumulation)}: {e}")
    if not accelerator_config.use_seedable_sampler:
        problems.append("accelerator_config.use_seedable_sampler: false draws each epoch's order from torch's random "
                        "state rather than from the seed and the epoch, so a run resumed within an epoch trains on "
                        "other batches than the run it continues (the smoke job: AVG 36.48 resumed at step 4, 37.84 "
                        "uninterrupted); keep it true")
    if training_args.ignore_data_skip:
        problems.append("ignore_data_skip: a run resumed within an epoch would train that epoch's first batches again "
                        "and stop at the run's step count without its last ones (the smoke job resumed at step 4 of 12 "
                        "logged other losses from step 5), and skipping them loads no data here (accelerate skips "
                        "them in the sampler); leave it false")
    if training_args.train_sampling_strategy == "batch_rebalance":
        problems.append("train_sampling_strategy: batch_rebalance varies the batch size between processes and "
                        "accumulation steps (2 processes crashed in the gathered negatives), and a contrastive batch "
                        "needs the same rows on each; use random (the default) or group_by_length")
    if training_args.auto_find_batch_size:
        problems.append("auto_find_batch_size: Trainer would halve the batch on running out of memory, and with it the "
                        "negatives every sentence is contrasted with, while run_args.json and the card give the batch "
                        "asked for; set the batch, and embedding_chunk_size to fit a large one in memory")
    if training_args.dataloader_drop_last and (data_args.dev_data or data_args.test_data):
        problems.append("dataloader_drop_last: Trainer drops the last partial batch of every evaluation too, so the "
                        "STS scores would leave pairs out; set it to false")
    if training_args.prediction_loss_only:
        problems.append("prediction_loss_only: true keeps the STS scores from the metrics; set it to false")
    if training_args.bf16_full_eval or training_args.fp16_full_eval:
        problems.append("bf16_full_eval and fp16_full_eval: Trainer would cast the model to half precision in place "
                        "for the final evaluation, so the export would be written in it and the test sets scored at "
                        "another precision than the dev set during training; leave both false (bf16: true evaluates "
                        "under bf16 autocast)")
    if training_args.neftune_noise_alpha:
        problems.append("neftune_noise_alpha: NEFTune adds noise to the input embeddings of generative models being "
                        "instruction-tuned; SimCSE's noise is dropout, and the card would not say the embeddings were "
                        "perturbed; leave it unset")
    if training_args.use_liger_kernel:
        problems.append("use_liger_kernel: Liger's kernels replace layers of decoder models (Llama, Qwen, ...), none "
                        "of the encoders this job trains, which would run unchanged; leave it false")
    if training_args.label_smoothing_factor or training_args.label_names not in (None, ["labels"]):
        problems.append("label_smoothing_factor and label_names are for classifiers: the loss is contrastive and the "
                        "STS gold scores are the `labels`; leave both unset")
    metric = training_args.metric_for_best_model
    if metric is not None and metric.removeprefix("eval_") not in (*METRIC_NAMES, "loss"):
        problems.append(f"metric_for_best_model: {metric!r} is not a metric of the dev set; one of "
                        f"{', '.join(METRIC_NAMES)} (x100, higher is better)")
    elif metric is not None and metric.removeprefix("eval_") != "loss" and training_args.greater_is_better is False:
        problems.append(f"greater_is_better: false would keep the checkpoint with the lowest {metric}, and a "
                        "correlation is better the higher it is; leave greater_is_better out")
    if training_args.dataloader_multiprocessing_context and not training_args.dataloader_num_workers:
        problems.append(f"dataloader_multiprocessing_context {training_args.dataloader_multiprocessing_context}: "
                        "DataLoader takes a way of starting worker processes only where it has some, and stopped the "
                        "run at its first step without them; set dataloader_num_workers, or leave it out")
    if not training_args.dataloader_in_order and training_args.dataloader_num_workers > 1:  # one worker: in order
        problems.append("dataloader_in_order: false hands the steps their batches in the order DataLoader workers "
                        "finish them, not the order drawn, so what each step trains on follows the workers' timing "
                        "rather than the seed, and a resumed run skips the batches handed out first; leave it true")
    if DebugOption.TPU_METRICS_DEBUG in training_args.debug and not is_torch_xla_available():
        problems.append("debug tpu_metrics_debug prints torch_xla's metrics, and this machine has no torch_xla "
                        "(Trainer stopped at the first evaluation on a NameError); leave it out")
    problems += activation_checkpointing_problems(training_args)
    if training_args.torch_compile:  # accelerate reads the backend when Trainer is made, torch the mode as it compiles
        backend, mode = training_args.torch_compile_backend, training_args.torch_compile_mode
        asked = f"torch_compile_backend {backend}" + (f" with torch_compile_mode {mode}" if mode else "")
        try:
            plugin = TorchDynamoPlugin(backend=backend, mode=mode)
        except ValueError:
            problems.append(f"torch_compile_backend {backend}: accelerate compiles with one of "
                            f"{', '.join(b.value.lower() for b in DynamoBackend if b is not DynamoBackend.NO)}")
        else:
            try:
                torch.compile(nn.Identity(), **plugin.to_kwargs())  # as accelerate's prepare_model calls it
            except Exception as e:  # noqa: BLE001 - whatever torch raises stops the run once the data has loaded
                problems.append(f"{asked}: {e}")
    if training_args.batch_eval_metrics or not training_args.eval_do_concat_batches:
        problems.append("batch_eval_metrics: true and eval_do_concat_batches: false hand the metrics one batch at a "
                        "time, and the STS correlations need every pair's score at once; leave both at their defaults")
    try:  # Trainer makes these at its start, after the data and the model have loaded; a missing package stops them
        for callback in get_reporting_integration_callbacks(training_args.report_to):
            callback()
    except (ImportError, RuntimeError, ValueError) as e:
        problems.append(f"report_to {', '.join(training_args.report_to)}: {e}")
    optim = getattr(training_args.optim, "value", training_args.optim)
    try:  # the optimizer's package and settings, which Trainer looks at only when training begins
        Trainer.get_optimizer_cls_and_kwargs(training_args)
        if ignored := unread_optim_args(training_args):
            them = "it" if len(ignored) == 1 else "them"
            problems.append(f"optim_args {', '.join(ignored)}: Trainer's {optim} optimizer does not read {them}, so "
                            f"the run would train as if unset, under a card that names {them}; leave {them} out")
    except (ImportError, ValueError) as e:
        if not (isinstance(e, ValueError) and "model" in str(e)):  # GaLore, LOMO ... need the model: Trainer's to judge
            problems.append(f"optim {optim}: {e}")
    except Exception:  # noqa: BLE001 - as above: Trainer judges, with the model
        pass
    scheduler = training_args.lr_scheduler_type.value
    if scheduler in ("constant", *DEV_SCORE_SCHEDULERS) and training_args.warmup_steps:
        problems.append(f"lr_scheduler_type {scheduler} takes no warm-up (Trainer builds it without warmup_steps), so "
                        f"warmup_steps {training_args.warmup_steps:g} would not happen, and the card would say it did: "
                        + ("use constant_with_warmup, or " if scheduler == "constant" else "") + "leave warmup_steps 0")
    if scheduler in ("constant", "constant_with_warmup") and training_args.lr_scheduler_kwargs:
        problems.append(f"lr_scheduler_kwargs {json.dumps(training_args.lr_scheduler_kwargs)}: Trainer builds "
                        f"lr_scheduler_type {scheduler} without them, so the run would train as if they were unset, "
                        "under a card that names them; leave them out")
    # (Without evaluations in training, TrainingArguments refuses them itself; without dev_data, job_problems.)
    if scheduler in DEV_SCORE_SCHEDULERS and (training_args.lr_scheduler_kwargs or {}).get("mode") == "min":
        problems.append(f"lr_scheduler_type {scheduler} with lr_scheduler_kwargs mode \"min\" would lower the "
                        "learning rate while the dev score rises: the dev metrics are higher-is-better; leave mode out "
                        "(\"max\" is set)")
    try:  # the scheduler and its lr_scheduler_kwargs, which Trainer builds only when training begins
        get_scheduler(training_args.lr_scheduler_type, torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0),
                      num_warmup_steps=0, num_training_steps=100,
                      scheduler_specific_kwargs=training_args.lr_scheduler_kwargs)
    except (ValueError, TypeError) as e:
        problems.append(f"lr_scheduler_type {training_args.lr_scheduler_type.value} with "
                        f"lr_scheduler_kwargs {json.dumps(training_args.lr_scheduler_kwargs or {})}: {e}")
    return problems


def unread_optim_args(training_args: TrainingArguments) -> list[str]:
    """The keys of `optim_args` that Trainer's optimizer for `optim` never reads (adamw_torch reads none; sgd, adagrad
    and rmsprop only their own): a key is read where, its value made a placeholder, the optimizer's arguments change or
    fail to parse. Trainer passes the others over without a word."""
    given = dict(item.split("=", 1) for item in (training_args.optim_args or "").replace(" ", "").split(",") if item)

    def optimizer_kwargs(settings: dict[str, str]) -> dict:
        probe = copy.copy(training_args)
        probe.optim_args = ",".join(f"{key}={value}" for key, value in settings.items()) or None
        return Trainer.get_optimizer_cls_and_kwargs(probe)[1]

    unread = []
    for key in given:
        without = optimizer_kwargs({k: v for k, v in given.items() if k != key})
        try:
            read = optimizer_kwargs({**given, key: "?"}) != without
        except (ValueError, TypeError, AttributeError, KeyError):  # float("?"), strtobool("?"), getattr(torch, "?")
            read = True
        if not read:
            unread.append(key)
    return unread


def activation_checkpointing_problems(training_args: TrainingArguments) -> list[str]:
    """What is wrong with `activation_checkpointing_kwargs`, which Trainer hands to transformers (`every_n_layers`,
    `offload`) and the rest to torch's `checkpoint` at the first step: keys or values that would stop it there, and
    `preserve_rng_state` false, which would train on gradients of other dropout masks than the loss's. None where
    `activation_checkpointing` is off (Trainer then reads none of them)."""
    if not training_args.activation_checkpointing:
        return []
    given = dict(training_args.activation_checkpointing_kwargs or {})
    shown = f"activation_checkpointing_kwargs {json.dumps(given)}"
    every_n_layers, offload = given.pop("every_n_layers", 1), given.pop("offload", False)
    problems = []
    if isinstance(every_n_layers, bool) or not isinstance(every_n_layers, int) or every_n_layers < 1:
        problems.append(f"{shown}: every_n_layers (checkpoint every n-th layer) must be a whole number of at least 1")
    if not isinstance(offload, bool):
        problems.append(f"{shown}: offload must be true or false")
    elif offload and training_args.device.type == "cpu":
        problems.append(f"{shown}: offload holds the saved activations in pinned host memory, which needs a GPU (on a "
                        "CPU they are in host memory already); leave it out")
    if given.get("preserve_rng_state", True) is not True:
        problems.append(f"{shown}: preserve_rng_state false recomputes each checkpointed layer under new dropout "
                        "masks, so the gradients would not be those of the loss (SimCSE's noise is dropout); leave it "
                        "out")
    # torch's checkpoint takes its settings as keyword-only parameters, and preserve_rng_state out of **kwargs.
    takes = {name for name, parameter in inspect.signature(checkpoint).parameters.items()
             if parameter.kind is parameter.KEYWORD_ONLY} | {"preserve_rng_state"}
    if unknown := sorted(set(given) - takes):
        problems.append(f"{shown}: neither transformers (every_n_layers, offload) nor torch's checkpoint "
                        f"({', '.join(sorted(takes))}) takes {', '.join(unknown)}")
    elif not problems:
        try:  # the values, as torch's checkpoint judges them (use_reentrant left out: torch warns, and takes true)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                checkpoint(torch.sin, torch.ones(1, requires_grad=True), **given).sum().backward()
        except Exception as e:  # noqa: BLE001 - whatever torch raises stops the first step
            problems.append(f"{shown}: {e}")
    return problems


def sharding_problem(fsdp: bool, deepspeed: bool, env: typing.Mapping[str, str] | None = None) -> str | None:
    """Why the run cannot train with FSDP, DeepSpeed or accelerate's other ways of splitting the model or its inputs,
    asked for by the arguments (`fsdp`, `deepspeed`) or by the launcher (an accelerate config's distributed type,
    ACCELERATE_USE_FSDP / _DEEPSPEED / _MEGATRON_LM; `accelerate launch --use_parallelism_config` with a sharded data,
    tensor, context or sequence parallel size over 1; in `env`, default the process's); None if none is."""
    env = launcher_environment(env)
    split = [kind.lower() for kind in ("DP_SHARD", "TP", "CP", "SP")
             if env.get(f"PARALLELISM_CONFIG_{kind}_SIZE", "1").strip() not in ("", "1")]
    asked_for = {"FSDP": fsdp or env.get("ACCELERATE_USE_FSDP", "").lower() == "true",
                 "DeepSpeed": deepspeed or env.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true",
                 "Megatron-LM": env.get("ACCELERATE_USE_MEGATRON_LM", "").lower() == "true",
                 f"parallelism_config ({', '.join(f'{kind}_size' for kind in split)})":
                     env.get("ACCELERATE_USE_PARALLELISM_CONFIG", "").lower() == "true" and bool(split)}
    sharding = [name for name, asked in asked_for.items() if asked]
    if not sharding:
        return None
    return (f"{' and '.join(sharding)} (asked for by the arguments or by the accelerate config): this job trains with "
            "DDP only; its export and its gathered negatives are not written for, nor tested with, a model, its "
            "optimizer state or its sentences spread over the processes. A SimCSE encoder and its optimizer state "
            "fit on each GPU: launch with DDP (configs/accelerate/*.yaml, or `accelerate launch --multi_gpu "
            "--num_processes N`)")


def launcher_environment(env: typing.Mapping[str, str] | None) -> typing.Mapping[str, str]:
    """`env`, or where None the process's environment as it is now: looked up at each call, never bound as a default,
    because `datasets`' multi-process `map` rebinds `os.environ` to a deep copy of itself."""
    return os.environ if env is None else env


def take_launcher_settings(training_args: TrainingArguments, env: typing.Mapping[str, str] | None = None) -> None:
    """Make the launcher's precision and compilation the arguments' own. `accelerate launch --mixed_precision X
    --dynamo_backend Y` (or an `accelerate config` file that holds them) reach Trainer as ACCELERATE_MIXED_PRECISION
    and ACCELERATE_DYNAMO_BACKEND, which it trains with where the JSON sets no precision and no torch_compile; this
    sets `bf16`/`fp16` and `torch_compile` then, so the run's record, its card, the cuda_graphs default and the check
    that two compilations are not asked for see what the run does. A JSON precision other than the launcher's wins (as
    in Trainer), with a warning; the launcher's fp8 alone is refused (trainer_setting_problems)."""
    env = launcher_environment(env)
    launcher = env.get("ACCELERATE_MIXED_PRECISION", "no")
    if launcher in ("bf16", "fp16", "fp8"):
        chosen = "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else None
        if chosen is None:
            if launcher != "fp8":  # fp8 alone is refused (trainer_setting_problems)
                setattr(training_args, launcher, True)
                logger.info("training in %s, the launcher's mixed_precision", launcher)
        elif chosen != launcher:
            logger.warning("the launcher asks for mixed_precision %s and the arguments for %s: training in %s",
                           launcher, chosen, chosen)
    backend = env.get("ACCELERATE_DYNAMO_BACKEND", "no").lower()
    if backend != "no" and not training_args.torch_compile:
        training_args.torch_compile, training_args.torch_compile_backend = True, backend
        training_args.torch_compile_mode = training_args.torch_compile_mode or env.get("ACCELERATE_DYNAMO_MODE")
        logger.info("the whole model is compiled (torch_compile, backend %s), as the launcher's dynamo_backend asks",
                    backend)


def launched_alone(world_size: int, env: typing.Mapping[str, str] | None = None) -> bool:
    """True for the one process that `accelerate launch --num_processes N` (N > 1) starts where it has no multi-process
    launcher to use (a CPU, or one GPU, without `--multi_gpu`): its simple launcher sets ACCELERATE_USE_CPU, and
    MASTER_ADDR for the N processes, but starts this one alone, with no WORLD_SIZE. env: default the process's."""
    env = launcher_environment(env)
    return world_size == 1 and "ACCELERATE_USE_CPU" in env and "MASTER_ADDR" in env and "WORLD_SIZE" not in env


def cuda_graphs_conflicts(training_args: TrainingArguments, simcse_args: SimCSEArguments) -> list[str]:
    """The settings of a run that `cuda_graphs` cannot work with, one error message each (none: it can)."""
    conflicts = []
    if training_args.device.type != "cuda":
        conflicts.append(f"cuda_graphs needs a CUDA device; this run's device is {training_args.device.type}")
    if simcse_args.embedding_chunk_size:
        conflicts.append("cuda_graphs does not go with embedding_chunk_size (recomputed chunks); set one of them")
    if training_args.gradient_accumulation_steps > 1:
        # The gradients are the graphs' outputs, overwritten by the next replay (pytorch/pytorch#169545).
        conflicts.append("cuda_graphs does not go with gradient_accumulation_steps > 1; use a larger batch")
    if training_args.activation_checkpointing:
        # A layer replayed as a CUDA graph inside a (non-reentrant) checkpoint: CUDA graph trees see other tensors
        # freed while recording than while replaying, and fail or overwrite live memory (pytorch/pytorch#154306).
        conflicts.append("cuda_graphs does not go with activation_checkpointing (pytorch/pytorch#154306); set one of "
                         "them (embedding_chunk_size also trains large batches in little memory)")
    return conflicts


def output_dir_problem(output_dir: str) -> str | None:
    """What keeps the run from writing to `output_dir` (it, or the nearest folder above it that exists, is a file or is
    not writable; a link to nothing on the way), or None. Trainer would stop on it with a traceback after the data and
    the model had loaded."""
    existing = os.path.abspath(output_dir)
    while not os.path.exists(existing):
        if os.path.islink(existing):  # makedirs would fail on it, after the data and the model had loaded
            return f"output_dir {output_dir}: {existing} is a link to {os.readlink(existing)}, which is not there"
        existing = os.path.dirname(existing)
    where = "" if existing == os.path.abspath(output_dir) else f": {existing}"
    if not os.path.isdir(existing):
        return f"output_dir {output_dir}{where} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"output_dir {output_dir}{where} is not writable by this user"
    return None


def sources_in_output_dir(model_args: ModelArguments, output_dir: str) -> list[str]:
    """The model and tokenizer folders that the run would write over or delete: `output_dir` itself (the export
    replaces its files) or one of its checkpoint-* folders (overwrite_output_dir and save_total_limit delete them)."""
    out = os.path.realpath(output_dir)
    problems = []
    for key in ("model_name_or_path", "tokenizer_name"):
        name = getattr(model_args, key)
        if not name or not os.path.isdir(name):
            continue
        folder = os.path.realpath(name)
        if folder == out:
            problems.append(f"{key} {name} is output_dir itself, whose files the run's export replaces (its card would "
                            "name a base model that is no longer there); write the run to another folder")
        elif os.path.dirname(folder) == out and CHECKPOINT.match(os.path.basename(folder)):
            problems.append(f"{key} {name} is a checkpoint folder of output_dir {output_dir}, where the run deletes "
                            "checkpoints (those of another run, and the oldest beyond save_total_limit); copy it "
                            "elsewhere first, or write the run to another folder")
    return problems


def run_arguments_dict(*parsed) -> dict:
    """The arguments as they are saved in run_args.json (JSON-serialisable, token-free), with the number of processes
    (`world_size`), which sets the contrastive batch and the order of the data as much as the batch size does."""
    out = {}
    for args in parsed:
        values = args.to_dict() if isinstance(args, TrainingArguments) else dataclasses.asdict(args)
        out.update({k: v for k, v in values.items() if not k.endswith("_token")})  # hub_token
        if isinstance(args, TrainingArguments):
            out["world_size"] = args.world_size
    return json.loads(json.dumps(out, default=str))
