"""Train a SimCSE sentence encoder with `Trainer`, pick the best checkpoint on an STS dev set, evaluate and export.

    accelerate launch run_simcse.py configs/klue-bert-sup.json     # or: python run_simcse.py configs/smoke.json

One JSON file holds every argument: the fields of `ModelArguments`, `DataArguments`, `SimCSEArguments` (in
`run_arguments.py`, which reads and checks them) and of `transformers.TrainingArguments`; an unknown key is an error.
Flags after it (`--learning_rate 3e-5`) override its keys. The run writes to `output_dir`:
  * checkpoints (`checkpoint-*`) while training, `run_args.json` (the arguments and the training rows' SHA-256, which
    mark the folder as this run's);
  * the exported encoder (config, safetensors weights, tokenizer, sentence-transformers files; see
    `SimCSEModel.export_encoder`), `sts_results.json` ({set: {avg, cosine_pearson, ..., dot_spearman}}, x100),
    `train_results.json`, `trainer_state.json` (the dev scores over training).
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import json
import logging
import multiprocessing.util
import os
import platform
import shutil
import sys
import sysconfig
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from typing import NamedTuple

import joblib
import multiprocess.util  # datasets' process pool's multiprocessing
import torch
import transformers
from datasets import Dataset
from huggingface_hub import HfApi
from huggingface_hub.errors import StrictDataclassError
from torch import nn
from torch._dynamo.exc import BackendCompilerFailed
from torch.utils.data import DataLoader
from transformers import (AutoConfig, AutoModel, AutoTokenizer, PreTrainedTokenizerBase, ProgressCallback, Trainer,
                          TrainerCallback, TrainingArguments, set_seed)
from transformers.debug_utils import DebugOption
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from data_collator import SimCSECollator
from data_loading import (DataError, column_values, load_nli_triplets, load_sentence_columns, load_sts,
                          model_load_error, parse_named_sets, refuses_model_code, rows_digest, sample_sentences,
                          shared_pairs, tokenize_rows)
from hub.card import contrastive_batch, dev_metric, hub_datasets, not_held_out, render_card
from hub.model_dir import RESULTS_FILE, RUN_ARGS_FILE, published_files, write_json
from hub.push import PushError, describe_push, push, stopped_push
from modeling_simcse import (
    CLS_POOLERS, CUDA_GRAPH_LENGTHS, CUDA_GRAPH_ROWS, EMBEDDING_RECIPES, PACKABLE_ATTENTION, PACKABLE_MODEL_TYPES,
    EncoderWeightsMissing, SimCSEConfig, SimCSEModel, load_encoder, pooler_dense, saved_form,
)
from output_folder import (check_output_dir, checkpoint_step, full_disk, hold_output_dir, interruption_note,
                           release_output_dirs, remove_checkpoints, resolve_resume, resumes_in)
from process_agreement import check_same_resumption, check_same_run, stopping_together
from run_arguments import (
    SIMCSE_CONFIG_KEYS, TOKENIZE_IN_PARALLEL_FROM, TRAIN_FORMATS, DataArguments, ModelArguments, SimCSEArguments,
    cuda_graphs_conflicts, launched_alone, parse_arguments, run_arguments_dict,
)
from scratch_tokenizer import SPECIAL_TOKENS, train_wordpiece
from sigterm import CTRL_C_EXIT_CODE
from sigterm import EXIT_CODE as SIGTERM_EXIT
from sigterm import CtrlC, SigtermRaises, Terminated, own_forkserver, stopped_by, workers_leave_sigterm
from sts_evaluation import (check_inputs, compute_metrics, evaluate_sets, format_table, sentence_transformers_modules,
                            sentence_transformers_pooling, tokenize_sts, undefined_metrics)
from training_guards import (LastCheckpointKeeper, NonFiniteLossGuard, ResumedBestCheckpoint, Termination,
                             TrainingBegan, TrainingDiverged, best_checkpoint_problem, checkpoint_problem,
                             raised_within)

logger = logging.getLogger(__name__)
# This project's modules (not its .venv/, where one may be): where its own log records come from.
PROJECT_FOLDERS = {(root := os.path.dirname(os.path.abspath(__file__))), os.path.join(root, "hub")}

# Length-sorted pieces per step on CPU: measured in bench/RESULTS.md (no launch overhead, padding dominates).
CPU_LENGTH_BUCKETS = 8
# In each checkpoint: the training seconds up to it, over every session (TrainingClock).
CLOCK_FILE = "training_seconds.json"
# Batches of few shapes for cuda_graphs (why and how many: modeling_simcse.CUDA_GRAPH_ROWS).
CUDA_GRAPH_SHAPES = {"pack_rows_multiple_of": CUDA_GRAPH_ROWS, "pad_to_multiple_of": CUDA_GRAPH_LENGTHS}
# The most bytes of a Unix socket's path, its closing NUL included (sun_path: 108 on Linux, 104 on macOS).
UNIX_SOCKET_PATH_BYTES = 104 if sys.platform == "darwin" else 108
# A worker process's socket (the listener of DataLoader workers' shared tensors, of the queue of datasets' pool) in
# multiprocessing's folder (multiprocess's for datasets), which is `PROCESS_FOLDER` in the temporary folder; mkdtemp and
# mktemp add 8 characters to the prefix (newer CPython names its sockets "sock-", shorter).
SOCKET, PROCESS_FOLDER = "listener-" + 8 * "x", "pymp-" + 8 * "x"


def load_training_set(data_args: DataArguments, cache_dir: str | None,
                      read_columns: dict[str, list[str]] | None = None) -> Dataset:
    """The training rows as Dataset(sent0[, sent1[, hard_neg]]); raises DataError where they cannot train.
    read_columns: as in `load_sentence_columns` (left empty for nli sources)."""
    left_out = []  # what took rows away, for the error of too few
    if data_args.train_format == "nli":
        ds = load_nli_triplets(data_args.train_data, data_args.nli_strip_quotes, cache_dir=cache_dir)
    else:
        defaults = TRAIN_FORMATS[data_args.train_format]
        columns = data_args.sentence_columns or defaults
        if data_args.train_format != "text" and len(columns) != len(defaults):
            raise DataError(f"sentence_columns: {data_args.train_format} needs {len(defaults)} columns (as "
                            f"{', '.join(defaults)}), got {len(columns)}: {', '.join(columns)}")
        ds = load_sentence_columns(data_args.train_data, columns, cache_dir=cache_dir, read_columns=read_columns)
        if data_args.train_format == "text" and data_args.deduplicate_text:
            rows = len(ds)
            ds = ds.from_dict({"sent0": list(dict.fromkeys(column_values(ds, "sent0")))})
            if len(ds) < rows:
                logger.info("deduplicate_text: %d of %d training sentences were repeats and are left out",
                            rows - len(ds), rows)
                left_out.append(f"deduplicate_text left out {rows - len(ds)} repeats")
    if data_args.max_train_samples is not None and data_args.max_train_samples < len(ds):
        ds = ds.select(range(data_args.max_train_samples))
        left_out.append(f"max_train_samples {data_args.max_train_samples}")
    if len(ds) < 2 and data_args.train_format in ("pair", "text"):  # a triplet has its hard negative
        cut = f" ({'; '.join(left_out)})" if left_out else ""
        raise DataError(f"train_data {', '.join(data_args.train_data)}: 1 training row{cut}; a "
                        f"{data_args.train_format} row has no negatives but the other rows of its batch, so one row "
                        "alone learns nothing (its loss is 0): give 2 or more")
    if data_args.train_format != "text" and (repeats := len(ds) - len(set(column_values(ds, "sent0")))):
        logger.warning("%d of %d training rows have the first sentence (%s) of an earlier row: where two such rows "
                       "share a batch, each takes the other's positive as a negative", repeats, len(ds),
                       "the premise" if data_args.train_format == "nli" else "sent0")
    return ds


class RunInputs(NamedTuple):
    """What `load_inputs` read and checked."""

    train_set: Dataset
    dev_set: Dataset | None
    test_sets: dict[str, Dataset]
    run_args: dict  # the arguments and the rows' digests, written to run_args.json
    overwriting: bool  # output_dir holds another run's files, to be removed
    train_columns: dict[str, list[str]]  # {source: the sentence columns read from it} (none for nli sources)


def load_inputs(model_args: ModelArguments, data_args: DataArguments, simcse_args: SimCSEArguments,
                training_args: TrainingArguments) -> RunInputs:
    """Read and validate the training rows, dev and test sets, and check output_dir against them (holding it where
    this process saves); raises SystemExit with the file and row of bad data. Writes nothing."""
    cache_dir, train_columns = model_args.cache_dir, {}
    try:
        train_set = load_training_set(data_args, cache_dir, train_columns)
        dev_set = load_sts(data_args.dev_data, cache_dir=cache_dir) if data_args.dev_data else None
        test_sets = {name: load_sts(spec, cache_dir=cache_dir)
                     for name, spec in parse_named_sets(data_args.test_data).items()}
    except DataError as e:
        raise SystemExit(f"error: {e}") from None
    # The rows themselves, not only where they came from: a file edited in place makes another run, the same
    # file under another path does not (changed_arguments).
    run_args = {**run_arguments_dict(model_args, data_args, simcse_args, training_args),
                "train_rows": len(train_set), "train_rows_sha256": rows_digest(train_set),
                "dev_rows_sha256": rows_digest(dev_set) if dev_set else None,
                "test_rows_sha256": {name: rows_digest(ds) for name, ds in test_sets.items()}}
    # Refused now, before the model loads; another run's checkpoints go only once nothing else can stop this one.
    if training_args.should_save:
        # Before anything in it is read, or deleted.
        hold_output_dir(training_args.output_dir, training_args.save_on_each_node)
    overwriting = check_output_dir(training_args.output_dir, run_args, simcse_args.overwrite_output_dir,
                                   training_args.resume_from_checkpoint)
    return RunInputs(train_set, dev_set, test_sets, run_args, overwriting, train_columns)


def pairs_shared_with_dev(dev_set: Dataset | None, test_sets: dict[str, Dataset], dev_data: str | None,
                          chooses_checkpoint: bool) -> dict[str, list[int]]:
    """[pairs also in the dev set, pairs] per test set, for the card; warns of a test set whose scores are then not
    held out, where the dev set chooses the checkpoint."""
    pairs_in_dev = {name: [shared_pairs(dev_set, ds), len(ds)] for name, ds in test_sets.items()} if dev_set else {}
    for name, (shared, total) in pairs_in_dev.items():
        if chooses_checkpoint and not_held_out(shared, total):
            logger.warning("test set %s: %d of its %d pairs are in dev_data (%s), which chooses the checkpoint, so its "
                           "scores are not held out (the card says so)", name, shared, total, dev_data)
    return pairs_in_dev


# The pooler_type values that train a sentence-transformers model's own pooling.
POOLER_TYPES_OF_SENTENCE_TRANSFORMERS_POOLING = {"cls": CLS_POOLERS, "mean": ("avg",)}


def warn_of_another_embedding(model: str, saved_embedding: str | None, new: SimCSEConfig, **load_kwargs) -> None:
    """Log a warning when the run starts from a model whose embedding is another than the one it trains: an export or a
    checkpoint of an earlier run (`saved_embedding`, a key of EMBEDDING_RECIPES, else None) evaluated with another
    pooler, or a sentence-transformers model that pools otherwise than `new.pooler_type` (fine-tuning a mean-pooled
    model on its CLS state starts from a vector it was never trained to give) or whose embedding goes on through Dense
    layers (LaBSE's, say), which the run leaves out. load_kwargs: where the model's files are (cache_dir, revision)."""
    if saved_embedding is not None:
        if saved_embedding != new.exported_embedding:
            logger.warning("%s was evaluated with the embedding %s (%s); this run trains and exports %s (pooler_type %r"
                           "%s), so it starts from a vector that model was not trained to give", model, saved_embedding,
                           EMBEDDING_RECIPES[saved_embedding], new.exported_embedding, new.pooler_type,
                           ", mlp_only_train" if new.mlp_only_train else "")
        return
    pooling = sentence_transformers_pooling(model, **load_kwargs)
    fitting = POOLER_TYPES_OF_SENTENCE_TRANSFORMERS_POOLING.get(pooling, ())
    if pooling and new.pooler_type not in fitting:
        advice = f"pooler_type {' or '.join(map(repr, fitting))} trains that embedding" if fitting else \
            "no pooler_type trains that embedding"
        logger.warning("%s is a sentence-transformers model whose embedding is %s pooling; this run trains and exports "
                       "pooler_type %r instead (%s)", model, pooling, new.pooler_type, advice)
    if dense := [m["path"] for m in sentence_transformers_modules(model, "Dense", **load_kwargs)]:
        logger.warning("%s is a sentence-transformers model whose embedding goes on through Dense layers after its "
                       "pooling (%s), which this run neither trains nor exports: it trains the encoder with "
                       "pooler_type %r, starting from the vector before them", model, ", ".join(dense), new.pooler_type)


@contextlib.contextmanager
def model_loading_errors(model_args: ModelArguments) -> Iterator[None]:
    """Turns what stops the encoder or its tokenizer from loading into a clear error: transformers' OSError (not on the
    Hub, no network and not cached, no weights in the folder), and its refusal to run the code a model or tokenizer
    ships (loaded with trust_remote_code=False): the job trains built-in encoders, whose packing, export and card it
    knows."""
    names = list(dict.fromkeys(n for n in (model_args.model_name_or_path, model_args.tokenizer_name) if n))
    try:
        yield
    except OSError as e:
        raise SystemExit(f"error: {model_load_error(names, e, model_args.cache_dir)}") from None
    except ValueError as e:
        if not refuses_model_code(e):
            raise
        raise SystemExit(f"error: {' / '.join(names)} ships its own model code (auto_map in its config), which this "
                         "job does not run: it trains the encoders transformers has built in (BERT, RoBERTa, ELECTRA, "
                         "XLM-R and the like)") from None


def apply_config_changes(config: transformers.PreTrainedConfig, model_args: ModelArguments,
                         simcse_args: SimCSEArguments, made: dict | None) -> transformers.PreTrainedConfig:
    """The encoder's config with the `dropout` argument and `config_overrides` applied, checked as transformers checks
    it only when it saves it (at the export, after training). made: the arguments a config made from `model_type` was
    made with (None for a pretrained one); such a config is made again with the changes, so that what derives from
    them follows (ModernBERT's `layer_types` from `num_hidden_layers`), where a pretrained config keeps the rest as its
    weights were trained."""
    changed = []  # the config keys set here
    if simcse_args.dropout is not None:
        changed = ["hidden_dropout_prob", "attention_probs_dropout_prob"]
        if not all(hasattr(config, key) for key in changed):
            raise SystemExit(f"error: dropout: a {config.model_type} config has no {' / '.join(changed)} to set; leave "
                             "dropout unset and set the encoder's own dropout keys in config_overrides")
        config.update(dict.fromkeys(changed, simcse_args.dropout))
    try:
        if model_args.config_overrides:
            config.update_from_string(model_args.config_overrides)  # typed as the config's own values
            changed += [item.split("=")[0] for item in model_args.config_overrides.split(",")]
        if made is not None and changed:
            kept = {key: getattr(config, key) for key in changed}
            config = AutoConfig.for_model(config.model_type, **{**made, **kept})
        if changed and hasattr(config, "validate"):
            config.validate()
    except (ValueError, TypeError, StrictDataclassError) as e:
        raise SystemExit(f"error: {'config_overrides' if model_args.config_overrides else 'dropout'}: {e}") from None
    return config


def special_token_ids(tokenizer: PreTrainedTokenizerBase, model_type: str) -> dict[str, int | None]:
    """The ids of `tokenizer`'s special tokens under the config keys of `model_type` that name one: a config made from
    a model type names those of its pretrained vocabulary (ModernBERT's [CLS] is 50281, beyond a trained tokenizer's
    pieces, which transformers warns of at every load of the export; RoBERTa's <s> is 0, a trained tokenizer's [PAD]).
    bos and eos are the tokenizer's own, else its [CLS] and [SEP], as in BERT-style vocabularies."""
    first = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    last = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    ids = {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": first, "eos_token_id": last,
           "cls_token_id": tokenizer.cls_token_id, "sep_token_id": tokenizer.sep_token_id}
    defaults = AutoConfig.for_model(model_type)
    return {key: token_id for key, token_id in ids.items()
            if key == "pad_token_id" or getattr(defaults, key, None) is not None}


def load_tokenizer(model_args: ModelArguments, train_set: Dataset, max_seq_length: int) -> PreTrainedTokenizerBase:
    """The encoder's tokenizer (or `tokenizer_name`), or a WordPiece one trained on the training sentences
    (`train_tokenizer_vocab_size`), whose `model_max_length` is set to max_seq_length: it is saved with every
    checkpoint and the export, and sts_evaluation.py cuts sentences there by default."""
    if model_args.train_tokenizer_vocab_size:
        texts = [s for c in train_set.column_names for s in column_values(train_set, c)]
        tokenizer = train_wordpiece(texts, model_args.train_tokenizer_vocab_size)
        if len(tokenizer) > model_args.train_tokenizer_vocab_size:  # every character seen gets a piece
            logger.warning("train_tokenizer_vocab_size %d is below the training sentences' %d characters (each a "
                           "piece, bare and as a continuation, beside %d special tokens): the vocabulary has %d",
                           model_args.train_tokenizer_vocab_size, (len(tokenizer) - len(SPECIAL_TOKENS)) // 2,
                           len(SPECIAL_TOKENS), len(tokenizer))
    else:
        own = model_args.tokenizer_name is None  # model_revision is model_name_or_path's
        tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name or model_args.model_name_or_path,
                                                  cache_dir=model_args.cache_dir, trust_remote_code=False,
                                                  revision=model_args.model_revision if own
                                                  else model_args.tokenizer_revision)
    tokenizer.model_max_length = max_seq_length
    return tokenizer


