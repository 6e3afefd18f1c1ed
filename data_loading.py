"""Load, validate and tokenize SimCSE training data and STS evaluation sets.

A source is a local file, a folder that `Dataset.save_to_disk` wrote, an http(s) URL or a Hub dataset id
(`data_sources.Source`). Nested columns are flattened (`labels.real-label`). Every problem is raised as `DataError`
naming the source and the row (a 1-based line for text files, counting the header), before any training starts.
"""

from __future__ import annotations

import atexit
import codecs
import csv
import errno
import hashlib
import importlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import tempfile
from pathlib import Path
from typing import IO

import datasets
import huggingface_hub
from datasets import Dataset
from safetensors import safe_open
from transformers import PreTrainedTokenizerBase, TokenizersBackend

from data_sources import (COMPRESSIONS, FILE_FORMATS, LFS_POINTER, DataError, Source, hub_page_hint, is_lfs_pointer,
                          is_repo_id)
from training_guards import CHECKPOINT, NO_ROOM, best_checkpoint, checkpoints, no_space, raised_within

NLI_LABELS = {"entailment": 0, "neutral": 1, "contradiction": 2, "0": 0, "1": 1, "2": 2}
NO_GOLD_LABEL = (-1, "-1", "-")  # SNLI's marker for pairs without annotator consensus: skipped
# Column names tried in order when a config does not name them.
NLI_COLUMNS = {"premise": ("premise", "sentence1"), "hypothesis": ("hypothesis", "sentence2"),
               "label": ("label", "gold_label")}
STS_COLUMNS = {
    "sentence1": ("sentence1",),
    "sentence2": ("sentence2",),
    "score": ("score", "labels.real-label", "real-label", "label", "similarity_score"),
}
TEXT_COLUMNS = ("text", "sentence", "sentence1")
# ... and for the pair and triplet formats' columns (SimCSE's names): sentence-transformers' names for the same.
PAIR_COLUMNS = {"sent0": ("anchor",), "sent1": ("positive",), "hard_neg": ("negative",)}
# What a training source without the columns of NLI rows is told: train_format "nli" is the default.
NOT_NLI = ('; train_format "nli", the default, reads premise, hypothesis and label columns: set "train_format" to '
           '"text" for one sentence a row (unsupervised SimCSE; a .txt file), or to "pair" or "triplet" for rows of 2 '
           'or 3 sentences')
# The layouts of a .json source's rows, which errors about a file laid out otherwise name.
JSON_ROWS = "a .json source is a list of objects, one a row, or one object a line"
# What a source that could not be reached over the network is told (`unreachable`).
NO_NETWORK = "; without a network, name a local copy (README: Sources)"
# Shares of a sample's tokens that the tokenizer makes its unknown token above which a run warns, and stops.
UNKNOWN_TOKENS_WARNING, UNKNOWN_TOKENS_ERROR = 0.05, 0.5


logger = logging.getLogger(__name__)
# Conjoining Hangul jamo: Korean in decomposed form (NFD, as macOS writes file names), not the compatibility jamo of
# ordinary text (ㅋㅋ). BERT's WordPiece with do_lower_case false has no Unicode normalizer: it made [UNK] of every
# decomposed word of '한 남자가 음식을 먹는다.' and the right pieces of the composed sentence
# (tests/test_data_loading.py).
DECOMPOSED_HANGUL = re.compile("[\u1100-\u11ff]")
# Blank: whitespace and invisible format characters (soft hyphen, zero-width space / joiners, word joiner, BOM), which
# web text carries: a sentence of nothing else has no words (tokenizers give it a bare "▁" piece or [UNK]).
BLANK = re.compile("[\\s\u00ad\u200b-\u200d\u2060\ufeff]*")
TO_NFC = ("""python -c "import sys, unicodedata; sys.stdout.write(unicodedata.normalize('NFC', sys.stdin.read()))" """
          "< IN > OUT")


