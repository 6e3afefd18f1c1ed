"""What an exported model folder must hold (the marks of its config.json, the sentence-transformers files of its
embedding, the metrics of its sts_results.json), and which of its files are published.

The training job and the evaluation take these names from here. It imports neither torch nor `transformers`, so
`python -m hub` starts in a second."""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import json
import os
from collections.abc import Iterator
from typing import Any

from data_sources import is_lfs_pointer

RESULTS_FILE = "sts_results.json"
# The metrics, x100, of each eval set in it: the similarities, in the column order of SimCSEOutput.scores
# (modeling_simcse), each with its Pearson and Spearman correlation to the gold scores, and their average.
SIMILARITIES = ("cosine", "euclidean", "manhattan", "dot")
METRIC_NAMES = ("avg",) + tuple(f"{s}_{c}" for s in SIMILARITIES for c in ("pearson", "spearman"))
RUN_ARGS_FILE = "run_args.json"
# Its lr_scheduler_type values that Trainer steps on the dev score (metric_for_best_model) after each evaluation.
DEV_SCORE_SCHEDULERS = ("reduce_lr_on_plateau", "greedy")
CHECKPOINT_MODEL_TYPE = "simcse"  # SimCSEConfig.model_type: what a training checkpoint's config.json says
LAYER_POOLERS = ("avg_first_last", "avg_top2")  # poolers (and exported embeddings) that average two layers' states
# The sentence-transformers modules, in order, whose pipeline gives each exported embedding (config.json's
# simcse.embedding, modeling_simcse.EMBEDDING_RECIPES); each after the Transformer (the folder itself) has a folder.
SENTENCE_TRANSFORMERS_PIPELINES = {
    "pooler_output": ("Transformer", "Pooling", "Dense"), "cls": ("Transformer", "Pooling"),
    "avg": ("Transformer", "Pooling"),
    **dict.fromkeys(LAYER_POOLERS, ("Transformer", "WeightedLayerPooling", "Pooling")),
}
MODULES_WITH_WEIGHTS = ("Dense", "WeightedLayerPooling")  # their folders hold weights beside their config.json
# A tokenizer's vocabulary: one of these is among an export's tokenizer files (tokenizer.json for a fast tokenizer).
TOKENIZER_VOCABULARIES = ("tokenizer.json", "vocab.txt", "vocab.json", "sentencepiece.bpe.model", "spiece.model",
                          "spm.model")
# Everything a Hub repo gets from an export; checkpoints, optimizer states and training_args.bin never match.
PUBLISHED_PATTERNS = (
    "config.json", "*.safetensors", "model.safetensors.index.json",
    *TOKENIZER_VOCABULARIES, "tokenizer_config.json", "special_tokens_map.json", "merges.txt", "added_tokens.json",
    "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json", "[0-9]_*/*",
    "README.md", "dev_scores.png", RESULTS_FILE,
)


