"""What a data source string names, and the error every data problem raises.

A *source* is one of
  * a local file or an http(s) URL, read by its extension: `.tsv` (tab-separated, header, quoting off: KorSTS and
    KorNLI contain unbalanced `"`), `.csv` (RFC 4180), `.json` (a list of objects) / `.jsonl`, `.parquet`, `.txt`
    (one sentence a line, column `text`); the text formats compressed too (`corpus.txt.gz`, `.bz2`, `.xz`);
  * a local folder that `datasets`' `Dataset.save_to_disk` wrote (one split);
  * a Hugging Face Hub dataset `owner/name[@revision][:config][:split]` (split defaults to `train`, revision to the
    default branch), e.g. `kakaobrain/kor_nli:multi_nli:train` or `klue/klue:sts:validation`; `@revision`, a branch,
    tag or commit, pins the data read.
Reading one is `data_loading`'s; this module imports neither `datasets` nor torch, so `hub/` (which names a run's Hub
datasets on its card) starts in a second.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass

import huggingface_hub.constants
from huggingface_hub.utils import HFValidationError, validate_repo_id

FILE_FORMATS = {".tsv": "csv", ".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet", ".txt": "text"}
# A text format's file compressed: its compression suffix -> the module that reads it (`gzip.open` and alike).
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "lzma"}


class DataError(ValueError):
    """Bad input data; the message names the source and the row. `hint`, where given, ends the message with what to
    do about it (kept apart so that a caller with a better one can say that instead: `problem`)."""

    def __init__(self, problem: str, hint: str = "") -> None:
        super().__init__(problem + hint)
        self.problem, self.hint = problem, hint


@dataclass(frozen=True)
class Source:
    """A parsed source string; `row(i)` names data row i (0-based) the way a user finds it in the file."""

    spec: str
    path: str | None = None  # local path or URL
    repo: str | None = None  # Hub dataset id
    revision: str | None = None  # of the Hub dataset: a branch, tag or commit (None: its default branch)
    config: str | None = None
    split: str = "train"

    @classmethod
    def parse(cls, spec: str) -> "Source":
        """A source string (see the module docstring) -> Source; DataError for one that names none of them."""
        if re.match(r"https?://", spec):
            return cls(spec, path=spec)
        local = os.path.expanduser(spec)  # "~/data/x.tsv" in a JSON file reaches no shell to expand it
        if file_suffixes(local)[0] in FILE_FORMATS or os.path.exists(local):
            return cls(spec, path=local)
        repo, *rest = spec.split(":")
        repo, at, revision = repo.partition("@")  # no repo id holds an "@"
        if repo.count("/") > 1 or len(rest) > 2 or not repo or (at and not revision):
            raise DataError(f"{spec!r} is neither a file (.tsv/.csv/.json/.jsonl/.parquet/.txt, the text ones "
                            "compressed too: .gz/.bz2/.xz), a URL, nor a Hub dataset "
                            "'owner/name[@revision][:config][:split]'")
        config = rest[0] if rest and rest[0] else None
        return cls(spec, repo=repo, revision=revision or None, config=config,
                   split=rest[1] if len(rest) == 2 else "train")

    @property
    def extension(self) -> str:
        """The file's format suffix (`.tsv` of `x.tsv` and of `x.tsv.gz`); "" for a Hub dataset."""
        return file_suffixes(self.path)[0] if self.path else ""

    @property
    def compression(self) -> str | None:
        """The file's compression suffix (`.gz` of `x.tsv.gz`), or None."""
        return file_suffixes(self.path)[1] if self.path else None

    def row(self, i: int) -> str:
        """Where row `i` (0-based, of the rows read) is, for an error: a 1-based line of a text file (TSV and CSV
        counting their header), else the row's index as `Dataset` and a JSON list count it (`ds[i]`)."""
        if self.extension in (".tsv", ".csv"):
            return f"{self.spec}, line {i + 2}"
        if self.extension in (".jsonl", ".txt"):
            return f"{self.spec}, line {i + 1}"
        return f"{self.spec}, row {i}"


# The start of a Git LFS pointer: what a repository that keeps a file in LFS gives in its place to a clone without Git
# LFS, or at the file's raw address.
LFS_POINTER = b"version https://git-lfs.github.com/spec/"


def is_lfs_pointer(path: str) -> bool:
    """Whether the file at `path` is a Git LFS pointer (some 130 bytes of text), not the file it stands for."""
    if os.path.getsize(path) >= 1024:
        return False
    with open(path, "rb") as f:
        return f.read(len(LFS_POINTER)) == LFS_POINTER

# A Hub page's address as a browser shows it: huggingface.co/<owner>/<name> (a model), .../datasets/<owner>/<name>; on
# hf.co, and on the Hub that HF_ENDPOINT names (a mirror) too.
HUB_HOSTS = ("huggingface.co", "hf.co")
HUB_PAGE = r"https?://(?:www\.)?(?:{hosts})/(datasets/)?([^/?#]+(?:/[^/?#]+)?)/?(?:[?#].*)?"


def hub_page_hint(address: str, wanted: str) -> str:
    """Where `address` is the address of a Hub model's or dataset's page, what to name instead of it where a `wanted`
    ("model" or "dataset") is asked for: its id, or that it is the other kind; else ""."""
    hosts = {*HUB_HOSTS, urllib.parse.urlsplit(huggingface_hub.constants.ENDPOINT).netloc}
    page = re.fullmatch(HUB_PAGE.format(hosts="|".join(map(re.escape, sorted(hosts - {""})))), address)
    if page is None or not is_repo_id(page.group(2)):
        return ""
    kind = "dataset" if page.group(1) else "model"
    if kind != wanted:
        return f"; that is the address of a Hub {kind}'s page, not of a {wanted}"
    return (f"; that is the address of a Hub {kind}'s page: name the {kind} by its id, {page.group(2)}"
            + ("[:config][:split]" if kind == "dataset" else ""))


def file_suffixes(path: str) -> tuple[str, str | None]:
    """A file path or URL -> (its format suffix, its compression suffix or None), lower case: `x.TSV.gz` ->
    (".tsv", ".gz"), `x.tsv` -> (".tsv", None); a URL's query is not part of them."""
    stem, suffix = os.path.splitext(path.split("?")[0])
    suffix = suffix.lower()
    if suffix in COMPRESSIONS:
        return os.path.splitext(stem)[1].lower(), suffix
    return suffix, None


def is_repo_id(name: str) -> bool:
    """Whether `name` has the form of a Hub repo id (`name` or `owner/name`)."""
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True