def load_source(spec: str, cache_dir: str | None = None) -> tuple[Dataset, Source]:
    """Read a source (see the module docstring) into a flat `Dataset`."""
    source = Source.parse(spec)
    try:
        if source.repo:
            ds = datasets.load_dataset(source.repo, source.config, split=source.split, revision=source.revision,
                                       cache_dir=cache_dir)
        else:
            builder = FILE_FORMATS.get(source.extension)
            if os.path.isdir(source.path):
                ds = saved_dataset(source)
            elif builder is None:
                raise DataError(f"{source.spec}: unknown file type {source.extension or source.compression!r}; use one "
                                f"of {sorted(FILE_FORMATS)} (the text formats compressed too: "
                                f"{', '.join(COMPRESSIONS)}){hub_page_hint(source.spec, 'dataset')}")
            elif builder == "parquet" and source.compression:
                raise DataError(f"{source.spec}: a Parquet file compresses its columns itself; name it uncompressed")
            else:
                ds = _load_file(source, builder, cache_dir)
    except DataError:
        raise
    except Exception as e:  # pyarrow/HTTP/Hub errors: say which source, and why (fsspec's message is the URL alone)
        if (failed := failed_write(e, source.path)) is not None:  # datasets writes each source into its cache first
            where, settings = f"the datasets cache, {cache_dir or datasets.config.HF_DATASETS_CACHE}", ""
            if source.repo:  # a Hub dataset's files are downloaded into the Hub's own cache first
                where += f", or the Hub cache, {huggingface_hub.constants.HF_HUB_CACHE}"
                settings = " and HF_HUB_CACHE"
            if failed.errno in NO_ROOM:
                raise DataError(f"{source.spec}: could not be cached: {failed.strerror} in {where}; free space "
                                f"there, or set HF_DATASETS_CACHE (or cache_dir){settings} to a folder on a larger "
                                "disk") from e
            raise DataError(f"{source.spec}: could not be cached: {failed.strerror}: {failed.filename} ({where}); set "
                            f"HF_DATASETS_CACHE (or cache_dir){settings} to a folder this user may write to") from e
        reason = e.__cause__ if e.__cause__ and str(e) in source.spec else e
        hint = ""
        if unreachable(e):
            hint = NO_NETWORK + (", or load the Hub dataset once online: with HF_HUB_OFFLINE=1 it is then read from "
                                 "the cache" if source.repo else "")
        raise DataError(f"{source.spec}: could not be read: {reason}", hint) from e
    if ds.num_rows == 0:  # a header line alone: nothing to train on or score (an empty sampler fails mid-start)
        raise DataError(f"{source.spec}: no rows")
    return ds.flatten(), source


def _load_file(source: Source, builder: str, cache_dir: str | None) -> Dataset:
    """A file or URL `source` of the `datasets` builder `builder` (csv, json, parquet, text) -> its rows."""
    path = source.path
    if re.match(r"https?://", path):
        download_config = datasets.DownloadConfig(cache_dir=cache_dir)
        path = datasets.DownloadManager(download_config=download_config).download(path)
    elif not os.path.isfile(path):
        where = "" if os.path.isabs(path) else (f" in {os.getcwd()} (a relative path is read from the folder "
                                                "the command runs in)")
        if re.search(r"[*?[]", path):  # a JSON value reaches no shell to expand it
            where += "; a pattern is not expanded: list the files, each a source of its own"
        raise DataError(f"{source.spec}: file not found{where}")
    _refuse_stand_in(path, source)
    if builder == "csv":
        try:
            ds = _read_delimited(path, source)
        except UnicodeDecodeError:  # located on failure: the happy path reads the file once
            _check_text_file(path, source)
            raise
    else:
        if builder != "parquet":  # before datasets: pyarrow takes a .jsonl in CP949 without a word
            _check_text_file(path, source)
        # utf-8-sig: a byte-order mark (Windows editors) would otherwise start the first sentence.
        options = {"encoding": "utf-8-sig"} if builder == "text" else {}
        try:
            ds = datasets.load_dataset(builder, data_files=path, split="train", cache_dir=cache_dir, **options)
        except Exception:
            if builder == "json":  # pyarrow names neither the line nor, in a .json list, the row
                _raise_json_problem(path, source)
            raise
    return ds


def saved_dataset(source: Source) -> Dataset:
    """A folder that `Dataset.save_to_disk` wrote -> its rows, read into memory (so that tokenizing writes no cache
    files into the folder); DataError for a `DatasetDict`'s folder (naming its splits' folders) or any other folder."""
    folder = source.path
    splits_file = os.path.join(folder, datasets.config.DATASETDICT_JSON_FILENAME)
    if os.path.isfile(splits_file):
        with open(splits_file, encoding="utf-8") as f:
            splits = json.load(f).get("splits", [])
        raise DataError(f"{source.spec}: a DatasetDict that save_to_disk wrote; name the folder of one of its splits: "
                        + ", ".join(os.path.join(source.spec, split) for split in splits))
    if not os.path.isfile(os.path.join(folder, datasets.config.DATASET_STATE_JSON_FILENAME)):
        raise DataError(f"{source.spec}: a folder that is no dataset saved with save_to_disk; name its files, each a "
                        "source of its own (train_data and test_data take a list)")
    return datasets.load_from_disk(folder, keep_in_memory=True)


def unreachable(error: BaseException | None) -> bool:
    """Whether `error` comes of a host that could not be reached (no network, a name that does not resolve, a refused
    connection; or the Hub with HF_HUB_OFFLINE set): a `ConnectionError` or `socket.gaierror` in its chain of causes."""
    return raised_within(error, (ConnectionError, socket.gaierror)) is not None


def open_file(path: str, source: Source, mode: str, **options) -> IO:
    """`open(path, mode, **options)` for the local file (or download) of `source`, decompressed where the source's name
    ends in a compression suffix (`x.tsv.gz`; a download's cached name may have none)."""
    if source.compression is None:
        return open(path, mode, **options)
    module = importlib.import_module(COMPRESSIONS[source.compression])
    return module.open(path, mode if "b" in mode else mode + "t", **options)


