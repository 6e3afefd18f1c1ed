"""STS evaluation: the 8 correlations and their average, during training and from the command line.

Each metric is computed once over the whole set, x100: Pearson and Spearman correlation between the gold scores and
the cosine similarity, negative Euclidean distance, negative Manhattan distance and dot product of the two sentence
embeddings (as in the published SimCSE-KO tables and sentence-transformers' EmbeddingSimilarityEvaluator).

Command line (any exported folder or training checkpoint; any sentence-transformers model, through its own pipeline;
any other Hub encoder, pooled with --pooler):
    python sts_evaluation.py OUTPUT_DIR [--set korsts-test=sts-test.tsv --set klue-sts-dev=klue/klue:sts:validation]
    python sts_evaluation.py OUTPUT_DIR --remove-characters ",\"'"   # as the published SimCSE-KO code scored
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile

import numpy as np
import torch
from datasets import Dataset
from scipy import stats
from transformers import AutoTokenizer, EvalPrediction, PreTrainedTokenizerBase, Trainer, TrainingArguments
from transformers.utils import cached_file

from data_collator import SimCSECollator
from data_loading import (DataError, check_known_tokens, check_model_source, check_tokenizer, column_values,
                          load_sts, model_load_error, parse_named_sets, refuses_model_code, sample_sentences,
                          tokenize_rows)
from hub.model_dir import METRIC_NAMES, RESULTS_FILE, RUN_ARGS_FILE, SIMILARITIES, write_json
from modeling_simcse import LOAD_KWARGS, POOLER_TYPES, EncoderWeightsMissing, SimCSEModel, pair_similarities, saved_form
from sigterm import CTRL_C_EXIT_CODE

KORSTS_URL = "https://raw.githubusercontent.com/kakaobrain/KorNLUDatasets/master/KorSTS/sts-{}.tsv"
DEFAULT_SETS = {"korsts-test": KORSTS_URL.format("test"), "klue-sts-dev": "klue/klue:sts:validation"}


def sts_correlations(similarities: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """(n, 4) similarities in `SIMILARITIES` order and (n,) gold scores -> {metric: value x100} for `METRIC_NAMES`.

    A similarity with a value that is not finite, or with one value for every pair, has no correlation: its two metrics
    and the avg are NaN (`undefined_metrics` names them)."""
    similarities, gold = np.asarray(similarities, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    if similarities.ndim != 2 or similarities.shape != (len(gold), len(SIMILARITIES)):
        raise ValueError(f"expected similarities of shape ({len(gold)}, {len(SIMILARITIES)}), got {similarities.shape}")
    out = {}
    for k, name in enumerate(SIMILARITIES):
        column = similarities[:, k]
        if not np.isfinite(column).all():  # no correlation: NaN, as newer scipy gives (1.13's pearsonr raises)
            out[f"{name}_pearson"] = out[f"{name}_spearman"] = math.nan
            continue
        out[f"{name}_pearson"] = 100.0 * float(stats.pearsonr(column, gold)[0])
        out[f"{name}_spearman"] = 100.0 * float(stats.spearmanr(column, gold)[0])
    return {"avg": float(np.mean(list(out.values()))), **out}


def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """`Trainer` hook: predictions are `SimCSEOutput.scores`, label_ids the gold scores."""
    return sts_correlations(prediction.predictions, prediction.label_ids)


def tokenize_sts(ds: Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int, num_proc: int | None = None,
                 name: str = "STS", length_column: str | None = None) -> Dataset:
    """Dataset(sentence1, sentence2, score) -> rows for `SimCSECollator` with `labels`, longest pair first.

    The correlations do not depend on the order of the pairs; sorted, an evaluation batch pads little.
    length_column: as in `tokenize_rows` (Trainer's length grouping orders evaluation batches too).
    """
    rows = tokenize_rows(ds, tokenizer, ["sentence1", "sentence2"], max_length, "score", num_proc, f"Tokenizing {name}",
                         length_column)
    longest = [max(map(len, pair)) for pair in column_values(rows, "input_ids")]
    return rows.select(np.argsort(longest, kind="stable")[::-1]).flatten_indices()


def remove_characters(ds: Dataset, characters: str) -> Dataset:
    """Dataset(sentence1, sentence2, score) -> the same with every character in `characters` deleted from the sentences.

    The published SimCSE-KO evaluation removed commas and quotes from the KorSTS sentences before encoding; the
    standard protocol (the default everywhere here) scores the sentences as they are.
    """
    table = str.maketrans("", "", characters)

    def strip(batch):
        return {c: [s.translate(table) for s in batch[c]] for c in ("sentence1", "sentence2")}

    return ds.map(strip, batched=True, desc=f"Removing {characters!r}") if characters else ds


def say_scoring(name: str, ds: Dataset) -> None:
    """Name the set whose scoring begins, on stderr: the progress bar under it does not."""
    print(f"scoring {name}: {len(ds):,} pairs", file=sys.stderr, flush=True)


def evaluate_sets(trainer: Trainer, sets: dict) -> dict[str, dict[str, float]]:
    """Score each tokenized STS set with the trainer's model -> {set name: {metric: value}} for `METRIC_NAMES`."""
    results = {}
    for name, ds in sets.items():
        if trainer.is_world_process_zero():
            say_scoring(name, ds)
        metrics = trainer.evaluate(eval_dataset=ds, metric_key_prefix=name)
        results[name] = {m: metrics[f"{name}_{m}"] for m in METRIC_NAMES}
    return results


def check_inputs(model: SimCSEModel, tokenizer: PreTrainedTokenizerBase, max_length: int | None,
                 samples: dict[str, list[str]], name: str = "--max-length") -> None:
    """SystemExit naming what the encoder and its tokenizer cannot take (training and scoring): sentences most of whose
    tokens the tokenizer does not know (`samples`: what they are -> a sample of them), sentences of `max_length`
    tokens (the setting named `name`; None: not checked), a model that is not a text encoder of this pooler, this
    tokenizer's ids (`check_text_encoder`), or batches this tokenizer cannot pad."""
    try:
        for what, sentences in samples.items():
            check_known_tokens(tokenizer, sentences, what)
        if max_length is not None:
            model.check_max_length(max_length, name)
        model.check_text_encoder(tokenizer)
        check_tokenizer(tokenizer, max_length, name)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None


def sts_samples(sets: dict[str, Dataset]) -> dict[str, list[str]]:
    """{set name: Dataset(sentence1, sentence2, score)} -> the `samples` of `check_inputs`."""
    return {f"the sentences of {name}": sample_sentences(ds, ["sentence1", "sentence2"]) for name, ds in sets.items()}


def simcse_scores(model: str, form: str | None, pooler: str | None, sets: dict[str, Dataset], max_length: int | None,
                  batch_size: int, trust_remote_code: bool = False,
                  revision: str | None = None) -> dict[str, dict[str, float]]:
    """Score untokenized STS sets with `SimCSEModel.from_exported` (an export's or a checkpoint's own pooler, else
    `pooler`, default cls_before_pooler) through `Trainer`, as training does -> {set name: {metric: value}}.
    max_length: default the run's max_seq_length for a folder run_simcse.py wrote (form), else 64.
    trust_remote_code: run the model's own code (its config's `auto_map`) to build its encoder and tokenizer.
    revision: the branch, tag or commit of a Hub model (None: its default branch)."""
    encoder = SimCSEModel.from_exported(model, pooler_type=pooler or "cls_before_pooler",
                                        trust_remote_code=trust_remote_code, revision=revision)
    tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code, revision=revision)
    if max_length is None:  # the tokenizer of a folder run_simcse.py wrote carries the run's max_seq_length
        max_length = tokenizer.model_max_length if form else 64
    check_inputs(encoder, tokenizer, max_length, sts_samples(sets))
    tokenized = {name: tokenize_sts(ds, tokenizer, max_length, name=name) for name, ds in sets.items()}
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(
            model=encoder,
            # Pinned memory speeds copies to a GPU; on a CPU, asking for it only draws a warning a set.
            args=TrainingArguments(output_dir=tmp, per_device_eval_batch_size=batch_size, report_to="none",
                                   dataloader_pin_memory=torch.cuda.is_available()),
            data_collator=SimCSECollator(tokenizer.pad_token_id, max_length),
            compute_metrics=compute_metrics,
        )
        return evaluate_sets(trainer, tokenized)