def build_model(model_args: ModelArguments, simcse_args: SimCSEArguments, tokenizer: PreTrainedTokenizerBase,
                device_type: str, attention: str | None = None) -> SimCSEModel:
    """A pretrained or config-made encoder wrapped in a fresh `SimCSEModel`, with the attention implementation
    `attention` where given (`run_attention`), else the one transformers picks.

    From an export or a checkpoint of an earlier run, the trained MLP of a `cls` pooler comes along (a `cls` run then
    starts from the embedding that run evaluated); from any other encoder the MLP is new, as in the original SimCSE.
    """
    source = model_args.model_name_or_path
    hub = {"cache_dir": model_args.cache_dir, "revision": model_args.model_revision}  # where its files are
    form = saved_form(source, **hub) if source else None
    made = None  # the arguments of a config made from model_type
    if form == "checkpoint":  # a SimCSEModel saved by Trainer: the encoder's config is its `encoder` block
        saved = SimCSEConfig.from_pretrained(source, **hub)
        config = saved.encoder
    elif source:
        config = AutoConfig.from_pretrained(source, **hub,
                                            trust_remote_code=False)  # False: an error, not an interactive prompt
    else:
        made = {"vocab_size": len(tokenizer), **special_token_ids(tokenizer, model_args.model_type)}
        config = AutoConfig.for_model(model_args.model_type, **made)
    config = apply_config_changes(config, model_args, simcse_args, made)
    trained_mlp, saved_embedding = None, None
    try:
        if form == "checkpoint":
            saved.encoder = config
            trained = SimCSEModel.from_pretrained(source, config=saved, **hub)
            encoder, trained_mlp, saved_embedding = trained.encoder, trained.mlp, saved.exported_embedding
        elif source:
            encoder = load_encoder(source, config=config, **hub)
            if form == "export":
                saved_embedding = config.simcse["embedding"]
                if saved_embedding == "pooler_output":  # the MLP, folded into the encoder's pooler at the export
                    trained_mlp = nn.Sequential(pooler_dense(encoder), nn.Tanh())
        else:
            encoder = AutoModel.from_config(config)
    except EncoderWeightsMissing as e:
        overrides = model_args.config_overrides  # more layers than the checkpoint holds, say
        raise SystemExit(f"error: model_name_or_path: {e}" + (
            f", or config_overrides {overrides!r} asks for more than it holds" if overrides else "")) from None
    except (ValueError, RuntimeError) as e:  # shapes the overrides break (hidden_size and the heads, the weights)
        if not model_args.config_overrides or refuses_model_code(e):
            raise
        raise SystemExit(f"error: config_overrides: the encoder cannot be built with {model_args.config_overrides!r}: "
                         f"{e}") from None
    if attention and encoder.config._attn_implementation != attention:
        logger.info("the encoder attends with %r attention in place of %r (%s)", attention,
                    encoder.config._attn_implementation, ATTENTION_REASONS[attention])
        encoder.set_attn_implementation(attention)
    length_buckets = simcse_args.length_buckets
    if length_buckets is None:
        length_buckets = 1 if device_type == "cuda" else CPU_LENGTH_BUCKETS
    model = SimCSEModel.from_encoder(
        encoder, **{key: getattr(simcse_args, key) for key in SIMCSE_CONFIG_KEYS}, length_buckets=length_buckets
    )
    if model.mlp is not None and trained_mlp is not None:
        model.mlp.load_state_dict(trained_mlp.state_dict())
    if source:
        warn_of_another_embedding(source, saved_embedding, model.config, **hub)
    return model