# What a download gives in place of a data file: a web page that shows the file (GitHub's .../blob/... address; GitHub
# serves the file itself from raw.githubusercontent.com), or the Git LFS pointer of a file that a repository keeps in
# LFS (its raw address gives the pointer, three lines of text).
HTML_STARTS = (b"<!doctype html", b"<html")
GITHUB_FILE_PAGE = re.compile(r"https?://github\.com/([^/]+)/([^/]+)/blob/([^?#]+)")


def _refuse_stand_in(path: str, source: Source) -> None:
    """Raise `DataError` where `source` (read at `path`) is an HTML page or a Git LFS pointer, which its format's reader
    would take for rows (a header of one field, lines of markup as sentences) or fail on without saying so."""
    if source.compression is not None:
        return
    with open(path, "rb") as f:
        start = f.read(512).removeprefix(codecs.BOM_UTF8).lstrip()
    if start.startswith(LFS_POINTER):
        raise DataError(f"{source.spec}: a Git LFS pointer, not the {source.extension} file (the repository keeps the "
                        "file in LFS: download it through LFS, or from the address its web page links as the raw file)")
    if not start.lower().startswith(HTML_STARTS):
        return
    hint = ""
    if page := GITHUB_FILE_PAGE.fullmatch(source.spec):
        hint = f"; the file itself is at https://raw.githubusercontent.com/{page[1]}/{page[2]}/{page[3]}"
    raise DataError(f"{source.spec}: an HTML page, not a {source.extension} file (a web page that shows the file is "
                    f"not the file){hint}")