def _model_file(model: str, name: str, **load_kwargs) -> str | None:
    """The local path of the file `name` of a model folder or Hub id; None where it has none (or the Hub is out of
    reach)."""
    return cached_file(model, name, _raise_exceptions_for_missing_entries=False,
                       _raise_exceptions_for_connection_errors=False, **load_kwargs)


def _model_json(model: str, name: str, **load_kwargs):
    """The JSON file `name` of a model folder or Hub id, parsed; None where it has none (or the Hub is out of reach)."""
    path = _model_file(model, name, **load_kwargs)
    if path is None:
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def has_sentence_transformers_pipeline(model: str, **load_kwargs) -> bool:
    """Whether a model folder or Hub id holds a sentence-transformers pipeline (`modules.json`)."""
    return _model_json(model, "modules.json", **load_kwargs) is not None


def sentence_transformers_modules(model: str, kind: str, **load_kwargs) -> list[dict]:
    """The entries of a sentence-transformers model's `modules.json` (folder or Hub id) whose class is `kind`
    ("Pooling", "Dense" ...), in pipeline order; [] without one."""
    modules = _model_json(model, "modules.json", **load_kwargs) or []
    return [m for m in modules if m.get("type", "").rsplit(".", 1)[-1] == kind]


def sentence_transformers_pooling(model: str, **load_kwargs) -> str | None:
    """The pooling of a sentence-transformers model folder or Hub id: 'cls', 'mean', 'max' ... ('+'-joined if
    several), read from its Pooling module's config in either layout (sentence-transformers 6's `pooling_mode`, or
    the `pooling_mode_*` flags of releases 2-5, which this project's exports use); None without a Pooling module."""
    pooling = next(iter(sentence_transformers_modules(model, "Pooling", **load_kwargs)), None)
    config = _model_json(model, f"{pooling['path']}/config.json", **load_kwargs) if pooling else None
    if not config:
        return None
    modes = config.get("pooling_mode")
    if modes is None:  # the older flags, e.g. pooling_mode_cls_token, pooling_mode_mean_tokens
        modes = [k[len("pooling_mode_"):].removesuffix("_tokens").removesuffix("_token")
                 for k, on in config.items() if k.startswith("pooling_mode_") and on]
    return "+".join([modes] if isinstance(modes, str) else modes) or None