# Why `run_attention` asks for an implementation.
ATTENTION_REASONS = {
    "eager": "debug underflow_overflow: transformers' detector reads every module's inputs, and cannot read the "
             "boolean masks of sdpa attention; the same math, in slower steps",
}


def run_attention(training_args: TrainingArguments) -> str | None:
    """The attention implementation the run's settings need, or None (transformers' choice): eager for the
    `debug: "underflow_overflow"` detector, whose hooks stopped the first step with NotImplementedError ("abs_cpu" not
    implemented for 'Bool') on an encoder that attends with sdpa, transformers' default."""
    return "eager" if DebugOption.UNDERFLOW_OVERFLOW in training_args.debug else None


def check_trainable(model: SimCSEModel, tokenizer: PreTrainedTokenizerBase, simcse_args: SimCSEArguments,
                    max_seq_length: int, train_set: Dataset) -> None:
    """Stop (SystemExit) before training on what the built model cannot do: packing asked of an encoder without it,
    compiled layers of an encoder with no repeated ones, an export that cannot give the trained embedding, a
    max_seq_length or tokenizer that does not fit the encoder or the training sentences."""
    if simcse_args.pack_sequences and not model.supports_packing:
        raise SystemExit(
            f"error: pack_sequences: not available for a {model.config.encoder.model_type} encoder with "
            f"{model.encoder.config._attn_implementation!r} attention (supported: {', '.join(PACKABLE_MODEL_TYPES)} "
            f"with {' or '.join(PACKABLE_ATTENTION)}); set it to false")
    if (simcse_args.compile_layers or simcse_args.cuda_graphs) and not model.repeated_layers():
        raise SystemExit(f"error: {'cuda_graphs' if simcse_args.cuda_graphs else 'compile_layers'}: the "
                         f"{model.config.encoder.model_type} encoder has no list of repeated layers to compile (one "
                         "layer, say); set it to false")
    try:
        model.check_exportable()
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    check_inputs(model, tokenizer, max_seq_length,
                 {"the training sentences": sample_sentences(train_set, train_set.column_names)}, "max_seq_length")