@contextlib.contextmanager
def whole_file(path: str) -> Iterator[str]:
    """A scratch path beside `path` to write its new content to, renamed over `path` once the block ends, and removed
    where the block fails: `path` holds its old content or the new one, never a part (a full disk, Ctrl-C, a kill
    between the two leaves the scratch file at most). An OSError of the scratch file names `path`."""
    scratch = f"{path}.tmp"
    try:
        yield scratch
        os.replace(scratch, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(scratch)
        if isinstance(e, OSError) and e.filename == scratch:
            e.filename = path
        raise


def write_json(path: str, obj: Any, **dump_options) -> None:
    """`obj` as UTF-8 JSON (`json.dump` with `dump_options`) into `path`, whole or not at all (`whole_file`)."""
    with whole_file(path) as scratch, open(scratch, "w", encoding="utf-8") as f:
        json.dump(obj, f, **dump_options)


class ModelDirError(ValueError):
    """The folder is not a complete export; the message names the folder and what is wrong."""


def load_results(model_dir: str) -> dict[str, dict[str, float]]:
    """Read and check `sts_results.json`: {set name: {metric: number} for every metric in `METRIC_NAMES`}."""
    path = os.path.join(model_dir, RESULTS_FILE)
    if not os.path.isfile(path):
        raise ModelDirError(f"{model_dir}: no {RESULTS_FILE} (train with run_simcse.py, or evaluate with "
                            "sts_evaluation.py --output)")
    try:
        with open(path) as f:
            results = json.load(f)
    except json.JSONDecodeError as e:
        raise ModelDirError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(results, dict) or not results:
        raise ModelDirError(f"{path}: expected an object {{eval set: {{metric: value}}}}")
    for name, metrics in results.items():
        if not isinstance(metrics, dict):
            raise ModelDirError(f"{path}: {name!r} is not an object of metrics")
        missing = [m for m in METRIC_NAMES if m not in metrics]
        if missing:
            raise ModelDirError(f"{path}: {name!r} lacks {', '.join(missing)}")
        bad = [m for m in METRIC_NAMES if not isinstance(metrics[m], (int, float)) or isinstance(metrics[m], bool)
               or not -100.0 <= metrics[m] <= 100.0]
        if bad:
            raise ModelDirError(f"{path}: {name!r} has values that are not numbers in [-100, 100]: {', '.join(bad)}")
    return results


def check_export(model_dir: str) -> None:
    """An exported encoder: config.json with its `simcse` block, safetensors weights and its tokenizer."""
    if not os.path.isdir(model_dir):
        raise ModelDirError(f"{model_dir}: no such folder")
    if not os.path.isfile(os.path.join(model_dir, "config.json")):
        run = ""
        if os.path.isfile(os.path.join(model_dir, RUN_ARGS_FILE)):  # a run's output folder, its export not written
            run = ("; it is the output folder of a run that was not exported: its launch stopped before the export was "
                   "complete. Launch the run again with --resume_from_checkpoint last, which evaluates and exports it "
                   "(and says what it trains again first, if anything)")
        raise ModelDirError(f"{model_dir}: no config.json (not an exported model){run}")
    if not glob.glob(os.path.join(model_dir, "*.safetensors")):
        raise ModelDirError(f"{model_dir}: no *.safetensors weights")
    weight_names(model_dir)  # their headers parse: a copy cut short is refused before anything is sent
    try:
        config = read_json(model_dir, "config.json")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelDirError(f"{model_dir}/config.json: not valid JSON ({e})") from None
    form = config_form(config) if isinstance(config, dict) else None
    if form == "checkpoint":
        raise ModelDirError(f"{model_dir} is a training checkpoint, not an export: publish the run's output folder, "
                            "which holds the export of the checkpoint it kept")
    if form is None:
        raise ModelDirError(f"{model_dir}/config.json: no 'simcse' block (not exported by run_simcse.py)")
    # Without them transformers would load the repo with a tokenizer of special tokens only: [CLS] [UNK]... [SEP].
    if not os.path.isfile(os.path.join(model_dir, "tokenizer_config.json")):
        raise ModelDirError(f"{model_dir}: no tokenizer_config.json (the export's tokenizer files)")
    if not any(os.path.isfile(os.path.join(model_dir, name)) for name in TOKENIZER_VOCABULARIES):
        raise ModelDirError(f"{model_dir}: no tokenizer vocabulary (one of {', '.join(TOKENIZER_VOCABULARIES)})")
    simcse = config["simcse"]
    check_sentence_transformers_files(model_dir, simcse.get("embedding") if isinstance(simcse, dict) else None)


def check_sentence_transformers_files(model_dir: str, embedding: str | None) -> None:
    """ModelDirError unless the export's sentence-transformers files give `embedding`: modules.json with the modules of
    `SENTENCE_TRANSFORMERS_PIPELINES`, sentence_bert_config.json (the Transformer's length), each module's folder with
    its config.json and, for a module with weights, those. Without modules.json `SentenceTransformer` loads the folder
    with mean pooling, another embedding, in a warning; without a module's folder (a copy that left out the folder's
    subfolders, `cp` without -r), it does not load."""
    expected = SENTENCE_TRANSFORMERS_PIPELINES.get(embedding) if isinstance(embedding, str) else None
    if expected is None:
        raise ModelDirError(f"{model_dir}/config.json: its simcse block names embedding {embedding!r}, none that "
                            f"run_simcse.py exports ({', '.join(SENTENCE_TRANSFORMERS_PIPELINES)})")
    path = os.path.join(model_dir, "modules.json")
    if not os.path.isfile(path):
        raise ModelDirError(f"{model_dir}: no modules.json (the export's sentence-transformers files): "
                            f"SentenceTransformer would load the folder with mean pooling, not its embedding "
                            f"({embedding})")
    try:
        modules = read_json(model_dir, "modules.json")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelDirError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(modules, list) or not all(
            isinstance(m, dict) and isinstance(m.get("type"), str) and isinstance(m.get("path"), str) for m in modules):
        raise ModelDirError(f"{path}: expected a list of modules, each with its type and path")
    types = tuple(m["type"].rsplit(".", 1)[-1] for m in modules)
    if types != expected:
        raise ModelDirError(f"{path}: its modules are {', '.join(types) or 'none'}; the export's embedding "
                            f"({embedding}) is that of {', '.join(expected)}")
    for module, name in zip(modules, types, strict=True):
        config_file = "sentence_bert_config.json" if name == "Transformer" else f"{module['path']}/config.json"
        if not os.path.isfile(os.path.join(model_dir, config_file)):
            missing = config_file
        elif name in MODULES_WITH_WEIGHTS and not glob.glob(os.path.join(model_dir, module["path"], "*.safetensors")):
            missing = f"{module['path']}/model.safetensors"
        else:
            continue
        raise ModelDirError(f"{model_dir}: no {missing}, which its modules.json names (the {name} module of its "
                            "sentence-transformers files; a copy with `cp -r` takes the folder's subfolders)")


def config_form(config: dict) -> str | None:
    """What a saved model's config.json says it is: "checkpoint" (a `SimCSEModel` saved in training, of model type
    `CHECKPOINT_MODEL_TYPE`), "export" (an encoder written by `SimCSEModel.export_encoder`, with its `simcse` block)
    or None (any other model)."""
    if config.get("model_type") == CHECKPOINT_MODEL_TYPE:
        return "checkpoint"
    return "export" if "simcse" in config else None


def is_published(path: str) -> bool:
    """Whether a '/'-separated path, relative to an export folder or a repo, is of a kind a push uploads: it matches
    one of `PUBLISHED_PATTERNS` name by name, as glob matches them (no hidden names)."""
    names = path.split("/")
    return not any(name.startswith(".") for name in names) and any(
        len(parts := pattern.split("/")) == len(names) and all(map(fnmatch.fnmatchcase, names, parts))
        for pattern in PUBLISHED_PATTERNS)


def published_files(model_dir: str) -> list[str]:
    """Relative paths (sorted, '/'-separated) of the files a push uploads. A link to a folder (a module's folder kept
    elsewhere) is followed, as `SentenceTransformer` follows it."""
    depth = max(pattern.count("/") for pattern in PUBLISHED_PATTERNS)  # how many folders deep a published file lies
    found = []
    for root, folders, names in os.walk(model_dir, followlinks=True):
        relative = os.path.relpath(root, model_dir)
        if relative != "." and relative.count(os.sep) + 1 >= depth:
            folders.clear()  # nothing below is published: a linked tree (a cache, a folder above) is not walked
        for name in names:
            path = os.path.relpath(os.path.join(root, name), model_dir).replace(os.sep, "/")
            if is_published(path):
                found.append(path)
    return sorted(found)


def weight_names(model_dir: str) -> list[str]:
    """The tensor names in the folder's safetensors weights, read from the files' headers (no tensor is loaded)."""
    from safetensors import SafetensorError, safe_open

    names = []
    for path in sorted(glob.glob(os.path.join(model_dir, "*.safetensors"))):
        try:
            with safe_open(path, "numpy") as f:
                names += f.keys()
        except SafetensorError as e:
            said = ("a Git LFS pointer, not the weights (a repository cloned without Git LFS: `git lfs pull` there)"
                    if is_lfs_pointer(path) else f"not readable safetensors weights ({e})")
            raise ModelDirError(f"{path}: {said}") from None
    return names


def read_json(model_dir: str, name: str, default: Any = None) -> Any:
    """A JSON file of the folder, or `default` when it is absent."""
    path = os.path.join(model_dir, name)
    if not os.path.isfile(path):
        return default
    with open(path, encoding="utf-8") as f:
        return json.load(f)