def sentence_transformers_scores(model: str, sets: dict[str, Dataset], max_length: int | None, batch_size: int,
                                 trust_remote_code: bool = False,
                                 revision: str | None = None) -> dict[str, dict[str, float]]:
    """Score untokenized STS sets (sentence1, sentence2, score) with the model's own sentence-transformers
    embedding (`SentenceTransformer.encode`: its pooling, Dense and Normalize modules, default prompt, and its
    max_seq_length unless `max_length` is given) -> {set name: {metric: value}} for `METRIC_NAMES`.
    trust_remote_code: run the model's own code (custom modules, or an encoder its config's `auto_map` names).
    revision: the branch, tag or commit of a Hub model (None: its default branch)."""
    from sentence_transformers import SentenceTransformer

    encoder = SentenceTransformer(model, trust_remote_code=trust_remote_code, revision=revision,
                                  model_kwargs=dict(LOAD_KWARGS))
    transformer = getattr(encoder[0], "auto_model", None)  # None for static embeddings
    if transformer is not None:
        # Pooled as the pipeline pools; "avg" asks for no check of the first token, which a CLS pooler needs.
        check_inputs(SimCSEModel.from_encoder(transformer, pooler_type="avg"), encoder.tokenizer, max_length,
                     sts_samples(sets))
    elif max_length is not None:
        raise SystemExit(f"error: --max-length: {model} embeds each token on its own ({type(encoder[0]).__name__}), "
                         "with no length to cut sentences to; leave --max-length out")
    if max_length is not None:
        encoder.max_seq_length = max_length
    print(f"{model}{f' (revision {revision})' if revision else ''}: scored through its sentence-transformers pipeline "
          f"({' -> '.join(type(module).__name__ for module in encoder)}, max_seq_length {encoder.max_seq_length})")
    results = {}
    for name, ds in sets.items():
        say_scoring(name, ds)
        a, b = (encoder.encode(column_values(ds, c), batch_size=batch_size, convert_to_tensor=True,
                               show_progress_bar=True) for c in ("sentence1", "sentence2"))
        results[name] = sts_correlations(pair_similarities(a, b).cpu().numpy(), np.array(column_values(ds, "score")))
    return results