def cuda_graphs_by_default(training_args: TrainingArguments, simcse_args: SimCSEArguments, packed: bool) -> bool:
    """What an unset `cuda_graphs` means: on where it was measured to pay and tested to give the eager loss and
    gradients (an H100, bench/RESULTS.md): training in one process on a CUDA device with Triton (and what it builds
    its modules with: `triton_build_problem`, else off with a warning), packed batches, bf16 or fp32, no other
    compilation (torch_compile, compile_layers), and none of `cuda_graphs_conflicts`, which are logged where they alone
    keep it off (a setting for memory, say, that also costs the graphs' speed). Off under the `debug` underflow_overflow
    detector too, whose hooks read every module's outputs as they are made."""
    from torch.utils._triton import has_triton

    conflicts = cuda_graphs_conflicts(training_args, simcse_args)
    possible = (training_args.world_size == 1 and packed and not training_args.fp16 and not training_args.torch_compile
                and not simcse_args.compile_layers and DebugOption.UNDERFLOW_OVERFLOW not in training_args.debug
                and has_triton())
    if possible and training_args.device.type == "cuda" and conflicts:
        logger.info("cuda_graphs left off (steps of about 26 ms against 50 ms eager on an H100, bench/RESULTS.md): %s",
                    "; ".join(conflicts))
    if possible and not conflicts and (problem := triton_build_problem()):
        logger.warning("cuda_graphs left off: Triton, which compiles them, cannot build its modules here (%s); with "
                       "them, steps of about 26 ms against 50 ms eager on an H100 (bench/RESULTS.md). \"cuda_graphs\": "
                       "true asks for them anyway (where Triton's cache holds its modules already)", problem)
        return False
    return possible and not conflicts


def triton_build_problem() -> str | None:
    """Why Triton could not build the C modules it compiles and loads at its first kernel (a missing C compiler, or
    Python's headers), as `triton.runtime.build._build` looks for them; None where it can. A machine without them
    (a slim container) stopped at the first step of a run that compiled."""
    if not (os.environ.get("CC") or shutil.which("gcc") or shutil.which("clang")):
        return "no C compiler: CC is not set and neither gcc nor clang is on the PATH"
    scheme = sysconfig.get_default_scheme()
    include = sysconfig.get_paths(scheme="posix_prefix" if scheme == "posix_local" else scheme)["include"]
    if not os.path.isfile(os.path.join(include, "Python.h")):
        return f"no Python.h in {include}: Python's development headers (e.g. python3-dev) are not installed"
    return None


def usable_cpu_count() -> int:
    """CPUs this process may use (`joblib.cpu_count`): the fewest of the machine's count, its CPU affinity (a batch
    scheduler or taskset), its container's CPU quota (cgroup `cpu.max`, as Docker and Kubernetes limits set it) and
    the environment variable LOKY_MAX_CPU_COUNT. A quota counts because more busy processes than it allows are
    throttled, not sped up."""
    return joblib.cpu_count()


def tokenization_processes(train_rows: int, workers: int | None) -> int | None:
    """Processes that tokenize the training set: `preprocessing_num_workers` if set; else one (None) below
    TOKENIZE_IN_PARALLEL_FROM rows, and from there one a usable CPU, at most 8."""
    if workers is not None or train_rows < TOKENIZE_IN_PARALLEL_FROM:
        return workers
    return min(8, usable_cpu_count())


def worker_processes(training_args: TrainingArguments, train_rows: int,
                     workers: int | None) -> tuple[int | None, int | None]:
    """The processes that tokenize the training set (`tokenization_processes`) and the STS sets (`workers`,
    preprocessing_num_workers). A worker process talks through a Unix socket in a folder its library makes in the
    temporary folder (TMPDIR); where that folder's path is too long for a socket in it, the run does without those
    workers, with a warning (tokenization's: (None, None); DataLoader workers: training_args changed). datasets' pool
    failed there ("AF_UNIX path too long"), and the first step waited for ever for the batches of DataLoader workers
    that could not send them. Each library is asked for its own folder: CPython's multiprocessing (torch's) takes /tmp
    where TMPDIR is too long since gh-132124, and multiprocess (datasets') may not."""
    def too_long(folder: str) -> bool:  # made by get_temp_dir as the workers would make it, removed at the exit
        return len(os.fsencode(os.path.join(folder, SOCKET))) >= UNIX_SOCKET_PATH_BYTES

    train_workers = tokenization_processes(train_rows, workers)
    pool = max(train_workers or 1, workers or 1) > 1 and too_long(multiprocess.util.get_temp_dir())
    loader = training_args.dataloader_num_workers > 0 and too_long(multiprocessing.util.get_temp_dir())
    if not (pool or loader):
        return train_workers, workers
    temporary = tempfile.gettempdir()
    most = UNIX_SOCKET_PATH_BYTES - 1 - len(os.fsencode(os.path.join(os.sep, PROCESS_FOLDER, SOCKET)))
    logger.warning("the temporary folder %s has too long a path (%d bytes) for the sockets of worker processes (at "
                   "most %d): %s in this process. Set TMPDIR to a shorter one (/tmp) to use worker processes",
                   temporary, len(os.fsencode(temporary)), most,
                   " and ".join(what for what, alone in (("tokenizing", pool), ("loading batches", loader)) if alone))
    if loader:
        training_args.dataloader_num_workers = 0
        training_args.dataloader_persistent_workers = False  # these three refused by DataLoader without workers
        training_args.dataloader_prefetch_factor = None
        training_args.dataloader_multiprocessing_context = None
    return (None, None) if pool else (train_workers, workers)


def compile_for_training(model: SimCSEModel, simcse_args: SimCSEArguments) -> None:
    """Compile the encoder layers in place as `compile_layers` / `cuda_graphs` (resolved to a bool) ask."""
    if not (simcse_args.compile_layers or simcse_args.cuda_graphs):
        return
    if simcse_args.cuda_graphs and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        logger.warning("cuda_graphs with several processes (DDP) has not been tried; if a step fails, drop it")
    compiled = model.compile_layers(cuda_graphs=simcse_args.cuda_graphs)
    logger.info("%d encoder layers compile at their first call (the first steps wait for the compiler)%s",
                compiled, ", as CUDA graphs (\"cuda_graphs\": false turns them off)" if simcse_args.cuda_graphs else "")


def describe_hardware(training_args: TrainingArguments) -> str:
    """What the run trains on, for the model card: '8 x NVIDIA H100 80GB HBM3' or 'CPU (x86_64, 2 cores)'."""
    if training_args.device.type == "cuda":  # not a visible GPU: `use_cpu` trains on the CPU beside one
        return f"{training_args.world_size} x {torch.cuda.get_device_name(training_args.device)}"
    usable, cores = usable_cpu_count(), os.cpu_count()  # a quota or an affinity may leave the run fewer
    return f"CPU ({platform.processor() or platform.machine()}, " + (
        f"{cores} cores)" if usable == cores else f"{usable} of the machine's {cores} cores)")


def library_versions() -> dict[str, str]:
    """The versions of the libraries that train (for the model card)."""
    return {"torch": torch.__version__, "transformers": transformers.__version__}


def describe_environment(training_args: TrainingArguments, train_rows: int) -> dict:
    """Hardware, usable CPUs, process count, library versions and date of the run (for the model card)."""
    return {
        "hardware": describe_hardware(training_args),
        "usable_cpus": usable_cpu_count(),
        "processes": training_args.world_size,
        "dropout_seed_per_process": training_args.world_size > 1,  # DropoutSeedPerProcess
        "train_rows": train_rows,
        "date": datetime.date.today().isoformat(),
        "versions": library_versions(),
    }