def _check_text_file(path: str, source: Source, chunk_bytes: int = 1 << 24) -> None:
    """Raise `DataError` for a text file that is not UTF-8 (naming the line, and CP949 where the line reads as it: the
    encoding Windows tools save Korean in) or that holds nothing but whitespace. Reads `chunk_bytes` at a time."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line, first, at_start = 1, b"", True  # first: the file's first byte that is not whitespace
    with open_file(path, source, "rb") as f:
        while chunk := f.read(chunk_bytes):
            if not first:
                first = (chunk.removeprefix(codecs.BOM_UTF8) if at_start else chunk).lstrip()[:1]
            at_start = False
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as e:
                data = e.object  # the bytes of a character cut between chunks (no newline among them), then the chunk
                line += data.count(b"\n", 0, e.start)
                name = shlex.quote(path) if path == source.spec else "FILE"
                if line == 1 and data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                    hint = (f"; it is UTF-16 (Excel's 'Unicode Text'): `iconv -f utf-16 -t utf-8 {name} > NEW_FILE` "
                            "converts it")
                else:
                    rest = (data[e.start :] + f.read(120)).split(b"\n", 1)[0][:120]  # the line's next bytes
                    try:  # not final: a character cut at the 120th byte is left out, not an error
                        reading = codecs.getincrementaldecoder("cp949")().decode(rest).strip()
                        hint = (f"; it reads as CP949/EUC-KR ({reading[:30]!r}), the encoding Windows tools save "
                                f"Korean in: `iconv -f cp949 -t utf-8 {name} > NEW_FILE` converts it")
                    except UnicodeDecodeError:
                        hint = "; save it as UTF-8"
                raise DataError(f"{source.spec}, line {line}: not UTF-8 text "
                                f"(byte 0x{data[e.start]:02x}){hint}") from None
            line += chunk.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise DataError(f"{source.spec}, line {line}: not UTF-8 text (the file ends inside a character)") from None
    if not first:
        raise DataError(f"{source.spec}: empty file")


def _raise_json_problem(path: str, source: Source) -> None:
    """Find, with Python's `json`, what made a .json/.jsonl file unreadable, and raise it as `DataError` naming the line
    (returns when it finds nothing, for the caller to raise the original error)."""
    with open_file(path, source, "r", encoding="utf-8-sig") as f:
        if source.extension == ".jsonl":
            for number, text in enumerate(f, 1):
                if not text.strip():
                    continue
                try:
                    row = json.loads(text.rstrip("\r\n"))
                except json.JSONDecodeError as e:
                    raise DataError(f"{source.spec}, line {number}, column {e.colno}: not JSON ({e.msg})") from None
                if not isinstance(row, dict):
                    raise DataError(f"{source.spec}, line {number}: a JSON object ({{...}}) a line is expected, found "
                                    f"{text.strip()[:40]}") from None
            return
        try:
            rows = json.load(f)
        except json.JSONDecodeError as e:
            raise DataError(f"{source.spec}, line {e.lineno}, column {e.colno}: not JSON ({e.msg})") from None
    if rows == []:
        raise DataError(f"{source.spec}: no rows (an empty list)")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataError(f"{source.row(i)}: a JSON object ({{...}}) is expected, found {json.dumps(row)[:40]}")


def _read_delimited(path: str, source: Source) -> Dataset:
    """A TSV (quoting off) or CSV (RFC 4180) file with a header -> Dataset of strings; every row must have the
    header's number of fields (pandas would silently turn extra fields into an index)."""
    tsv = source.extension == ".tsv"
    with open_file(path, source, "r", encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t" if tsv else ",", quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL)
        header = next(reader, None)
        if not header or not any(field.strip() for field in header):
            raise DataError(f"{source.spec}: empty file (a header line is needed)")
        if len(header) == 1 and (problem := _other_separator(header[0], tsv)):
            raise DataError(f"{source.spec}, line 1: one column, {header[0]!r}: {problem}")
        columns: list[list[str]] = [[] for _ in header]
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise DataError(f"{source.spec}, line {reader.line_num}: {len(row)} fields, the header has "
                                f"{len(header)}")
            for column, value in zip(columns, row, strict=True):
                column.append(value)
    return Dataset.from_dict(dict(zip(header, columns, strict=True)))


# Separators a delimited file may have been saved with: their names, and the suffix this job reads them under.
SEPARATORS = {"\t": ("tabs", ".tsv"), ",": ("commas", ".csv"), ";": ("semicolons", None), "|": ("'|'", None)}


def _other_separator(header: str, tsv: bool) -> str | None:
    """What to do where a delimited file's one-column header line is columns split by another separator than the
    file's (a .csv of Excel's in a semicolon locale, a TSV saved as .csv); None where it is not."""
    own = "\t" if tsv else ","
    for separator, (name, suffix) in SEPARATORS.items():
        if separator == own or sum(bool(part.strip()) for part in header.split(separator)) < 2:
            continue
        if suffix:
            return f"the file is separated by {name}, so name it {suffix}"
        return (f"the file is separated by {name}; a .tsv is read with tabs between fields and a .csv with commas: "
                "save it with one of those")
    return None


def column_values(ds: Dataset, name: str) -> list:
    """A column as a Python list, read in one go (`ds[name]` is a lazy column that reads row by row when iterated)."""
    return ds[name][:]


def rows_digest(ds: Dataset) -> str:
    """SHA-256 of a dataset's column names and values in row order: the same rows give the same digest, in any
    process and with any `datasets` version (unlike its cache fingerprint)."""
    digest = hashlib.sha256()
    for name in ds.column_names:
        digest.update(json.dumps([name, column_values(ds, name)]).encode())
    return digest.hexdigest()


def _column(ds: Dataset, source: Source, role: str, candidates: tuple[str, ...], hint: str = "") -> str:
    """The first of `candidates` that `ds` has, for the column of `role`; else a DataError naming what it has."""
    for name in candidates:
        if name in ds.column_names:
            return name
    # One object in a .json: its rows under a key (a list), or keyed by their index ("0.sentence1" once flattened).
    if source.extension == ".json" and ds.num_rows == 1 and (any(isinstance(v, list) for v in ds[0].values())
                                                             or any(re.match(r"\d+\.", c) for c in ds.column_names)):
        hint = f"; {JSON_ROWS}, not one object that holds them{hint}"
    raise DataError(f"{source.spec}: no {role} column (looked for {', '.join(candidates)}; found "
                    f"{', '.join(ds.column_names)}){hint}")


def _sentences(values: list, source: Source, column: str) -> list[str]:
    for i, v in enumerate(values):
        if v is not None and not isinstance(v, str):
            hint = f" ({JSON_ROWS})" if source.extension == ".json" and isinstance(v, list) else ""
            raise DataError(f"{source.row(i)}: column {column!r} holds {json.dumps(v, ensure_ascii=False)[:40]}, not a "
                            f"sentence{hint}")
        if not isinstance(v, str) or BLANK.fullmatch(v):
            if isinstance(v, str) and v.strip():  # invisible characters alone, which the grep below keeps
                hint = f" (only {ascii(v)}: invisible characters, no words)"
            else:
                hint = (" (a .txt source is one sentence a line, without blank lines: `grep -v '^[[:space:]]*$' IN > "
                        "OUT` keeps the others)" if source.extension == ".txt" else "")
            raise DataError(f"{source.row(i)}: empty or missing sentence in column {column!r}{hint}")
    if DECOMPOSED_HANGUL.search("\n".join(values)):
        rows = [i for i, v in enumerate(values) if DECOMPOSED_HANGUL.search(v)]
        logger.warning("%s: %d of %d sentences in column %r (the first: %s) hold Hangul in decomposed form (NFD: 한 as "
                       "ᄒ+ᅡ+ᆫ); a tokenizer without a Unicode normalizer (BERT's WordPiece with do_lower_case false) "
                       "reads them as unknown tokens. Compose them (NFC): %s", source.spec, len(rows), len(values),
                       column, source.row(rows[0]).removeprefix(f"{source.spec}, "), TO_NFC)
    return values


def load_nli_triplets(
    specs: list[str],
    strip_quotes: bool = False,
    cache_dir: str | None = None,
) -> Dataset:
    """NLI sources -> Dataset(sent0, sent1, hard_neg): for each premise, one entailed and one contradicting hypothesis.

    As in the published SimCSE-KO code, when a premise has several hypotheses of a label the last one wins,
    premises without both labels are dropped, and triplets come in the order premises first appear. Premises are
    grouped within each source (XNLI dev and test share a premise; they still give 830 + 1,670 triplets). Labels may be
    0/1/2 (entailment/neutral/contradiction) or those words; a `ClassLabel` column is read through its own names,
    whatever their order. strip_quotes removes every `"` from the sentences before grouping (the published code did).
    """
    triplets, read = [], 0
    for spec in specs:
        groups: dict[str, dict[int, str]] = {}
        ds, source = load_source(spec, cache_dir)
        names = {role: _column(ds, source, role, cands, hint=NOT_NLI) for role, cands in NLI_COLUMNS.items()}
        premises = _sentences(column_values(ds, names["premise"]), source, names["premise"])
        hypotheses = _sentences(column_values(ds, names["hypothesis"]), source, names["hypothesis"])
        labels = column_values(ds, names["label"])
        feature = ds.features.get(names["label"])
        if isinstance(feature, datasets.ClassLabel):  # its integers stand for its own names, in its own order
            labels = [feature.names[v] if isinstance(v, int) and 0 <= v < feature.num_classes else v for v in labels]
        for i, (premise, hypothesis, raw) in enumerate(zip(premises, hypotheses, labels, strict=True)):
            if raw in NO_GOLD_LABEL:
                continue
            label = NLI_LABELS.get(raw.strip().lower()) if isinstance(raw, str) else raw
            if label not in (0, 1, 2) or isinstance(label, bool):
                raise DataError(f"{source.row(i)}: unknown NLI label {raw!r} (expected "
                                "entailment/neutral/contradiction or 0/1/2)")
            if strip_quotes:
                premise, hypothesis = premise.replace('"', ""), hypothesis.replace('"', "")
            groups.setdefault(premise, {})[label] = hypothesis
        triplets += [(p, h[0], h[2]) for p, h in groups.items() if 0 in h and 2 in h]
        read += len(labels)
    if not triplets:
        raise DataError(f"{', '.join(specs)}: no premise has both an entailment and a contradiction")
    logger.info("%d NLI pairs -> %d triplets (premise, entailment, contradiction; premises without both left out)",
                read, len(triplets))
    sent0, sent1, hard_neg = zip(*triplets, strict=True)
    return Dataset.from_dict({"sent0": list(sent0), "sent1": list(sent1), "hard_neg": list(hard_neg)})


def load_sentence_columns(
    specs: list[str], columns: list[str], cache_dir: str | None = None,
    read_columns: dict[str, list[str]] | None = None,
) -> Dataset:
    """Sources with 1 (unsupervised text), 2 (pairs) or 3 (triplets) sentence columns
    -> Dataset(sent0[, sent1[, hard_neg]]).

    columns: the sentence column names in the sources, in that order; where a source has none of that name, `text`,
    `sentence` and `sentence1` are tried for one column, and anchor / positive / negative for sent0 / sent1 / hard_neg.
    read_columns: where given, filled with {source: the columns read from it}, which those tried may make others than
    `columns` (a .txt file's is `text`).
    """
    targets = ["sent0", "sent1", "hard_neg"][: len(columns)]
    hint = f"; sentence_columns names a source's {len(columns)} sentence column(s), in order"
    parts = []
    for spec in specs:
        ds, source = load_source(spec, cache_dir)
        data, found = {}, []
        for target, name in zip(targets, columns, strict=True):
            candidates = (name,) + (TEXT_COLUMNS if len(columns) == 1 else PAIR_COLUMNS.get(name, ()))
            found.append(_column(ds, source, f"sentence ({name})", tuple(dict.fromkeys(candidates)), hint=hint))
            data[target] = _sentences(column_values(ds, found[-1]), source, found[-1])
        if read_columns is not None:
            read_columns[spec] = found
        parts.append(Dataset.from_dict(data))
    return datasets.concatenate_datasets(parts)


def load_sts(spec: str, cache_dir: str | None = None) -> Dataset:
    """An STS source -> Dataset(sentence1, sentence2, score) with every score a float in [0, 5].

    The score column is found among `score` (KorSTS), `labels.real-label` (KLUE, Hub or JSON), `label` (KLUE CSV).
    """
    if Source.parse(spec).repo and spec.count(":") < 2:  # an evaluation set that silently became a train split
        raise DataError(f"{spec}: name the split of a Hub STS set, 'owner/name[:config]:split' (e.g. "
                        "klue/klue:sts:validation); without one it would be the train split")
    ds, source = load_source(spec, cache_dir)
    names = {role: _column(ds, source, role, cands) for role, cands in STS_COLUMNS.items()}
    sentence1 = _sentences(column_values(ds, names["sentence1"]), source, names["sentence1"])
    sentence2 = _sentences(column_values(ds, names["sentence2"]), source, names["sentence2"])
    scores = []
    for i, raw in enumerate(column_values(ds, names["score"])):
        try:
            score = float(raw)
            if score != score:  # NaN (pandas' and JSON writers' mark of a missing value)
                raise ValueError
        except (TypeError, ValueError):
            raise DataError(f"{source.row(i)}: STS score {raw!r} is not a number") from None
        if not 0.0 <= score <= 5.0:
            raise DataError(f"{source.row(i)}: STS score {score} is outside 0-5")
        scores.append(score)
    if len(set(scores)) < 2:  # a correlation with constant gold scores is undefined (NaN)
        raise DataError(f"{spec}: every pair has the gold score {scores[0]}; correlations need scores that differ")
    return Dataset.from_dict({"sentence1": sentence1, "sentence2": sentence2, "score": scores})


def shared_pairs(reference: Dataset, sts: Dataset) -> int:
    """How many sentence pairs of the STS set `sts` (in either order) are pairs of `reference` too: a test set's
    overlap with the dev set that chose the checkpoint (KorSTS-test shares 8 of its 1,379 pairs with KorSTS-dev)."""
    first, second = column_values(reference, "sentence1"), column_values(reference, "sentence2")
    seen = set(zip(first, second, strict=True)) | set(zip(second, first, strict=True))
    pairs = zip(column_values(sts, "sentence1"), column_values(sts, "sentence2"), strict=True)
    return sum(pair in seen for pair in pairs)


def check_model_source(name: str, needs: str | tuple[str, ...] = "config.json") -> None:
    """A model folder or Hub model id; raises `DataError` for a name that is neither an existing folder nor shaped
    like a Hub id (`transformers` would report a mistyped path as a malformed repo id), and for a folder without
    the file `needs`, or any of them (`tokenizer_config.json` for a tokenizer)."""
    if os.path.isdir(name):
        needs = (needs,) if isinstance(needs, str) else needs
        if not any(os.path.isfile(os.path.join(name, file)) for file in needs):
            # A run's output folder before its export (stopped, or still training) holds only checkpoints.
            found = checkpoints(name)
            hint = ""
            if found:
                best = best_checkpoint(name)
                hint = (f"; it holds training checkpoints ({', '.join(map(os.path.basename, found))}): name one, as "
                        + (f"{best} (the best on the dev set so far)" if best else found[-1]))
            raise DataError(f"{name}: no {' or '.join(needs)} in this folder{hint}")
        if (problem := unreadable_model_file(name)) is not None:
            raise DataError(problem)
        return
    if not is_repo_id(name):
        raise DataError(f"{name}: no such folder, and not a Hub model id (name or owner/name)"
                        + hub_page_hint(name, "model"))


def unreadable_model_file(folder: str) -> str | None:
    """Why a file of the model folder `folder` (its modules' folders too, not its checkpoints or hidden folders) cannot
    be loaded, or None: a Git LFS pointer in place of the file (a Hub repository cloned without Git LFS), a link to
    nothing, or safetensors weights whose header does not read (a file cut short). transformers stopped on the
    pointer and the cut in a traceback ("header too large")."""
    for root, folders, files in os.walk(folder):
        folders[:] = [f for f in folders if not CHECKPOINT.match(f) and not f.startswith(".")]  # .git, .cache
        for file in sorted(files):
            path = os.path.join(root, file)
            if not os.path.exists(path):  # a link to nothing (a --local-dir download whose Hub cache was emptied)
                return f"{path}: a link to {os.readlink(path)}, which is not there"
            if is_lfs_pointer(path):
                return (f"{path}: a Git LFS pointer, not the file (the repository was cloned without Git LFS): run "
                        f"`git lfs install && git lfs pull` in {folder}, or name the model by its Hub id")
            if file.endswith(".safetensors"):
                try:
                    with safe_open(path, "np") as f:
                        f.keys()
                except Exception as e:  # SafetensorError, OSError
                    return f"{path}: could not be read ({type(e).__name__}: {(str(e).splitlines() or [''])[0]})"
    return None


def model_load_error(names: list[str], error: Exception, cache_dir: str | None = None) -> str:
    """The model (and tokenizer) names that would not load, transformers' error and the Hub cache setting (`cache_dir`,
    else HF_HUB_CACHE) -> the message, which says which names were read as Hub ids for want of a folder of that name
    here (a mistyped path reads as one), or that the download found no room or no right to write in the Hub cache."""
    absent = [n for n in names if not os.path.isdir(n)]
    said = f"{' / '.join(names)}: "
    cache = cache_dir or huggingface_hub.constants.HF_HUB_CACHE
    failed = failed_write(error) if absent else None
    if failed is not None and (failed.errno in NO_ROOM or failed.filename
                               and Path(failed.filename).resolve().is_relative_to(Path(cache).resolve())):
        setting = "cache_dir" if cache_dir else "HF_HUB_CACHE (or HF_HOME)"
        if failed.errno in NO_ROOM:
            return (f"{said}could not be downloaded: {failed.strerror} in the Hub cache, {cache}; free space there, or "
                    f"set {setting} to a folder on a larger disk")
        return (f"{said}could not be downloaded: {failed.strerror}: {failed.filename} (the Hub cache, {cache}); set "
                f"{setting} to a folder this user may write to")
    if absent:
        which = "" if absent == names else f"{' / '.join(absent)}: "  # a folder beside a mistyped tokenizer_name
        said += f"{which}no such folder here, so read as a Hub id: "
    return f"{said}{error}"


def refuses_model_code(error: Exception) -> bool:
    """Whether `error` is transformers refusing to run the code a model or tokenizer ships (trust_remote_code unset
    or False), which the command lines turn into their own advice."""
    return isinstance(error, ValueError) and "trust_remote_code" in str(error)


def parse_named(spec: str) -> tuple[str, str]:
    """'name=source' -> (name, source). A name is letters (any script), digits, '-', '_', '.' and inner spaces: it
    becomes a key of the results and a row of the card's Markdown tables, which a '|' would split."""
    name, sep, source = spec.partition("=")
    # "://" in the name: a URL with a query ("...?raw=true") and no name before it
    if not sep or not name or not source or "://" in name or re.match(r"https?$", name):
        raise DataError(f"{spec!r}: expected 'name=source', e.g. 'korsts-test=path/to/sts-test.tsv'")
    if not re.fullmatch(r"\w[\w. -]*", name) or name.endswith(" "):
        raise DataError(f"{spec!r}: a set name is letters, digits, '-', '_', '.' and inner spaces, got {name!r}")
    return name, source


def parse_named_sets(specs: list[str]) -> dict[str, str]:
    """['name=source', ...] -> {name: source}; a name given twice is an error (the later set replaced the earlier)."""
    named: dict[str, str] = {}
    for name, source in map(parse_named, specs):
        if name in named:
            raise DataError(f"two sets named {name!r} ({named[name]} and {source}); give each its own name")
        named[name] = source
    return named


def check_tokenizer(tokenizer: PreTrainedTokenizerBase, max_length: int | None, name: str = "max_length") -> None:
    """Raise ValueError where the tokenizer cannot make the batches: it has no padding token (the collator pads with
    it), or sentences cut to `max_length` tokens (named `name`; None: not checked) would keep no token of their own
    once its special tokens ([CLS] and [SEP] for BERT) are in, so that every sentence would get the same embedding."""
    if tokenizer.pad_token_id is None:
        raise ValueError(f"the tokenizer ({type(tokenizer).__name__}, {tokenizer.name_or_path or 'trained here'}) has "
                         "no padding token, which batches of sentences of different lengths need; use the encoder's "
                         "own tokenizer")
    specials = tokenizer.num_special_tokens_to_add(pair=False)
    if max_length is not None and max_length <= specials:
        raise ValueError(f"{name} {max_length} leaves no room for a sentence: the tokenizer adds {specials} special "
                         f"token(s) to each; set it to more than {specials} (the published settings use 64)")


def sample_sentences(ds: Dataset, columns: list[str], rows: int = 500) -> list[str]:
    """The sentences of the first `rows` rows in `columns`: what a check of the tokenizer reads."""
    head = ds.select(range(min(rows, len(ds))))
    return [s for c in columns for s in column_values(head, c)]


def check_known_tokens(tokenizer: PreTrainedTokenizerBase, sentences: list[str], what: str) -> None:
    """Raise ValueError where `tokenizer` makes half or more of the tokens of `sentences` (those of `what`) its unknown
    token, so that most sentences would look alike to the encoder; warn from UNKNOWN_TOKENS_WARNING. transformers
    builds a tokenizer with special tokens only, and no word of its own, for a model folder without tokenizer files."""
    if tokenizer.unk_token_id is None or not sentences:  # byte-level BPE has no unknown token
        return
    # Whole sentences, not cut to model_max_length (the run's max_seq_length): verbose=False spares the run
    # transformers' warning that sentences longer than it "will result in indexing errors", which the training's
    # truncation prevents.
    ids = [i for row in tokenizer(sentences, add_special_tokens=False, verbose=False)["input_ids"] for i in row]
    share = ids.count(tokenizer.unk_token_id) / len(ids) if ids else 0.0
    if share < UNKNOWN_TOKENS_WARNING:
        return
    found = (f"the tokenizer of {tokenizer.name_or_path or 'this run'} ({type(tokenizer).__name__}) makes "
             f"{share:.0%} of the tokens of {what} {tokenizer.unk_token}")
    if len(tokenizer) <= len(tokenizer.all_special_ids):
        raise ValueError(f"{found}: it has no vocabulary beyond its {len(tokenizer)} special tokens, which is what "
                         "transformers loads from a folder without tokenizer files (tokenizer.json, vocab.txt, ...); "
                         "copy the encoder's tokenizer files into the folder")
    if share >= UNKNOWN_TOKENS_ERROR:
        raise ValueError(f"{found}: it was not made for these sentences (a tokenizer of another language; or one "
                         "that lowercases, as BERT's does with do_lower_case, which takes Hangul apart into jamo its "
                         "vocabulary may not have; or sentences in decomposed form); use an encoder whose tokenizer "
                         "covers them")
    logger.warning("%s: sentences that differ only in those words look alike to the encoder", found)


def token_ids(tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int) -> list[list[int]]:
    """Sentences -> their token ids with the special tokens, truncated to max_length (no attention masks: the collator
    makes them): `tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]`.

    A `tokenizers`-backed tokenizer gets that call for the first sentence only, which sets its Rust backend's
    truncation, padding and special-token handling; the backend then encodes the rest directly, the same ids without the
    per-sentence `BatchEncoding` bookkeeping (a quarter to a third of the tokenization time, bench/RESULTS.md).
    """
    if not texts:
        return []  # the tokenizer call fails on an empty batch (IndexError in transformers 5.25)
    call = dict(truncation=True, max_length=max_length, return_attention_mask=False, return_token_type_ids=False)
    direct = isinstance(tokenizer, TokenizersBackend) and type(tokenizer)._encode_plus is TokenizersBackend._encode_plus
    if not direct or len(texts) < 2:
        return tokenizer(texts, **call)["input_ids"]
    first = tokenizer(texts[:1], **call)["input_ids"]
    return first + [e.ids for e in tokenizer.backend_tokenizer.encode_batch_fast(texts[1:], add_special_tokens=True)]


def tokenize_rows(
    ds: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    text_columns: list[str],
    max_length: int,
    label_column: str | None = None,
    num_proc: int | None = None,
    desc: str = "Tokenizing",
    length_column: str | None = None,
) -> Dataset:
    """Tokenize once: -> Dataset(input_ids: n token lists per row[, labels: float]) for `SimCSECollator`.

    length_column: also store each row's token count (all its sentences) under this name, which `Trainer`'s
    `train_sampling_strategy="group_by_length"` sorts by (without it, Trainer would take the row's sentence count).
    """

    def encode(batch, rank: int | None):
        if rank is not None and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            # A worker of datasets' process pool (num_proc 2 or more). Ctrl-C reaches every process of the terminal's
            # job; the calling process answers it, where each worker printed a traceback of its own.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        encoded = [token_ids(tokenizer, batch[c], max_length) for c in text_columns]
        out = {"input_ids": [list(row) for row in zip(*encoded, strict=True)]}
        if label_column:
            out["labels"] = batch[label_column]
        if length_column:
            out[length_column] = [sum(map(len, row)) for row in out["input_ids"]]
        return out

    def tokenize(rows: Dataset, processes: int | None) -> Dataset:
        return rows.map(encode, batched=True, with_rank=True, num_proc=processes, remove_columns=rows.column_names,
                        desc=desc)

    if not (num_proc and num_proc > 1 and not ds.cache_files):
        return tokenize(ds, num_proc)
    folder = tempfile.mkdtemp(prefix="simcse-rows-")
    try:  # the copy the workers read, and the tokenized shards they write beside it
        return tokenize(file_backed(ds, folder), num_proc)
    except Exception as e:
        if (full := no_space(e)) is None:
            raise
        logger.warning("%s: no room for the rows that worker processes read and write (%s): tokenizing in this "
                       "process. Set TMPDIR to a folder on a larger disk to tokenize in several", folder, full.strerror)
        shutil.rmtree(folder, ignore_errors=True)
        return tokenize(ds, None)


def file_backed(ds: Dataset, folder: str) -> Dataset:
    """An in-memory dataset -> the same rows memory-mapped from an Arrow file in `folder`, which is removed at exit.

    `datasets.map` over several processes pickles each process's shard of an in-memory table with the whole table: 8
    processes got 8 copies of a KorNLI epoch's 69 MB, serialized one after the other by this process. A shard of a
    memory-mapped dataset travels as its file name (bench/RESULTS.md, "Tokenization in several processes").
    """
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    ds.save_to_disk(folder)
    return datasets.load_from_disk(folder)


def failed_write(error: BaseException, read_path: str | None = None) -> OSError | None:
    """The OSError that `error` was raised from where it is a write that failed: no room (`no_space`), a read-only
    disk, or a file or folder other than `read_path` (the one being read, if any) that this user may not write; else
    None."""
    if (found := no_space(error)) is not None:
        return found
    found = raised_within(error, OSError)
    if found is None or found.errno not in (errno.EROFS, errno.EACCES, errno.EPERM) or not found.filename:
        return None
    if found.errno != errno.EROFS and read_path and os.path.realpath(found.filename) == os.path.realpath(read_path):
        return None  # the source file itself: a read refused
    return found