def undefined_metrics(results: dict[str, dict[str, float]]) -> str | None:
    """{set: metrics} -> which metrics of which sets are NaN (similarities that are not finite, or all the same, have
    no correlation), as "set: metric, ...; ..."; None where every one is defined."""
    undefined = {name: [m for m in METRIC_NAMES if not math.isfinite(metrics[m])] for name, metrics in results.items()}
    return "; ".join(f"{name}: {', '.join(metrics)}" for name, metrics in undefined.items() if metrics) or None


def format_table(results: dict[str, dict[str, float]]) -> str:
    """{set: metrics} -> a Markdown table in the published layout (AVG, then similarity x Pearson/Spearman)."""
    header = ["eval set", "AVG"] + [f"{s.capitalize()} {c}" for s in SIMILARITIES for c in ("Pearson", "Spearman")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, metrics in results.items():
        lines.append("| " + " | ".join([name] + [f"{metrics[m]:.2f}" for m in METRIC_NAMES]) + " |")
    return "\n".join(lines)


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def run_results_problem(model: str, output: str | None, removed: str, max_length: int | None) -> str | None:
    """Why scores may not be written to `output`, where it is the `sts_results.json` of the run folder `model`: the card
    shows that file's numbers beside the run's settings, as the standard protocol's (sentences as they are, the run's
    max_seq_length). None where they may."""
    if not output or os.path.realpath(output) != os.path.realpath(os.path.join(model, RESULTS_FILE)):  # links too
        return None
    run_length = (_model_json(model, RUN_ARGS_FILE) or {}).get("max_seq_length")
    if removed or (run_length is not None and max_length not in (None, run_length)):
        return (f"--output {output}: the model card is rendered from that file, as scores of the sentences as they "
                "are, at the run's max_seq_length; write scores of --remove-characters or another --max-length to "
                "another file")
    return None


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description="Evaluate a sentence encoder on STS sets (8 correlations and AVG, "
                                                 "x100).")
    parser.add_argument("model", help="an exported model folder, a training checkpoint folder, or a Hub model id")
    parser.add_argument("--set", action="append", dest="sets", metavar="NAME=SOURCE",
                        help="an STS set (file, URL, save_to_disk folder or Hub dataset); repeatable. Default: "
                             + " and ".join(f"{name}={source}" for name, source in DEFAULT_SETS.items()))
    parser.add_argument("--pooler", choices=POOLER_TYPES,
                        help="pooling for encoders this project did not write. Default: a sentence-transformers "
                             "model's own pipeline, else cls_before_pooler; exports and checkpoints carry their own")
    parser.add_argument("--max-length", type=positive_int,
                        help="tokens a sentence is cut to (default: the run's max_seq_length for an export or a "
                             "checkpoint, a sentence-transformers model's own max_seq_length, else 64)")
    parser.add_argument("--batch-size", type=positive_int, default=128,
                        help="sentence pairs a batch (default 128; a sentence-transformers model: sentences a batch)")
    parser.add_argument("--remove-characters", default="", metavar="CHARS",
                        help="delete each of these characters from every sentence before encoding; not the standard "
                             "protocol. The published SimCSE-KO code removed commas and quotes: --remove-characters "
                             "\",\\\"'\" in a shell")
    parser.add_argument("--revision", metavar="REV",
                        help="the branch, tag or commit of a Hub model to score (default: its default branch), e.g. "
                             "the branch `python -m hub push --revision` pushed to")
    parser.add_argument("--output", help="write the results as JSON here")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="run the Python code a model ships to build itself (its config's auto_map, or custom "
                             "sentence-transformers modules); read that code first")
    args = parser.parse_args(argv)
    try:
        return _evaluate(parser, args)
    except KeyboardInterrupt:  # nothing is written before the scores are all there
        print(f"\nstopped: {args.model} was not scored" + (f"; {args.output} not written" if args.output else ""),
              file=sys.stderr)
        raise SystemExit(CTRL_C_EXIT_CODE) from None