def export(model: SimCSEModel, tokenizer: PreTrainedTokenizerBase, output_dir: str, max_seq_length: int) -> None:
    """Export into a scratch folder first, then move the files in, so a failed export leaves nothing half-written.

    The files a previous export left in the folder (an overwritten run's) go first: a push would publish any of them
    (a `2_Dense/` this model has not, that run's results and card) beside these weights. config.json goes first and
    comes last: a folder whose files a Ctrl-C stopped in between has none, so no client loads it and `hub` refuses it.
    """
    scratch = os.path.join(output_dir, ".export-in-progress")
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        model.export_encoder(scratch, tokenizer, max_seq_length)
        for name in sorted({path.split("/")[0] for path in published_files(output_dir)}, key="config.json".__ne__):
            target = os.path.join(output_dir, name)
            if os.path.isdir(target):
                shutil.rmtree(target)
            else:
                os.remove(target)
        for name in sorted(os.listdir(scratch), key="config.json".__eq__):
            target = os.path.join(output_dir, name)
            if os.path.isdir(target):
                shutil.rmtree(target)
            os.replace(os.path.join(scratch, name), target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def push_export(output_dir: str, repo_id: str, training_args: TrainingArguments, token: str | None) -> None:
    """Push the exported run in `output_dir` to `repo_id` as the training JSON's hub_private_repo and hub_revision ask,
    with its card naming the branch where the push goes to one. A failed push ends the run with an error that names
    the `python -m hub push` command that retries it."""
    # hub_private_repo false asks for a public repo; unset, the owner's settings decide, as in Trainer's own pushes.
    private, revision = training_args.hub_private_repo, training_args.hub_revision
    visibility = {True: " --private", False: " --no-private", None: ""}[private]
    options = visibility + (f" --revision {revision}" if revision else "")
    again = f"`python -m hub push {output_dir} --repo-id {repo_id}{options}`"
    pushed = None
    try:
        # Python's default SIGTERM would end the process in the upload, after the repo was created; its Ctrl-C, as
        # both raise, could leave a lock of the upload's threads taken (raise_between_locks)
        with SigtermRaises(), CtrlC():
            pushed = push(output_dir, repo_id, private=private, revision=revision, api=HfApi(token=token),
                          card=str(render_card(output_dir, repo_id=repo_id, write=False, revision=revision)))
    except PushError as e:
        raise SystemExit(f"error: {e}. The model is exported in {output_dir}; push it again with {again}") from None
    except (KeyboardInterrupt, Terminated) as e:  # push() has left the Hub as it was, or says what it made there
        signal_name, code = stopped_by(e)
        said, push_again = stopped_push(output_dir, repo_id, revision, e, pushed)
        print(f"\n{signal_name}{said}" + (f". The model is exported in {output_dir}; push it with {again}"
                                          if push_again else ""), file=sys.stderr)
        raise SystemExit(code) from None
    print(describe_push(output_dir, repo_id, revision, pushed))


class PhaseTimer:
    """Wall-clock seconds per phase of the run: `with timer("train"): ...`; `timer.seconds` is the record."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = round(self.seconds.get(phase, 0.0) + time.perf_counter() - start, 3)


def write_outputs(model: SimCSEModel, tokenizer: PreTrainedTokenizerBase, output_dir: str, max_seq_length: int,
                  results: dict[str, dict[str, float]], environment: dict, timer: PhaseTimer,
                  repo_id: str | None) -> None:
    """Export the final model into output_dir, then write its test scores (sts_results.json; printed as the table),
    `environment` with the phase times (environment.json) and the model card (for `repo_id` where it is pushed).
    Without results: no scores and no card, and a warning that says how to make them. Raises SystemExit, after the
    export, where the scores are undefined."""
    with timer("export"):
        export(model, tokenizer, output_dir, max_seq_length)
        # No NaN in the results, card or model index: the Hub and the hub command refuse them.
        if undefined := undefined_metrics(results):
            raise SystemExit(f"error: the final model's similarities are not finite or all the same, so these scores "
                             f"are undefined ({undefined}): its embeddings have diverged or collapsed. It is exported "
                             f"in {output_dir} to look into, without sts_results.json, card or push")
        if results:
            write_json(os.path.join(output_dir, RESULTS_FILE), results, indent=2)
    write_json(os.path.join(output_dir, "environment.json"), {**environment, "phase_seconds": timer.seconds}, indent=2)
    if results:
        print(format_table(results))
        render_card(output_dir, repo_id=repo_id)
        print(f"exported to {output_dir}: the model (AutoModel.from_pretrained, SentenceTransformer), its scores "
              f"({RESULTS_FILE}) and its card (README.md)")
    else:
        logger.warning("no test_data: no %s and no model card. Score the export with `python sts_evaluation.py %s "
                       "--output %s`, then render the card with `python -m hub card %s`", RESULTS_FILE, output_dir,
                       os.path.join(output_dir, RESULTS_FILE), output_dir)


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """Trainer's length-grouped order (`group_by_length`), drawn from `seed` + the epoch, as accelerate's seedable
    sampler draws the random order, rather than from torch's random state: a run resumed within an epoch draws the
    epoch's order before Trainer restores that state from the checkpoint, so it trained on other batches than the run
    it continued. lengths: each row's token count; batch_size: the rows of a step, of every process; epoch: the epoch
    an iteration begins (the trainer's state, which a resumed run has read from its checkpoint by then; the epoch that
    Trainer sets on the loader does not reach a sampler under the loader that skips the trained batches)."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int, epoch: Callable[[], int]):
        super().__init__(batch_size, lengths=lengths)
        self.seed, self.epoch = seed, epoch

    def __iter__(self) -> Iterator[int]:
        self.generator = torch.Generator().manual_seed(self.seed + self.epoch())
        return super().__iter__()


class SimCSETrainer(Trainer):
    """`Trainer` whose evaluations leave torch's CPU random state as they found it, so that how often the dev set is
    scored (`eval_steps`, `eval_on_start`) does not change what is trained: every DataLoader iteration draws a seed
    from that generator, so each evaluation moved every later dropout mask of a run on a CPU. CUDA's generator is left
    alone: evaluation draws nothing from it (no dropout in eval mode). Its DataLoader workers leave a scheduler's
    SIGTERM to the run (`sigterm.WorkerLeavesSigterm`), which stops them as it stops. The last batch of an epoch tells
    the model how many of its rows are real (`real_rows`), so that the repeats accelerate completes it with on several
    processes are neither negatives nor queries, and length grouping groups the rows of every process's batch: N
    processes x batch b train as one process x batch N*b does, whatever the number of rows."""

    def _get_train_sampler(self, train_dataset: Dataset | None = None) -> torch.utils.data.Sampler | None:
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler):
            # Trainer sizes the groups by one process's batch; accelerate deals consecutive batches of the order to the
            # processes, so grouped by the batch of them all, every step holds the rows one process would.
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return EpochSeededLengthGroupedSampler(sampler.lengths, sampler.batch_size * self.args.world_size, seed,
                                                   epoch=lambda: int(self.state.epoch or 0))
        return sampler

    def get_batch_samples(self, epoch_iterator: Iterator[dict], num_batches: int, device: torch.device
                          ) -> tuple[list[dict], torch.Tensor | int | None]:
        return super().get_batch_samples(map(self._with_real_rows, epoch_iterator), num_batches, device)

    def _with_real_rows(self, batch: dict) -> dict:
        """A training batch -> itself, with `real_rows` (the rows of the epoch's last global batch) where it is that
        batch and holds fewer rows than a full one, which accelerate completes with repeats on several processes;
        read as the batch is taken (the loader looks one batch ahead, so it knows which is last)."""
        state = self.accelerator.gradient_state
        # One process has no repeats, and its forward keeps one signature for torch_compile.
        if self.args.world_size > 1 and state.end_of_dataloader and state.remainder > 0:
            return {**batch, "real_rows": state.remainder}
        return batch

    def evaluate(self, *args, **kwargs) -> dict[str, float]:
        with torch.random.fork_rng(devices=[]):
            return super().evaluate(*args, **kwargs)

    def get_train_dataloader(self) -> DataLoader:
        return workers_leave_sigterm(super().get_train_dataloader())

    def get_eval_dataloader(self, eval_dataset: str | Dataset | None = None) -> DataLoader:
        return workers_leave_sigterm(super().get_eval_dataloader(eval_dataset))


class DropoutSeedPerProcess(TrainerCallback):
    """Each process of a run in several draws its dropout masks from a seed of its own (`seed` + its index), as one
    process draws independent masks for every row of the big batch: `set_seed` seeds every process alike, so processes
    whose batches had one shape (sentences cut at max_seq_length) dropped the same units of different sentences, and
    unsupervised SimCSE learns from that noise. Seeded as training begins: after accelerate's sampler has read the
    shared seed that orders the data, and before a resumed run restores each process's own random state from its
    checkpoint. One process keeps the state `set_seed` gave it."""

    def on_train_begin(self, args: TrainingArguments, state, control, **kwargs):
        if args.world_size > 1:
            torch.manual_seed(args.seed + args.process_index)


class CheckpointSaveTimer(TrainerCallback):
    """Seconds Trainer spends writing checkpoints: from the step's last event before a save (step end, log or
    evaluation) to `on_save`."""

    def __init__(self):
        self.seconds, self._mark = 0.0, time.perf_counter()

    def _stamp(self, *args, **kwargs):
        self._mark = time.perf_counter()

    on_step_end = on_log = on_evaluate = _stamp

    def on_save(self, *args, **kwargs):
        self.seconds += time.perf_counter() - self._mark


class TrainingClock(TrainerCallback):
    """Training wall time and hardware over every session of a run. Trainer's `train_runtime` counts only its own
    session, so a resumed run's card gave the time since the resumption as the training time (and the last machine's
    hardware as the run's). Each checkpoint records the seconds trained up to it and the sessions that trained them
    (`CLOCK_FILE`), and a run resumed from it starts from there.

    resumed_from: the checkpoint the run resumes from, or None; hardware and versions: this session's
    (describe_hardware, library_versions). `seconds_before` is None where that checkpoint has no record (written before
    this existed); `resumed_at_step` is its step; `sessions`: [{"from_step", "hardware", "versions"}], the earlier
    sessions as recorded, then this one.
    """

    def __init__(self, resumed_from: str | None, hardware: str, versions: dict[str, str]):
        self.seconds_before, self.resumed_at_step, earlier = (None if resumed_from else 0.0), None, []
        if resumed_from:
            self.resumed_at_step = checkpoint_step(resumed_from)
            with contextlib.suppress(OSError, ValueError, KeyError):
                with open(os.path.join(resumed_from, CLOCK_FILE)) as f:
                    record = json.load(f)
                self.seconds_before = float(record["seconds"])
                earlier = list(record["sessions"])
        self.sessions = [*earlier, {"from_step": self.resumed_at_step or 0, "hardware": hardware, "versions": versions}]
        self._start = time.perf_counter()

    def on_train_begin(self, *args, **kwargs):
        self._start = time.perf_counter()

    def on_save(self, args: TrainingArguments, state, control, **kwargs):
        checkpoint = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if args.should_save and self.seconds_before is not None and os.path.isdir(checkpoint):
            write_json(os.path.join(checkpoint, CLOCK_FILE),
                       {"seconds": round(self.seconds_before + time.perf_counter() - self._start, 3),
                        "sessions": self.sessions})

    def record(self, session_seconds: float) -> dict:
        """-> the run's training seconds over all its sessions (None when unknown), where it resumed and the sessions'
        hardware and library versions, for environment.json; `session_seconds` is this session's `train_runtime`."""
        total = None if self.seconds_before is None else round(self.seconds_before + session_seconds, 3)
        return {"training_seconds": total, "resumed_at_step": self.resumed_at_step, "sessions": self.sessions}


@contextlib.contextmanager
def stopping_cleanly(trainer: Trainer, trained: bool, embedding_chunk_size: int | None = None,
                     termination: Termination | None = None) -> Iterator[None]:
    """`with stopping_cleanly(trainer, trained):` around training (`trained` False) or what follows it (`trained`: the
    final evaluation, export, results and card). A run that cannot go on (a loss that is not finite, a GPU out of
    memory, a full disk, Ctrl-C) ends with SystemExit and a message that says what was kept and what to do, in place
    of a traceback from within a step or the evaluation; other errors are raised as they are. SIGTERM too: in training
    through `termination` (one of Trainer's callbacks), which stops it after the step under way with a checkpoint;
    after it, where Python's default would end the process without a word, as Ctrl-C."""
    args = trainer.args

    def where() -> str:  # trainer.state read then: train() makes a new one
        return interruption_note(args.output_dir, trainer.state.global_step, trainer.state.max_steps, trained)

    def stopped(code: int, cause: str = "") -> SystemExit:
        """The exit of a run stopped by a signal, once the first process has said where it stands."""
        if trainer.is_world_process_zero():
            print(f"\n{cause}{where()}", file=sys.stderr)
        return SystemExit(code)

    # A checkpoint holds the weights and AdamW's two moments of each parameter; the export, the weights.
    weight_bytes = sum(p.numel() * p.element_size() for p in trainer.model.parameters())
    needed = ((weight_bytes, "the export (its weights)") if trained
              else (3 * weight_bytes, "a checkpoint (the weights and the optimizer's state)"))
    sigterm = termination or SigtermRaises()
    with CtrlC() as ctrl_c, sigterm:
        try:
            try:
                yield
            except BaseException:
                close_progress_bars(trainer)
                raise
            if termination and termination.stopped:
                raise stopped(SIGTERM_EXIT, "SIGTERM: ")
        except Terminated:
            raise stopped(SIGTERM_EXIT, "SIGTERM: ") from None
        except TrainingDiverged as e:  # from every process alike (the logged loss is gathered): the first says it
            raise SystemExit(f"error: {e}" if trainer.is_world_process_zero() else 1) from None
        except torch.OutOfMemoryError as e:  # before RuntimeError, which it is
            raise SystemExit(f"error: {out_of_memory_advice(trainer, trained, embedding_chunk_size, where)} "
                             f"torch: {e}") from None
        except (KeyboardInterrupt, OSError, RuntimeError) as e:
            if isinstance(e, KeyboardInterrupt) or ctrl_c.pressed:  # Ctrl-C may stop a DataLoader worker too (CtrlC)
                raise stopped(CTRL_C_EXIT_CODE) from None
            if sigterm.received:  # SIGTERM ended a DataLoader worker it could not guard (sigterm.WorkerLeavesSigterm)
                raise stopped(SIGTERM_EXIT, "SIGTERM: ") from None
            if (full := full_disk(args.output_dir, e, *needed)) is not None:
                raise SystemExit(f"error: {full}; free some, then resume: {where()}") from None
            if isinstance(e, BackendCompilerFailed):
                raise SystemExit(f"error: {compile_failure_advice(trainer)}; {where()}. torch: {e}") from None
            raise


def close_progress_bars(trainer: Trainer) -> None:
    """Close Trainer's progress bars (training, evaluation) that an error stopped, so that what the run says next
    starts on a line of its own. Left open, a bar was closed when it was freed: under Python 3.11 as the run's
    exception was let go, under 3.13 after the run's error had been printed on the bar's line ("0/12 [00:00<?,
    ?it/s]error: ..."), the bar drawn again below it."""
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, ProgressCallback):
            for bar in (callback.training_bar, callback.prediction_bar):
                if bar is not None:
                    bar.close()
            callback.training_bar = callback.prediction_bar = None


def compile_failure_advice(trainer: Trainer) -> str:
    """What `stopping_cleanly` says where torch could not compile the model (a C or C++ compiler, or Python's headers,
    missing for Inductor or Triton): which setting compiled it, and the flag that trains without compiling, the same
    math in slower steps. `cuda_graphs` is on by default on one GPU, so a machine without a working compiler stopped
    at its first step on a setting the run's configs do not name."""
    model = trainer.model
    if trainer.args.torch_compile:
        asked = "torch_compile, or a launcher's --dynamo_backend"
        flag = "--torch_compile false (and no --dynamo_backend)"
    elif getattr(model, "_cuda_graphs", False):
        asked, flag = "cuda_graphs, on by default for training on one GPU", "--cuda_graphs false"
    else:
        asked, flag = "compile_layers", "--compile_layers false"
    return (f"torch could not compile the encoder ({asked}): add {flag} to train without compiling (the same "
            "loss, in slower steps), or mend the cause torch gives")