def _evaluate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """The checks, the scoring and the printed table (and --output) of `main`'s parsed arguments."""
    if args.output and not os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
        parser.error(f"--output {args.output}: its folder does not exist")
    if args.output and os.path.isdir(args.output):
        parser.error(f"--output {args.output} is a folder; name the JSON file to write, e.g. "
                     f"{args.output}/sts_results.json")
    if args.output and not os.access(args.output if os.path.exists(args.output) else
                                     os.path.dirname(os.path.abspath(args.output)), os.W_OK):
        parser.error(f"--output {args.output}: this user may not write it there (a read-only file, folder or disk)")
    if (problem := run_results_problem(args.model, args.output, args.remove_characters, args.max_length)) is not None:
        parser.error(problem)
    if args.revision is not None and os.path.isdir(args.model):
        parser.error(f"--revision {args.revision}: {args.model} is a folder here, which has no versions; --revision "
                     "names a branch, tag or commit of a Hub model id")
    version = {"revision": args.revision}

    try:
        check_model_source(args.model, ("config.json", "modules.json"))
        specs = parse_named_sets(args.sets) if args.sets else DEFAULT_SETS
        loaded = {name: remove_characters(load_sts(spec), args.remove_characters) for name, spec in specs.items()}
    except DataError as e:
        message, hint = e.problem, e.hint
        if not args.sets and message.startswith(tuple(DEFAULT_SETS.values())):  # offline, say
            # in place of the general way to do without the network (NO_NETWORK)
            hint = ("; or score local copies of the default sets: --set korsts-test=PATH/sts-test.tsv --set "
                    "klue-sts-dev=PATH/klue-sts-v1.1_dev.json")
        raise SystemExit(f"error: {message}{hint}") from None
    try:
        # A sentence-transformers model without config.json at its root: static embeddings, or an encoder in a module
        # folder (0_Transformer/, as early sentence-transformers releases saved it).
        pipeline = has_sentence_transformers_pipeline(args.model, **version)
        pipeline_only = pipeline and _model_file(args.model, "config.json", **version) is None
        # What run_simcse.py wrote (an export or a checkpoint) carries its own settings.
        form = None if pipeline_only else saved_form(args.model, **version)
    except OSError as e:  # not on the Hub (nor that revision), or no network
        raise SystemExit(f"error: {model_load_error([args.model], e)}") from None
    if pipeline_only and args.pooler:
        raise SystemExit(f"error: --pooler: {args.model} has no config.json at its root, so no encoder there to pool "
                         "(static embeddings, or an encoder in a module folder such as 0_Transformer/); it is scored "
                         "through its sentence-transformers pipeline, without --pooler")
    if form and args.pooler:
        raise SystemExit(f"error: --pooler: {args.model} was written by run_simcse.py and is scored with its own "
                         "pooler (the evaluated embedding); leave --pooler out")
    try:
        if not form and not args.pooler and pipeline:
            results = sentence_transformers_scores(args.model, loaded, args.max_length, args.batch_size,
                                                   args.trust_remote_code, **version)
        else:
            results = simcse_scores(args.model, form, args.pooler, loaded, args.max_length, args.batch_size,
                                    args.trust_remote_code, **version)
    except EncoderWeightsMissing as e:
        raise SystemExit(f"error: {e}") from None
    except OSError as e:  # the weights' download: no room or no right to write in the Hub cache, the network gone
        raise SystemExit(f"error: {model_load_error([args.model], e)}") from None
    except ValueError as e:
        if not refuses_model_code(e) or args.trust_remote_code:
            raise
        raise SystemExit(f"error: {args.model} ships its own code, which builds the model; read it, then add "
                         "--trust-remote-code to run it") from None
    if args.remove_characters:
        print(f"Sentences scored without the characters {args.remove_characters!r} (not the standard protocol).")
    print(format_table(results))
    if undefined := undefined_metrics(results):  # NaN in the file: the hub command refuses it
        said = f"undefined scores ({undefined}): the model's similarities are not finite or all the same"
        if args.output:
            raise SystemExit(f"error: {said}; {args.output} not written")
        print(f"note: {said} (its embeddings have diverged or collapsed)", file=sys.stderr)
    if args.output:
        write_results(results, args.output)
        print(f"wrote {args.output}")
    return results


def write_results(results: dict[str, dict[str, float]], path: str) -> None:
    """Write `results` as JSON to `path` whole or not at all (a full disk, an I/O error: SystemExit naming it, and an
    earlier file there left as it was)."""
    try:
        write_json(path, results, indent=2)
    except OSError as e:
        raise SystemExit(f"error: --output {path}: not written ({e.strerror or e}); the scores are the table above") \
            from None


if __name__ == "__main__":
    main()