def out_of_memory_advice(trainer: Trainer, trained: bool, embedding_chunk_size: int | None,
                         where: Callable[[], str]) -> str:
    """What `stopping_cleanly` says of a GPU out of memory: in training, the step, the settings that fit a large batch
    and how to resume with them; after it (the final evaluation, in fp32 whatever the training's precision), how to
    evaluate and export the trained run with a smaller evaluation batch (`where`: the interruption note)."""
    args, state = trainer.args, trainer.state
    if trained:
        batch = args.per_device_eval_batch_size
        return (f"out of memory after training, in the final evaluation ({batch} pairs a batch on each device): "
                f"{where()}, with a smaller per_device_eval_batch_size (add --per_device_eval_batch_size "
                f"{max(1, batch // 2)}).")
    return (f"out of memory at step {state.global_step + 1} of {state.max_steps} ({args.per_device_train_batch_size} "
            "training rows a step on each device): set "
            + (f"a smaller embedding_chunk_size than {embedding_chunk_size}" if embedding_chunk_size
               else "embedding_chunk_size, e.g. 128,")
            + " to encode a step's sentences in chunks, with the same loss and gradients in a fraction of the memory "
            "(README: Big batches in fixed memory); a smaller per_device_train_batch_size fits too, with fewer "
            "negatives for each sentence (another run); where a dev evaluation ran out, a smaller "
            "per_device_eval_batch_size. With embedding_chunk_size or the evaluation batch changed, the run goes on: "
            f"{where()}.")


def configure_logging() -> None:
    """Log records as "time LEVEL logger: message" on stderr, each once: datasets and huggingface_hub print through a
    handler of their own and pass their records on to the root logger's as well (a Hub retry, an offline run's cached
    dataset were said twice), so their own handlers go; transformers keeps its own, which passes nothing on.
    transformers and sentence-transformers say their warnings only, and so does huggingface_hub's HTTP client (httpx2),
    which logs each request at INFO: a line for each file a load looks for, a "404 Not Found" for each it lacks."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    for library in ("datasets", "huggingface_hub"):
        library_logger = logging.getLogger(library)
        for handler in [h for h in library_logger.handlers if type(h) is logging.StreamHandler]:
            library_logger.removeHandler(handler)
    transformers.utils.logging.set_verbosity_warning()
    logging.getLogger("transformers.trainer_utils").addFilter(not_of_checkpoint_mtimes)
    # Its one record here, "Saving model to <output_dir>/.export-in-progress", names a scratch folder that goes.
    logging.getLogger("sentence_transformers").setLevel(logging.WARNING)
    logging.getLogger("httpx2").setLevel(logging.WARNING)


def not_of_checkpoint_mtimes(record: logging.LogRecord) -> bool:
    """A filter: transformers' "mtime may not be reliable on this filesystem" goes. Trainer orders checkpoints by their
    times to rotate them and says so where two were saved within a second (every short run, the smoke run too); its
    fallback, step order, is this job's checkpoints' order on any filesystem."""
    return not record.getMessage().startswith("mtime may not be reliable")


def project_errors_only(record: logging.LogRecord) -> bool:
    """A handler's filter for the processes that do not log the run: this project's warnings are of the run as a whole,
    the same in every process (its data and arguments are, `check_same_run`), so the first process gives them; its
    errors, and the libraries' records, pass."""
    return record.levelno >= logging.ERROR or os.path.dirname(os.path.abspath(record.pathname)) not in PROJECT_FOLDERS


def leave_warnings_to_the_logging_process(replica: bool) -> None:
    """On a process that does not log the run (`replica`), filter this project's warnings out of the root logger's
    handlers (`project_errors_only`); elsewhere, let them through."""
    for handler in logging.getLogger().handlers:
        (handler.addFilter if replica else handler.removeFilter)(project_errors_only)


def main(argv: list[str] | None = None, callbacks: list | None = None) -> dict[str, dict[str, float]]:
    """Run the job described by argv (a JSON file or flags); returns the final STS results.

    callbacks: extra `TrainerCallback`s (benchmarks use this to time steps).
    """
    began = TrainingBegan()
    try:
        # SIGTERM before training (loading, tokenizing) raises, as Ctrl-C, and ends the workers of datasets' process
        # pool, which the pool then ends: Python's default ended this process alone, and left its workers waiting for
        # work, for ever. Training takes the signal over (`Termination`), and the work after it (`SigtermRaises`).
        with SigtermRaises(forked_processes_end=True):
            return run_job(argv, [began, *(callbacks or [])])
    # Ctrl-C and SIGTERM in training and after it are told by stopping_cleanly, in a push by push_export
    except BaseException as e:
        stopped = None if isinstance(e, SystemExit) else (raised_within(e, Terminated)
                                                          or raised_within(e, KeyboardInterrupt))
        if stopped is None or (began.began and isinstance(stopped, KeyboardInterrupt)):
            raise
        signal_name, code = stopped_by(stopped)
        if int(os.environ.get("RANK", "0")) == 0:  # a launcher's rank
            when = ("after training" if began.began  # in a moment between those stages
                    else "before training began, so this launch trained nothing; launch it again")
            print(f"\n{signal_name}stopped {when}", file=sys.stderr)
        raise SystemExit(code) from None
    finally:
        release_output_dirs()  # for a caller that launches into the folder again, in this process or another


def run_job(argv: list[str] | None, callbacks: list | None) -> dict[str, dict[str, float]]:
    """`main`, but for the release of the output folder's lock."""
    configure_logging()
    # Until the arguments say which process logs the run: Trainer's default, the first process of each machine.
    leave_warnings_to_the_logging_process(int(os.environ.get("LOCAL_RANK", "0")) > 0)
    with stopping_together():  # its checks include the machine's own: the encoder folder, output_dir, the Hub token
        model_args, data_args, simcse_args, training_args = parse_arguments(sys.argv[1:] if argv is None else argv)
    # One process tells the run; the others what log_level_replica lets through (as Trainer has it: default warning).
    if not training_args.should_log or training_args.log_level != "passive":
        logging.getLogger().setLevel(training_args.get_process_log_level())
    leave_warnings_to_the_logging_process(not training_args.should_log
                                          and training_args.get_process_log_level() >= logging.WARNING)
    timer = PhaseTimer()

    # Every input is read and validated before anything is written or trained. A stage that may fail in one process
    # only (a file or folder missing on its machine) ends with the processes agreeing to go on (stopping_together).
    with stopping_together(), timer("load_data"):
        train_set, dev_set, test_sets, run_args, overwriting, train_columns = load_inputs(
            model_args, data_args, simcse_args, training_args)
    check_same_run(run_args)
    logger.info("training rows: %d (%s), dev pairs: %s, test sets: %s", len(train_set),
                ", ".join(train_set.column_names), len(dev_set) if dev_set else 0,
                {k: len(v) for k, v in test_sets.items()})
    pairs_in_dev = pairs_shared_with_dev(dev_set, test_sets, data_args.dev_data, training_args.load_best_model_at_end)
    set_seed(training_args.seed)

    with stopping_together():
        with timer("load_model"), model_loading_errors(model_args):
            tokenizer = load_tokenizer(model_args, train_set, data_args.max_seq_length)
            model = build_model(model_args, simcse_args, tokenizer, training_args.device.type,
                                run_attention(training_args))
        check_trainable(model, tokenizer, simcse_args, data_args.max_seq_length, train_set)
    # One process deletes what is to go (old or half-written checkpoints) before the others look: two deleting one
    # folder at once fail on files already gone. Per node where each node saves to its own disk (save_on_each_node).
    # (Apart from the stage above: main_process_first's barrier is a collective operation.)
    with stopping_together(), training_args.main_process_first(local=training_args.save_on_each_node,
                                                                 desc="output folder check"):
        if overwriting and training_args.should_save:
            remove_checkpoints(training_args.output_dir)
        # Overwriting another run: nothing of it to resume ("last"; a path into the folder was refused above).
        resume = training_args.resume_from_checkpoint
        resume = resolve_resume(training_args.output_dir,
                                None if overwriting and resumes_in(training_args.output_dir, resume) else resume)
    check_same_resumption(resume)
    with stopping_together():  # each machine reads its own copy of the checkpoint
        if resume and (problem := checkpoint_problem(resume, model) or training_args.load_best_model_at_end and
                       best_checkpoint_problem(resume, training_args.output_dir)):
            raise SystemExit(f"error: resume_from_checkpoint {problem}")
    packed = model.supports_packing if simcse_args.pack_sequences is None else simcse_args.pack_sequences
    logger.info("training batches: %s", "packed (no padding)" if packed else "padded")
    if launched_alone(training_args.world_size):
        logger.warning("accelerate was asked for several processes and started this one alone (on a CPU, or with one "
                       "GPU, `--num_processes` does not start processes by itself); the run trains in one process. For "
                       "N processes: `accelerate launch --multi_gpu --num_processes N` (gloo on a CPU) or `torchrun "
                       "--nproc_per_node N run_simcse.py CONFIG`")
    per_device, processes = training_args.per_device_train_batch_size, training_args.world_size
    logger.log(logging.WARNING if len(train_set) < per_device * processes else logging.INFO,
               "contrastive batch (rows that are negatives for each other): %s",
               contrastive_batch(per_device, processes, simcse_args.gather_negatives, len(train_set)))
    if simcse_args.cuda_graphs is None:
        simcse_args.cuda_graphs = bool(model.repeated_layers()) and cuda_graphs_by_default(training_args, simcse_args,
                                                                                            packed)
    compile_for_training(model, simcse_args)

    max_len = data_args.max_seq_length
    train_workers, workers = worker_processes(training_args, len(train_set), data_args.preprocessing_num_workers)
    # Length grouping (opt-in) needs each row's token count: a row's own length is its number of sentences.
    lengths = training_args.length_column_name if training_args.train_sampling_strategy == "group_by_length" else None
    with timer("tokenize"), training_args.main_process_first(desc="tokenization"):
        train_rows = tokenize_rows(train_set, tokenizer, train_set.column_names, max_len, num_proc=train_workers,
                                   length_column=lengths)
        dev_rows = tokenize_sts(dev_set, tokenizer, max_len, workers, "dev", lengths) if dev_set else None
        test_rows = {name: tokenize_sts(ds, tokenizer, max_len, workers, name, lengths)
                     for name, ds in test_sets.items()}

    # The push is ours, at the end and of the export only: Trainer's own would upload every checkpoint.
    push_requested, hub_model_id = training_args.push_to_hub, training_args.hub_model_id
    training_args.push_to_hub = False
    # Trainer pickles its arguments into every checkpoint (training_args.bin): keep the token out of them.
    hub_token, training_args.hub_token = training_args.hub_token, None
    # A resumed run's score before training is in its checkpoint's log: scored again at the step it resumes from, it
    # would add a dev point (and an evaluation's time) the uninterrupted run has not.
    if resume:
        training_args.eval_on_start = False
    trainer = SimCSETrainer(
        model=model,
        args=training_args,
        train_dataset=train_rows,
        eval_dataset=dev_rows,
        processing_class=tokenizer,
        data_collator=SimCSECollator(tokenizer.pad_token_id, max_len, pack_width=max_len if packed else None,
                                     **(CUDA_GRAPH_SHAPES if simcse_args.cuda_graphs else {})),
        compute_metrics=compute_metrics,
        # Termination first: the guard then logs (and checks) the loss of the step it saves.
        callbacks=[termination := Termination(), NonFiniteLossGuard(), save_timer := CheckpointSaveTimer(),
                   ResumedBestCheckpoint(resume), keeper := LastCheckpointKeeper(), DropoutSeedPerProcess(),
                   clock := TrainingClock(resume, describe_hardware(training_args), library_versions()),
                   *(callbacks or [])],
    )
    os.makedirs(training_args.output_dir, exist_ok=True)
    # After Trainer checked its arguments: a run that cannot start leaves no run_args.json.
    with stopping_together():
        if training_args.should_save:
            # A folder made just now: two launches may have started together.
            hold_output_dir(training_args.output_dir, training_args.save_on_each_node)
            write_json(os.path.join(training_args.output_dir, RUN_ARGS_FILE), run_args, indent=2, ensure_ascii=False)
    with timer("train"), stopping_cleanly(trainer, False, simcse_args.embedding_chunk_size, termination):
        train_result = trainer.train(resume_from_checkpoint=resume)
    # Stopped from here on (Ctrl-C, a full disk), the run is resumed from its last checkpoint without training again.
    with stopping_cleanly(trainer, trained=True):
        dev_key = f"eval_{dev_metric(run_args)}"
        if training_args.load_best_model_at_end and not any(dev_key in e for e in trainer.state.log_history):
            logger.warning("the dev set was never scored in the run's %d steps (eval_strategy %s, eval_steps %s, "
                           "eval_delay %s): the final model is the one exported and evaluated",
                           trainer.state.global_step, training_args.eval_strategy.value, training_args.eval_steps,
                           training_args.eval_delay)
        timer.seconds["dev_evaluations_within_train"] = round(
            sum(e.get("eval_runtime", 0.0) for e in trainer.state.log_history), 3)
        timer.seconds["checkpoint_saves_within_train"] = round(save_timer.seconds, 3)
        if trainer.state.global_step == clock.resumed_at_step:  # resumed at its end: Trainer's 0.0 is no loss
            train_result.metrics["train_loss"] = None
        trainer.log_metrics("train", {k: v for k, v in train_result.metrics.items() if v is not None})
        trainer.save_metrics("train", train_result.metrics, combined=False)  # no all_results.json: the same again
        trainer.save_state()

        # The test scores are the export's as users load it, in fp32: mixed precision leaves its autocast on the
        # model's forward, under which a bf16 smoke run on a CPU scored AVG 35.32 and its export 40.79 (the dev scores
        # that chose the checkpoint stay in the training's precision).
        trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
        with timer("final_evaluation"):
            results = evaluate_sets(trainer, test_rows)
        if trainer.is_world_process_zero():
            environment = {**describe_environment(training_args, len(train_rows)),
                           **clock.record(train_result.metrics["train_runtime"]),
                           # Known only here: a folder now may be none where the card is rendered (its base_model,
                           # and a training set saved with save_to_disk, whose relative path reads as a Hub id).
                           "hub_base_model": base
                           if (base := model_args.model_name_or_path) and not os.path.isdir(base) else None,
                           "hub_datasets": hub_datasets(data_args.train_data),
                           "train_columns": train_columns or None,  # those tried may not be those named
                           "test_pairs_in_dev": pairs_in_dev,
                           "training_batches": "packed" if packed else "padded",
                           "test_scores_precision": "fp32",  # whatever the training's (the autocast taken off above)
                           "cuda_graphs": simcse_args.cuda_graphs,
                           "tokenization_processes": train_workers or 1}
            write_outputs(trainer.model, tokenizer, training_args.output_dir, max_len, results, environment, timer,
                          hub_model_id)
    keeper.release(training_args, trainer.state.best_model_checkpoint)  # exported: the last checkpoint may go
    if results and hub_model_id and push_requested and trainer.is_world_process_zero():
        push_export(training_args.output_dir, hub_model_id, training_args, hub_token)  # says itself how to retry
    return results


def run_script(callbacks: list | None = None) -> None:
    """`python run_simcse.py ...`: `main` on the command line; the process group of a multi-process run is destroyed
    at the end, once nothing of the run holds it, then the process exits as `main` ended (its SystemExit, or 1 after
    an error's traceback).

    A process group left to the interpreter's exit aborted a process of a 2-process CPU run (gloo) in about 1 run of
    15, "terminate called without an active exception", which killed the other one during the export. And it must go
    last: a run that ends by an exception (SIGTERM, Ctrl-C, a full disk, an error) keeps its frames, its DDP model
    among them, in the exception's traceback, and the DDP model freed last, at the exit, destroyed the group with the
    interpreter lock held, waiting for a gloo thread that waited for that lock (both processes hung, 1 in about 45)."""
    code = None
    # This module brings what a DataLoader worker needs (torch, datasets, the collator), imported once.
    own_forkserver(preload=["run_simcse"])
    try:
        main(callbacks=callbacks)
    except SystemExit as stop:
        code = stop.code
    except Exception:
        traceback.print_exc()  # as the interpreter would; the exception, and the run's frames with it, then go
        code = 1
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gc.collect()  # the run's objects that hold each other
            torch.distributed.destroy_process_group()
    if code is not None:
        sys.exit(code)


if __name__ == "__main__":
    run_script()
