"""Sources, the published triplet construction, validation errors and the shared benchmark files."""

import errno
import gzip
import importlib
import json
import logging
import os
import re
import shutil
import signal
import tempfile
import unicodedata

import datasets
import huggingface_hub
import pytest

from conftest import SAMPLE, SHARED_DATA, cli
from data_sources import COMPRESSIONS
from hub.card import hub_datasets
from data_loading import (NO_NETWORK, DataError, Source, _check_text_file, _refuse_stand_in, check_known_tokens,
                          check_model_source, column_values, failed_write, load_nli_triplets, load_sentence_columns,
                          load_source, load_sts, model_load_error, parse_named, rows_digest, shared_pairs)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_rows_digest_follows_the_rows_not_the_dataset_object():
    rows = {"sent0": ["가 나", "다"], "sent1": ["라", "마 바"]}
    digest = rows_digest(datasets.Dataset.from_dict(rows))
    assert digest == rows_digest(datasets.Dataset.from_dict({k: list(v) for k, v in rows.items()}))
    longer = datasets.Dataset.from_dict({"sent0": ["x", *rows["sent0"]], "sent1": ["y", *rows["sent1"]]})
    assert digest == rows_digest(longer.select([1, 2]))
    others = [{"sent0": ["가 나", "다"], "sent1": ["라", "마  바"]},  # one character
              {"sent0": ["다", "가 나"], "sent1": ["마 바", "라"]},  # the order of the rows
              {"sent0": ["가", " 나다"], "sent1": rows["sent1"]},  # where one value ends and the next begins
              {"hard_neg": rows["sent0"], "sent1": rows["sent1"]}]  # a column's name
    assert len({digest, *(rows_digest(datasets.Dataset.from_dict(o)) for o in others)}) == 1 + len(others)


def test_source_parsing():
    assert Source.parse("kakaobrain/kor_nli:multi_nli:train") == Source(
        "kakaobrain/kor_nli:multi_nli:train", repo="kakaobrain/kor_nli", config="multi_nli", split="train")
    assert Source.parse("klue/klue:sts:validation").split == "validation"
    assert Source.parse("some/dataset").config is None
    url = "https://example.org/KorSTS/sts-test.tsv"
    assert Source.parse(url).path == url and Source.parse(url).extension == ".tsv"
    assert Source.parse("data/x.tsv").row(0) == "data/x.tsv, line 2"
    for bad in ("a/b/c", "a/b/c/d", "a/b:c:d:e", "a/b@", "@v1", ":c"):  # not owner/name[@revision][:config][:split]
        with pytest.raises(DataError, match="neither a file"):
            Source.parse(bad)
    assert parse_named("korsts-test=https://x.org/sts-test.tsv") == ("korsts-test", "https://x.org/sts-test.tsv")
    for unnamed in ("https://x.org/sts-test.tsv", "https://x.org/sts-test.tsv?raw=true", "=sts.tsv", "a="):
        with pytest.raises(DataError, match="expected 'name=source'"):
            parse_named(unnamed)
    assert parse_named("t=https://x.org/sts-test.tsv?raw=true") == ("t", "https://x.org/sts-test.tsv?raw=true")
    assert parse_named("KorSTS 시험 v1.0=sts.tsv") == ("KorSTS 시험 v1.0", "sts.tsv")
    for name in ("a|b", " lead", "trail ", "-x"):  # a '|' would split a row of the card's tables
        with pytest.raises(DataError, match="a set name is letters, digits"):
            parse_named(f"{name}=sts.tsv")
    # An STS set from the Hub names its split: 'klue/klue:sts' would have scored KLUE-STS train (checked before
    # loading).
    with pytest.raises(DataError, match="klue/klue:sts: name the split of a Hub STS set"):
        load_sts("klue/klue:sts")


def test_a_home_relative_path_is_read_from_home(tmp_path, monkeypatch):
    """A JSON file's "~/..." reaches no shell: it was 'file not found' though the file was there."""
    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copy(f"{SAMPLE}/sts.tsv", tmp_path / "sts.tsv")
    assert len(load_sts("~/sts.tsv")) == len(load_sts(f"{SAMPLE}/sts.tsv"))
    assert Source.parse("~/sts.tsv").row(0) == "~/sts.tsv, line 2"  # named as the user wrote it


def test_tsv_quoting_is_off(tmp_path):
    path = write(tmp_path, "q.tsv",
                 'sentence1\tsentence2\tscore\n"그는 말했다\t그가 말했다\t4.0\n둘째 문장\t"셋째\t1.0\n')
    ds = load_sts(path)
    assert len(ds) == 2 and ds["sentence1"][0] == '"그는 말했다' and ds["score"] == [4.0, 1.0]


def test_published_triplet_construction(tmp_path):
    path = write(tmp_path, "nli.tsv", "sentence1\tsentence2\tgold_label\n"
                 "P1\tE1\tentailment\nP1\tC1\tcontradiction\nP2\tE2\tentailment\nP1\tE1b\tentailment\n"
                 "P3\tC3\tcontradiction\nP2\tN2\tneutral\nP2\t\"C2\"\tcontradiction\nP4\tX\t-\n"
                 "\"P5\"\tE5\tentailment\nP5\tC5\tcontradiction\n")
    ds = load_nli_triplets([path])
    assert ds.to_dict() == {"sent0": ["P1", "P2"], "sent1": ["E1b", "E2"], "hard_neg": ["C1", '"C2"']}
    # Quotes go from premises too, before they are grouped: "P5" and P5 are one premise.
    assert load_nli_triplets([path], strip_quotes=True).to_dict() == {
        "sent0": ["P1", "P2", "P5"], "sent1": ["E1b", "E2", "E5"], "hard_neg": ["C1", "C2", "C5"]}


def test_integer_labels_digit_strings_and_several_sources(tmp_path):
    a = write(tmp_path, "a.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"premise": "전제", "hypothesis": "함의", "label": 0}, {"premise": "전제", "hypothesis": "모순", "label": 2}]))
    b = write(tmp_path, "b.csv", "premise,hypothesis,label\n다른 전제,함의2,0\n다른 전제,모순2,2\n")
    # Digits as strings: "1" is neutral, so the neutral hypothesis after the contradiction takes no place of it.
    c = write(tmp_path, "c.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"premise": "셋째 전제", "hypothesis": "함의3", "label": "0"},
        {"premise": "셋째 전제", "hypothesis": "모순3", "label": "2"},
        {"premise": "셋째 전제", "hypothesis": "중립3", "label": " 1 "}]))
    ds = load_nli_triplets([a, b, c])
    assert ds.to_dict() == {"sent0": ["전제", "다른 전제", "셋째 전제"], "sent1": ["함의", "함의2", "함의3"],
                            "hard_neg": ["모순", "모순2", "모순3"]}


def test_class_label_integers_are_read_through_their_names(tmp_path):
    """A Hub-style parquet whose ClassLabel orders its names otherwise: its 0 is a contradiction (read as entailment
    before, so the positive was the contradiction and the hard negative the neutral hypothesis). -1, SNLI's pair
    without a gold label, is left out, not read as the last name (entailment here, which would replace the positive)."""
    features = datasets.Features({"premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["contradiction", "neutral", "entailment"])})
    path = str(tmp_path / "nli.parquet")
    datasets.Dataset.from_dict({"premise": ["전제"] * 4, "hypothesis": ["모순", "함의", "중립", "무표"],
                                "label": [0, 2, 1, -1]}, features=features).to_parquet(path)
    ds = load_nli_triplets([path])
    assert ds[:] == {"sent0": ["전제"], "sent1": ["함의"], "hard_neg": ["모순"]}


def test_a_class_label_integer_without_a_name_is_named_with_its_row(tmp_path):
    """A parquet's ClassLabel column holding an integer past its names (datasets casts it without a check): the
    unknown label, with its row as `ds[i]` counts it, not an IndexError."""
    path = str(tmp_path / "nli.parquet")
    ds = datasets.Dataset.from_dict({"premise": ["전제"] * 3, "hypothesis": ["모순", "함의", "?"], "label": [0, 2, 3]})
    ds.cast_column("label", datasets.ClassLabel(names=["contradiction", "neutral", "entailment"])).to_parquet(path)
    with pytest.raises(DataError, match=r"nli.parquet, row 2: unknown NLI label 3 \(expected"):
        load_nli_triplets([path])


@pytest.mark.parametrize("text, message", [
    ("sentence1\tsentence2\tgold_label\nP\tH\tentailment\nP\tH2\tmaybe\n", "line 3: unknown NLI label 'maybe'"),
    ("sentence1\tsentence2\tgold_label\nP\t\tentailment\n", "line 2: empty or missing sentence in column 'sentence2'"),
    # Web text's zero-width space alone: no words (it was trained on, as [UNK] or a bare "▁" piece).
    ("sentence1\tsentence2\tgold_label\nP\t\u200b \tentailment\n",
     "line 2: empty or missing sentence in column 'sentence2' (only '\\u200b ': invisible characters, no words)"),
    ("sentence1\thyp\tgold_label\nP\tH\tentailment\n", "no hypothesis column"),
    ("sentence1\tsentence2\tgold_label\nP\tH\tneutral\n", "no premise has both"),
])
def test_nli_errors_name_file_and_row(tmp_path, text, message):
    path = write(tmp_path, "bad.tsv", text)
    with pytest.raises(DataError) as e:
        load_nli_triplets([path])
    assert path in str(e.value) and message in str(e.value)


def test_a_source_of_other_rows_read_as_nli_names_train_format():
    """train_format is "nli" by default: a .txt file of sentences for unsupervised SimCSE, without it, was refused as
    having no premise column, with no word of the setting that reads it."""
    with pytest.raises(DataError) as e:
        load_nli_triplets([f"{SAMPLE}/sentences.txt"])
    assert str(e.value) == (f'{SAMPLE}/sentences.txt: no premise column (looked for premise, sentence1; found text); '
                            'train_format "nli", the default, reads premise, hypothesis and label columns: set '
                            '"train_format" to "text" for one sentence a row (unsupervised SimCSE; a .txt file), or to '
                            '"pair" or "triplet" for rows of 2 or 3 sentences')


@pytest.mark.parametrize("rows, message", [
    ("5.5", "line 3: STS score 5.5 is outside 0-5"),
    ("-0.1", "line 3: STS score -0.1 is outside 0-5"),
    ("high", "line 3: STS score 'high' is not a number"),
    ("nan", "line 3: STS score 'nan' is not a number"),  # it was "nan is outside 0-5"
    ("1.0", "every pair has the gold score 1.0; correlations need scores that differ"),  # they were NaN
])
def test_sts_score_errors(tmp_path, rows, message):
    path = write(tmp_path, "s.tsv", f"sentence1\tsentence2\tscore\nA\tB\t1.0\nC\tD\t{rows}\n")
    with pytest.raises(DataError, match=message):
        load_sts(path)


def test_missing_and_malformed_files(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="nope.tsv: file not found$"):
        load_sts(str(tmp_path / "nope.tsv"))
    # A config's relative paths are read from where the command runs, not the config's folder.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=f"^sample_data/nli.tsv: file not found in {re.escape(os.getcwd())} \\(a "
                                        "relative path is read"):
        load_sts("sample_data/nli.tsv")
    with pytest.raises(DataError, match="file not found in .*; a pattern is not expanded: list the files"):
        load_sts("sample_data/*.tsv")
    path = write(tmp_path, "m.tsv", "sentence1\tsentence2\tscore\nA\tB\t1.0\tEXTRA\tMORE\n")
    with pytest.raises(DataError, match="m.tsv, line 2: 5 fields, the header has 3"):
        load_sts(path)
    with pytest.raises(DataError, match="unknown file type|neither"):
        load_sts(write(tmp_path, "x.xml", "<a/>"))
    # It was "unknown file type ''".
    with pytest.raises(DataError, match=f"{re.escape(str(tmp_path))}: a folder that is no dataset saved with "
                                        "save_to_disk; name its files"):
        load_sts(str(tmp_path))


def test_a_delimited_file_of_another_separator_is_named(tmp_path):
    """A .csv that Excel saved with semicolons (a European locale), or a TSV saved as .csv, read as one column: the
    error was "no sentence1 column (looked for sentence1; found sentence1;sentence2;score)"."""
    told = {";": "semicolons; a .tsv is read with tabs between fields and a .csv with commas: save it with one of "
                 "those", "\t": "tabs, so name it .tsv", ",": "commas, so name it .csv"}
    for name, separator in (("semi.csv", ";"), ("tabs.csv", "\t"), ("commas.tsv", ",")):
        header, said = separator.join(["sentence1", "sentence2", "score"]), told[separator]
        path = write(tmp_path, name, f"{header}\n가{separator}나{separator}1.0\n")
        with pytest.raises(DataError, match=f"^{re.escape(path)}, line 1: one column, {re.escape(repr(header))}: the "
                                            f"file is separated by {re.escape(said)}$"):
            load_sts(path)
    path = write(tmp_path, "pairs.csv", "sentence1;sentence2\n가;나\n")  # two columns are two too
    with pytest.raises(DataError, match="line 1: one column, 'sentence1;sentence2': the file is separated by semicol"):
        load_sentence_columns([path], ["sentence1", "sentence2"])
    # One column of its own: a sentence corpus.
    path = write(tmp_path, "corpus.csv", "text\n\"가, 나\"\n다; 라\n")
    assert list(load_sentence_columns([path], ["text"])["sent0"]) == ["가, 나", "다; 라"]


def test_blank_lines_between_the_rows_of_a_delimited_file_are_skipped(tmp_path):
    path = write(tmp_path, "gaps.tsv", "sentence1\tsentence2\tscore\n가\t나\t1.0\n\n다\t라\t2.0\n\n")
    assert load_sts(path)["score"][:] == [1.0, 2.0]


def test_a_dataset_saved_with_save_to_disk_reads_as_its_rows(tmp_path):
    """The folder `Dataset.save_to_disk` writes was "a folder; name its files", and its files (.arrow) no source. It
    gives the rows of the file it was made from, names a bad row by its index, writes nothing into the folder (where
    tokenizing a memory-mapped dataset writes its cache files), and a DatasetDict's folder names its splits'."""
    tsv = os.path.join(SAMPLE, "nli.tsv")
    rows = load_source(tsv)[0]
    rows.save_to_disk(str(tmp_path / "nli"))
    saved = sorted(os.listdir(tmp_path / "nli"))
    loaded, source = load_source(str(tmp_path / "nli"))
    assert loaded.to_list() == rows.to_list() and not loaded.cache_files
    assert load_nli_triplets([str(tmp_path / "nli")]).to_list() == load_nli_triplets([tsv]).to_list()
    loaded.map(lambda batch: batch, batched=True)
    assert sorted(os.listdir(tmp_path / "nli")) == saved
    broken = rows.to_list()
    broken[4]["sentence2"] = ""
    datasets.Dataset.from_list(broken).save_to_disk(str(tmp_path / "broken"))
    with pytest.raises(DataError, match=f"^{re.escape(str(tmp_path / 'broken'))}, row 4: empty or missing sentence in "
                                        "column 'sentence2'$"):
        load_nli_triplets([str(tmp_path / "broken")])
    datasets.DatasetDict(train=rows, validation=rows.select(range(3))).save_to_disk(str(tmp_path / "nli-splits"))
    with pytest.raises(DataError, match=re.escape(f"{tmp_path}/nli-splits: a DatasetDict that save_to_disk wrote; name "
                                                  f"the folder of one of its splits: {tmp_path}/nli-splits/train, "
                                                  f"{tmp_path}/nli-splits/validation")):
        load_source(str(tmp_path / "nli-splits"))
    assert load_source(str(tmp_path / "nli-splits" / "validation"))[0].to_list() == rows.to_list()[:3]


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz"])
def test_compressed_files_read_as_their_text(tmp_path, suffix):
    """A compressed TSV, JSON Lines or text file was "unknown file type '.gz'": a sentence corpus or KorNLI is often
    kept compressed. Each reads as its text does, and a problem in it names the line as in the text."""
    compress = importlib.import_module(COMPRESSIONS[suffix]).compress
    for name in ("nli.tsv", "sts.tsv", "sentences.txt"):
        raw = open(os.path.join(SAMPLE, name), "rb").read()
        (tmp_path / f"{name}{suffix}").write_bytes(compress(raw))
    packed = str(tmp_path / f"nli.tsv{suffix}")
    assert load_nli_triplets([packed])[:] == load_nli_triplets([os.path.join(SAMPLE, "nli.tsv")])[:]
    assert load_sts(str(tmp_path / f"sts.tsv{suffix}"))[:] == load_sts(os.path.join(SAMPLE, "sts.tsv"))[:]
    sentences = load_sentence_columns([str(tmp_path / f"sentences.txt{suffix}")], ["text"])
    assert sentences[:] == load_sentence_columns([os.path.join(SAMPLE, "sentences.txt")], ["text"])[:]
    rows = [{"sentence1": "가", "sentence2": "나", "score": 1.0}, {"sentence1": "다", "sentence2": "라", "score": 4.0}]
    jsonl = tmp_path / f"sts.jsonl{suffix}"
    jsonl.write_bytes(compress("\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode()))
    assert load_sts(str(jsonl))["score"] == [1.0, 4.0]
    # Problems inside name the line of the text, as an uncompressed file's do.
    bad = tmp_path / f"bad.tsv{suffix}"
    bad.write_bytes(compress("sentence1\tsentence2\tscore\nA\tB\t1.0\nC\tD\t5.5\n".encode()))
    with pytest.raises(DataError, match=f"bad.tsv{re.escape(suffix)}, line 3: STS score 5.5 is outside 0-5"):
        load_sts(str(bad))
    cp949 = tmp_path / f"cp949.tsv{suffix}"
    cp949.write_bytes(compress("sentence1\tsentence2\tscore\n한 남자가\t남자가\t1\n".encode("cp949")))
    with pytest.raises(DataError, match=f"cp949.tsv{re.escape(suffix)}, line 2: not UTF-8 text .* CP949"):
        load_sts(str(cp949))
    # A file whose name says compressed but is not, and the compressed forms that are no text format.
    plain = tmp_path / f"plain.tsv{suffix}"
    plain.write_text("sentence1\tsentence2\tscore\nA\tB\t1.0\n")
    with pytest.raises(DataError, match=f"plain.tsv{re.escape(suffix)}: could not be read: "):
        load_sts(str(plain))
    with pytest.raises(DataError, match=f"data{re.escape(suffix)}: unknown file type '{re.escape(suffix)}'; use one "
                                        r"of \[.*\] \(the text formats compressed too: .gz, .bz2, .xz\)"):
        load_sts(write(tmp_path, f"data{suffix}", "x"))
    with pytest.raises(DataError, match="a Parquet file compresses its columns itself; name it uncompressed"):
        load_sts(write(tmp_path, f"x.parquet{suffix}", "x"))


def test_a_web_page_or_an_lfs_pointer_in_place_of_a_data_file_is_named_as_such(tmp_path):
    """The address of GitHub's page for KorSTS (.../blob/...) in place of the file's: the page's HTML was read as rows,
    "line 5: 3 fields, the header has 1", or, as a text file, as sentences to train on."""
    html = "\ufeff  <!DOCTYPE html>\n<html lang=\"en\">\n<head><title>sts-test.tsv</title></head>\n<body>\n" \
           "<td>genre\tfilename\tyear</td>\n</body></html>\n"
    said = ": an HTML page, not a {ext} file (a web page that shows the file is not the file)"
    for ext, load in ((".tsv", load_sts), (".txt", lambda path: load_sentence_columns([path], ["text"]))):
        page = write(tmp_path, f"page{ext}", html)
        with pytest.raises(DataError) as raised:
            load(page)
        assert str(raised.value) == page + said.format(ext=ext)
    url = "https://github.com/kakaobrain/KorNLUDatasets/blob/master/KorSTS/sts-test.tsv"
    with pytest.raises(DataError) as raised:
        _refuse_stand_in(str(tmp_path / "page.tsv"), Source.parse(url))
    assert str(raised.value) == url + said.format(ext=".tsv") + ("; the file itself is at https://raw.githubusercontent"
                                                                 ".com/kakaobrain/KorNLUDatasets/master/KorSTS/"
                                                                 "sts-test.tsv")
    # The raw address of a file kept in Git LFS gives its pointer; a Parquet one was pyarrow's "magic bytes not found".
    pointer = "version https://git-lfs.github.com/spec/v1\noid sha256:" + "4d7a2146" * 8 + "\nsize 12345\n"
    for ext, load in ((".parquet", load_sts), (".txt", lambda path: load_sentence_columns([path], ["text"]))):
        with pytest.raises(DataError, match=re.escape(f"pointer{ext}: a Git LFS pointer, not the {ext} file")):
            load(write(tmp_path, f"pointer{ext}", pointer))


PAGE = "; that is the address of a Hub {kind}'s page"


@pytest.mark.parametrize("address, as_data, as_model", [
    ("https://huggingface.co/datasets/klue/klue", PAGE.format(kind="dataset") + ": name the dataset by its id, "
     "klue/klue[:config][:split]", PAGE.format(kind="dataset") + ", not of a model"),
    ("https://hf.co/klue/bert-base/", PAGE.format(kind="model") + ", not of a dataset",
     PAGE.format(kind="model") + ": name the model by its id, klue/bert-base"),
    ("https://github.com/kakaobrain/KorNLUDatasets", "", ""),  # not the Hub: nothing to say of it
])
def test_a_hub_page_address_is_told_by_the_id_to_give(address, as_data, as_model):
    """An address copied from a browser's bar was "unknown file type None" (a page as data) or "not a Hub model id"
    (as the encoder, or as the repo of a push), without a word of what to give instead."""
    from hub.push import PushError, check_repo_id

    with pytest.raises(DataError) as raised:
        load_sts(address)
    assert str(raised.value).endswith(f"(the text formats compressed too: {', '.join(COMPRESSIONS)}){as_data}")
    with pytest.raises(DataError) as raised:
        check_model_source(address)
    assert str(raised.value) == f"{address}: no such folder, and not a Hub model id (name or owner/name){as_model}"
    with pytest.raises(PushError) as raised:
        check_repo_id(address)
    assert str(raised.value).startswith(f"repo id '{address}' is not of the form <owner>/<name> (")
    assert str(raised.value).endswith(f"not ending in '.git'){as_model}")


def test_a_model_folders_modules_are_read_and_its_checkpoints_and_hidden_folders_are_not(tmp_path):
    """check_model_source looks at the files a load reads, its modules' (1_Pooling/) too, and not at the checkpoint-*
    folders of a run's folder or at hidden ones (.git, .cache), whose damage does not keep the model from loading."""
    (tmp_path / "config.json").write_text("{}")
    for skipped in ("checkpoint-3", ".cache"):
        (tmp_path / skipped).mkdir()
        (tmp_path / skipped / "model.safetensors").symlink_to(tmp_path / "gone")
    check_model_source(str(tmp_path))
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").symlink_to(tmp_path / "gone")
    with pytest.raises(DataError) as raised:
        check_model_source(str(tmp_path))
    assert str(raised.value) == f"{tmp_path}/1_Pooling/config.json: a link to {tmp_path}/gone, which is not there"


def test_a_download_without_room_or_right_to_write_in_the_hub_cache_is_told_so(tmp_path, monkeypatch):
    """model_load_error says where a download found no room (anywhere: the Hub client does not always name the file) or
    no right to write in the Hub cache, and which setting moves the cache; other errors are transformers' own."""
    cache, elsewhere = tmp_path / "hub", tmp_path / "elsewhere"
    full = OSError(errno.ENOSPC, "No space left on device")
    assert model_load_error(["me/model"], full, str(cache)) == (
        f"me/model: could not be downloaded: No space left on device in the Hub cache, {cache}; free space there, or "
        "set cache_dir to a folder on a larger disk")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    refused = OSError(errno.EACCES, "Permission denied", str(cache / "models--me--model"))
    assert model_load_error(["me/model"], refused) == (
        f"me/model: could not be downloaded: Permission denied: {cache}/models--me--model (the Hub cache, {cache}); "
        "set HF_HUB_CACHE (or HF_HOME) to a folder this user may write to")
    refused = OSError(errno.EACCES, "Permission denied", str(elsewhere))  # not the cache's: said as it is
    assert model_load_error(["me/model"], refused) == (
        f"me/model: no such folder here, so read as a Hub id: [Errno 13] Permission denied: '{elsewhere}'")
    assert model_load_error([str(tmp_path)], full) == f"{tmp_path}: [Errno 28] No space left on device"  # no download


def test_a_failed_write_is_a_full_disk_a_read_only_one_or_a_named_file_refused(tmp_path):
    """failed_write finds, in an error's chain, a full disk, a read-only disk or a file this user may not write (other
    than the one being read, whose refusal is a failed read); a missing file, or a refusal that names no file, is not
    one."""
    full = OSError(errno.ENOSPC, "No space left on device")
    assert failed_write(full) is full
    refused = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "x"))
    try:
        raise RuntimeError("the load failed") from refused
    except RuntimeError as e:
        assert failed_write(e) is refused
    assert failed_write(refused, read_path=str(tmp_path / "x")) is None
    read_only = OSError(errno.EROFS, "Read-only file system", str(tmp_path / "x"))
    assert failed_write(read_only, read_path=str(tmp_path / "x")) is read_only
    assert failed_write(FileNotFoundError(errno.ENOENT, "No such file or directory", str(tmp_path / "y"))) is None
    assert failed_write(PermissionError(errno.EACCES, "Permission denied")) is None
    assert failed_write(RuntimeError("no OSError")) is None


def test_a_page_address_of_the_hub_that_hf_endpoint_names_is_told_too(monkeypatch):
    """A mirror's page (HF_ENDPOINT=https://hf-mirror.com) was "unknown file type None" without a word of the id."""
    import huggingface_hub.constants

    address = "https://hf-mirror.com/datasets/klue/klue"
    with pytest.raises(DataError) as raised:
        load_sts(address)
    assert PAGE.format(kind="dataset") not in str(raised.value)  # another site than the Hub this process uses
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "https://hf-mirror.com")
    with pytest.raises(DataError) as raised:
        load_sts(address)
    assert str(raised.value).endswith(PAGE.format(kind="dataset") + ": name the dataset by its id, "
                                      "klue/klue[:config][:split]")


def test_text_lines_and_empty_line(tmp_path):
    ds = load_sentence_columns([os.path.join(SAMPLE, "sentences.txt")], ["text"])
    assert ds.column_names == ["sent0"] and len(ds) == 25
    path = write(tmp_path, "t.txt", "첫 문장\n\n셋째 문장\n")
    with pytest.raises(DataError, match="t.txt, line 2: empty") as e:
        load_sentence_columns([path], ["text"])
    assert "without blank lines" in str(e.value)  # and how to drop them
    # A byte-order mark (files saved by Windows editors) is not part of the first sentence.
    path = write(tmp_path, "bom.txt", "\ufeff첫 문장\r\n둘째 문장\r\n")
    assert list(load_sentence_columns([path], ["text"])["sent0"]) == ["첫 문장", "둘째 문장"]


def test_missing_sentence_columns_name_what_was_found_and_the_setting(tmp_path):
    path = write(tmp_path, "pairs.tsv", "문장1\t문장2\n첫 문장\t둘째 문장\n")
    with pytest.raises(DataError, match=r"pairs.tsv: no sentence \(sent0\) column \(looked for sent0, anchor; found "
                                        r"문장1, 문장2\); sentence_columns names a source's 2 sentence column\(s\), in "
                                        "order"):
        load_sentence_columns([path], ["sent0", "sent1"])
    assert list(load_sentence_columns([path], ["문장1", "문장2"])["sent1"]) == ["둘째 문장"]


def test_sentence_transformers_column_names_read_as_simcses(tmp_path):
    """A triplet or pair set in sentence-transformers' layout (anchor / positive / negative, as its Hub datasets have
    them) reads without sentence_columns; a column of SimCSE's name comes first."""
    path = write(tmp_path, "st.jsonl", json.dumps({"anchor": "가", "positive": "나", "negative": "다"}) + "\n")
    assert load_sentence_columns([path], ["sent0", "sent1", "hard_neg"]).to_list() == [
        {"sent0": "가", "sent1": "나", "hard_neg": "다"}]
    assert load_sentence_columns([path], ["sent0", "sent1"]).to_list() == [{"sent0": "가", "sent1": "나"}]
    both = write(tmp_path, "both.jsonl", json.dumps({"anchor": "가", "sent0": "라", "positive": "나"}) + "\n")
    assert load_sentence_columns([both], ["sent0", "sent1"]).to_list() == [{"sent0": "라", "sent1": "나"}]
    with pytest.raises(DataError, match=r"no sentence \(a\) column \(looked for a; found anchor, positive, negative\)"):
        load_sentence_columns([path], ["a", "positive"])


def test_the_columns_read_from_each_source_are_told(tmp_path):
    """The columns tried after those named make others read (a .txt file's `text` for a named `premise`): the card
    said the named ones."""
    st = write(tmp_path, "st.jsonl", json.dumps({"anchor": "가", "positive": "나"}) + "\n")
    own = write(tmp_path, "own.jsonl", json.dumps({"sent0": "다", "sent1": "라"}) + "\n")
    read = {}
    assert len(load_sentence_columns([st, own], ["sent0", "sent1"], read_columns=read)) == 2
    assert read == {st: ["anchor", "positive"], own: ["sent0", "sent1"]}
    lines = write(tmp_path, "lines.txt", "가\n나\n")
    load_sentence_columns([lines], ["premise"], read_columns=read)
    assert read[lines] == ["text"]


def test_files_not_in_utf8_name_the_line_and_the_encoding(tmp_path):
    """Korean text saved by Windows tools is CP949 (or, from Excel's 'Unicode Text', UTF-16); a .jsonl in CP949 was read
    without complaint and failed later in a traceback."""
    lines = ["sentence1\tsentence2\tscore"] + [f"한 남자가 {i}번 먹는다.\t남자가 먹는다.\t{i % 5}" for i in range(40)]
    whole = tmp_path / "cp949.tsv"
    whole.write_bytes("\n".join(lines).encode("cp949"))
    with pytest.raises(DataError, match=r"cp949.tsv, line 2: not UTF-8 text \(byte 0xc7\); it reads as CP949/EUC-KR "
                       r"\('한 남자가 0번 먹는다.\\t.*`iconv -f cp949 -t utf-8 \S+cp949.tsv > NEW_FILE`"):
        load_sts(str(whole))
    jsonl = tmp_path / "cp949.jsonl"
    row = json.dumps({"sentence1": "가", "sentence2": "나", "score": 1}, ensure_ascii=False)
    jsonl.write_bytes(row.encode("cp949"))
    with pytest.raises(DataError, match="cp949.jsonl, line 1: not UTF-8 text .* CP949"):
        load_sts(str(jsonl))
    # One line in another encoding, found wherever the file's chunks are cut.
    mixed = tmp_path / "one_line.tsv"
    mixed.write_bytes(b"\n".join(line.encode("cp949" if n == 30 else "utf-8") for n, line in enumerate(lines)))
    newline = len("\n".join(lines[:30]).encode())  # a chunk of this size: the second starts with that line's newline
    for chunk_bytes in (1, 2, 7, 64, newline, 1 << 24):
        with pytest.raises(DataError, match=r"one_line.tsv, line 31: not UTF-8 .*'한 남자가 29번 먹는다"):
            _check_text_file(str(mixed), Source.parse(str(mixed)), chunk_bytes)
    cut = tmp_path / "cut.tsv"
    cut.write_bytes("\n".join(lines[:3]).encode() + "\n한".encode()[:-1])  # the last character's last byte is missing
    with pytest.raises(DataError, match="cut.tsv, line 4: not UTF-8 text .the file ends inside a character."):
        load_sts(str(cut))
    utf16 = tmp_path / "excel.tsv"
    utf16.write_bytes("\n".join(lines).encode("utf-16"))
    with pytest.raises(DataError, match="excel.tsv, line 1: not UTF-8 text .* UTF-16 .*iconv -f utf-16"):
        load_sts(str(utf16))


def test_decomposed_hangul_is_warned_of(tmp_path, caplog):
    """Korean in NFD (as macOS writes file names): BERT's WordPiece with do_lower_case false makes unknown tokens of
    it, so a run would train on [UNK]s without a word."""
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "한", "남자", "##가", "."]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab))
    wordpiece = BertTokenizerFast(str(tmp_path / "vocab.txt"), do_lower_case=False)
    composed, decomposed = "한 남자가.", unicodedata.normalize("NFD", "한 남자가.")
    assert wordpiece.tokenize(composed) == ["한", "남자", "##가", "."]
    assert wordpiece.tokenize(decomposed) == ["[UNK]", "[UNK]", "."]
    path = write(tmp_path, "s.tsv",
                 f"sentence1\tsentence2\tscore\n{composed}\tㅋㅋ 웃기다\t1\n{decomposed}\t{decomposed}\t2\n")
    with caplog.at_level("WARNING", logger="data_loading"):
        ds = load_sts(path)
    assert ds["sentence1"][1] == decomposed  # warned of, not changed
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2 and "1 of 2 sentences in column 'sentence1' (the first: line 3)" in said[0]
    assert "decomposed form (NFD" in said[0] and "unicodedata.normalize('NFC'" in said[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="data_loading"):
        load_sts(write(tmp_path, "nfc.tsv", f"sentence1\tsentence2\tscore\n{composed}\tㅋㅋ 웃기다\t1\n가\t나\t2\n"))
    assert caplog.records == []  # composed Hangul and compatibility jamo (ㅋㅋ) are ordinary text


def test_a_tokenizer_that_knows_too_few_of_the_sentences_tokens_is_named(tmp_path, caplog):
    """transformers loads a folder without tokenizer files as a tokenizer of special tokens only, which made every
    sentence [CLS] [UNK]... [SEP] and trained without a word; a tokenizer of another script does nearly that."""
    from transformers import BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    (tmp_path / "vocab.txt").write_text("\n".join(specials + ["한", "남자", "##가", "."]))
    wordpiece = BertTokenizerFast(str(tmp_path / "vocab.txt"), do_lower_case=False, name_or_path="enc")
    with caplog.at_level("WARNING", logger="data_loading"):
        check_known_tokens(wordpiece, ["한 남자가.", "한 남자가."], "the training sentences")
        assert caplog.records == []
        # [UNK] for 밥을 and 먹는다: 2 of the 10 tokens, special tokens not counted.
        check_known_tokens(wordpiece, ["한 남자가.", "한 남자가 밥을 먹는다."], "the training sentences")
        check_known_tokens(wordpiece, ["한 남자가."] * 4 + ["한 남자 밥."], "the dev sentences")  # 1 of 20: warned
    assert [r.getMessage() for r in caplog.records] == [
        f"the tokenizer of enc ({type(wordpiece).__name__}) makes {share}% of the tokens of the {which} sentences "
        "[UNK]: sentences that differ only in those words look alike to the encoder"
        for share, which in ((20, "training"), (5, "dev"))]
    with pytest.raises(ValueError, match=r"makes 50% of the tokens of the STS sentences"):  # half: an error
        check_known_tokens(wordpiece, ["한 밥"], "the STS sentences")
    with pytest.raises(ValueError, match=r"makes 67% of the tokens of the STS sentences \[UNK\]: it was not made for "
                                         r"these sentences \(a tokenizer of another language"):
        check_known_tokens(wordpiece, ["밥을 먹는다."], "the STS sentences")
    # Lowercasing (do_lower_case, BERT's default) decomposes Hangul (NFD): a Korean vocabulary loaded without
    # do_lower_case false makes [UNK]s of composed text too.
    lowercasing = BertTokenizerFast(str(tmp_path / "vocab.txt"), do_lower_case=True, name_or_path="enc")
    with pytest.raises(ValueError, match=r"makes 67% .*: it was not made for these sentences .* one that lowercases"):
        check_known_tokens(lowercasing, ["한 남자가."], "the training sentences")
    (tmp_path / "vocab.txt").write_text("\n".join(specials))
    empty = BertTokenizerFast(str(tmp_path / "vocab.txt"), name_or_path="enc")
    with pytest.raises(ValueError, match=r"makes 100% of .*: it has no vocabulary beyond its 5 special tokens, which "
                                         r"is what transformers loads from a folder without tokenizer files"):
        check_known_tokens(empty, ["한 남자가."], "the training sentences")


def test_counting_unknown_tokens_does_not_warn_of_sentences_longer_than_max_length(tmp_path, caplog, monkeypatch):
    """The count tokenizes whole sentences: transformers warned that those longer than `model_max_length` (a run's
    max_seq_length) "will result in indexing errors", on every run whose first rows held one, though training cuts
    them to it."""
    from transformers import BertTokenizerFast

    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "한", "남자", "##가", "."]
    (tmp_path / "vocab.txt").write_text("\n".join(vocabulary))
    wordpiece = BertTokenizerFast(str(tmp_path / "vocab.txt"), do_lower_case=False, model_max_length=4)
    monkeypatch.setattr(logging.getLogger("transformers"), "propagate", True)  # to caplog
    long = ["한 남자가. 한 남자가. 한 남자가."]
    with caplog.at_level("WARNING"):
        check_known_tokens(wordpiece, long, "the training sentences")
    assert caplog.records == []
    with caplog.at_level("WARNING"):
        wordpiece(long)  # the warning spared, as transformers gives it
    assert "Token indices sequence length is longer than the specified maximum sequence length" in caplog.text


def json_error(text: str) -> str:
    """What this Python's json says of `text`, as a DataError quotes it: 3.13 says "Illegal trailing comma before end of
    array" at the comma, where 3.11 said "Expecting value" after it."""
    try:
        json.loads(text)
    except json.JSONDecodeError as e:
        return f"line {e.lineno}, column {e.colno}: not JSON ({e.msg})"
    raise AssertionError(f"valid JSON: {text}")


TRAILING_COMMA = ('[{"sentence1": "가", "sentence2": "나", "score": 1},\n'
                  ' {"sentence1": "다", "sentence2": "라", "score": 2},]')


@pytest.mark.parametrize("name, text, message", [
    ("a.jsonl", '{"sentence1": "가", "sentence2": "나", "score": 1}\n{"sentence1": "다", "score": 2\n',
     "a.jsonl, line 2, column 30: not JSON (Expecting ',' delimiter)"),
    ("b.jsonl", '{"sentence1": "가", "sentence2": "나", "score": 1}\n\n["다", "라", 2]\n',
     "b.jsonl, line 3: a JSON object ({...}) a line is expected, found [\"다\", \"라\", 2]"),
    ("c.json", TRAILING_COMMA, f"c.json, {json_error(TRAILING_COMMA)}"),
    ("d.json", '[{"sentence1": "가", "sentence2": "나", "score": 1}, ["다", "라", 2]]',
     "d.json, row 1: a JSON object ({...}) is expected"),
    ("e.json", "[]", "e.json: no rows"),
    ("f.jsonl", " \n", "f.jsonl: empty file"),
    ("g.tsv", "", "g.tsv: empty file"),
    ("g.jsonl", "\ufeff \n", "g.jsonl: empty file"),  # a byte-order mark alone
    ("h.json", '{"sentence1": ["가", "나"], "sentence2": ["다", "라"], "score": [1, 2]}',
     "h.json, row 0: column 'sentence1' holds [\"가\", \"나\"], not a sentence (a .json source is a list of objects"),
    # One object holding the rows: under a key, or keyed by their index (pandas' orient="index"); it was the bare
    # "no sentence1 column (looked for sentence1; found data)".
    ("i.json", '{"data": [{"sentence1": "가", "sentence2": "나", "score": 1}]}',
     "i.json: no sentence1 column (looked for sentence1; found data); a .json source is a list of objects, one a row, "
     "or one object a line, not one object that holds them"),
    ("j.json", '{"0": {"sentence1": "가", "sentence2": "나", "score": 1}}',
     "j.json: no sentence1 column (looked for sentence1; found 0.sentence1, 0.sentence2, 0.score); a .json source is"),
])
def test_malformed_json_names_the_line(tmp_path, name, text, message):
    with pytest.raises(DataError) as e:
        load_sts(write(tmp_path, name, text))
    assert message in str(e.value)


def test_a_json_list_of_one_row_without_the_column_is_not_taken_for_one_object(tmp_path):
    with pytest.raises(DataError, match=r"k.json: no sentence1 column \(looked for sentence1; found s1, sentence2, "
                                        r"score\)$"):
        load_sts(write(tmp_path, "k.json", '[{"s1": "가", "sentence2": "나", "score": 1}]'))


@pytest.mark.parametrize("name, text, message", [
    ("l.jsonl", '{"sentence1": ["가", "나"], "sentence2": "다", "score": 1}\n',
     'l.jsonl, line 1: column \'sentence1\' holds ["가", "나"], not a sentence'),
    ("m.json", '[{"sentence1": 5, "sentence2": "다", "score": 1}]',
     "m.json, row 0: column 'sentence1' holds 5, not a sentence"),
])
def test_a_value_that_is_no_sentence_gets_the_json_layout_hint_only_for_a_json_list(tmp_path, name, text, message):
    """The hint of h.json above (a list in place of a sentence: one object that holds the rows) is for a .json source
    only, and for a list only."""
    with pytest.raises(DataError) as e:
        load_sts(write(tmp_path, name, text))
    assert str(e.value).endswith(message)


@pytest.mark.parametrize("name, header, load", [
    ("nli.tsv", "premise\thypothesis\tlabel\n", lambda path: load_nli_triplets([path])),
    ("pairs.tsv", "sent0\tsent1\n", lambda path: load_sentence_columns([path], ["sent0", "sent1"])),
    ("pairs.csv", "sent0,sent1\n", lambda path: load_sentence_columns([path], ["sent0", "sent1"])),
    ("sts.tsv", "sentence1\tsentence2\tscore\n", load_sts),
])
def test_a_header_line_alone_is_no_rows(tmp_path, name, header, load):
    """A pair file of a header alone reached training, which stopped in torch's sampler (num_samples=0)."""
    with pytest.raises(DataError, match=f"^{re.escape(str(tmp_path / name))}: no rows$"):
        load(write(tmp_path, name, header))


def test_an_empty_source_is_named_among_several(tmp_path):
    rows = write(tmp_path, "rows.tsv", "sent0\tsent1\n가\t나\n다\t라\n")
    assert load_sentence_columns([rows], ["sent0", "sent1"]).num_rows == 2
    empty = write(tmp_path, "empty.tsv", "sent0\tsent1\n")
    with pytest.raises(DataError, match=f"^{re.escape(empty)}: no rows$"):
        load_sentence_columns([rows, empty], ["sent0", "sent1"])


def test_json_lines_in_a_json_file_and_byte_order_marks(tmp_path):
    rows = [{"sentence1": "가", "sentence2": "나", "score": 1.0}, {"sentence1": "다", "sentence2": "라", "score": 2.5}]
    whole, lines = json.dumps(rows), "\n".join(map(json.dumps, rows))
    for name, text in [("list.json", whole), ("lines.json", lines), ("bom.json", "\ufeff" + whole),
                       ("bom.jsonl", "\ufeff" + lines)]:
        assert load_sts(write(tmp_path, name, text))[:] == {"sentence1": ["가", "다"], "sentence2": ["나", "라"],
                                                            "score": [1.0, 2.5]}


def test_klue_json_nested_labels(tmp_path):
    rows = [{"guid": "g0", "sentence1": "가", "sentence2": "나",
             "labels": {"label": 3.7, "real-label": 3.714, "binary-label": 1}},
            {"guid": "g1", "sentence1": "다", "sentence2": "라",
             "labels": {"label": 0.3, "real-label": 0.286, "binary-label": 0}}]
    ds = load_sts(write(tmp_path, "klue.json", json.dumps(rows, ensure_ascii=False)))
    assert ds["score"] == [3.714, 0.286]


@pytest.mark.parametrize("name, rows", [("korsts/sts-dev.tsv", 1500), ("korsts/sts-test.tsv", 1379),
                                        ("klue-sts/klue-sts-v1.1_dev.json", 519), ("klue-sts/klue_sts_val.csv", 519)])
def test_shared_sts_files(name, rows):
    ds = load_sts(os.path.join(SHARED_DATA, name))
    assert len(ds) == rows and 0 <= min(ds["score"]) and max(ds["score"]) <= 5


def test_shared_xnli_triplets(caplog):
    files = [os.path.join(SHARED_DATA, "kornli", f) for f in ("xnli.dev.ko.tsv", "xnli.test.ko.tsv")]
    with caplog.at_level(logging.INFO, logger="data_loading"):
        assert len(load_nli_triplets(files)) == 2500
    assert "7500 NLI pairs -> 2500 triplets" in caplog.text  # 2,490 + 5,010 rows under the header lines


def test_shared_pairs_counts_a_test_sets_pairs_in_the_dev_set_in_either_order():
    dev = datasets.Dataset.from_dict({"sentence1": ["가", "나", "다"], "sentence2": ["A", "B", "C"],
                                      "score": [1.0, 2.0, 3.0]})
    test = datasets.Dataset.from_dict({"sentence1": ["가", "B", "다", "라"], "sentence2": ["A", "나", "X", "D"],
                                       "score": [1.0, 2.0, 3.0, 4.0]})
    assert shared_pairs(dev, test) == 2 and shared_pairs(dev, dev) == 3
    korsts_dev = load_sts(f"{SHARED_DATA}/korsts/sts-dev.tsv")
    korsts_test = load_sts(f"{SHARED_DATA}/korsts/sts-test.tsv")
    in_dev = {frozenset(p) for p in zip(korsts_dev["sentence1"], korsts_dev["sentence2"], strict=True)}
    test_pairs = [frozenset(p) for p in zip(korsts_test["sentence1"], korsts_test["sentence2"], strict=True)]
    assert shared_pairs(korsts_dev, korsts_test) == sum(p in in_dev for p in test_pairs) == 8  # 4 in each order


def test_klue_json_and_csv_agree():
    a = load_sts(os.path.join(SHARED_DATA, "klue-sts/klue-sts-v1.1_dev.json"))
    b = load_sts(os.path.join(SHARED_DATA, "klue-sts/klue_sts_val.csv"))
    assert a["sentence1"] == b["sentence1"] and a["score"] == pytest.approx(b["score"])


def test_url_source_over_http(tmp_path):
    """A KorSTS-style TSV served over HTTP (a local server) loads like the file, quoting off."""
    import functools
    import http.server
    import threading

    (tmp_path / "sts-test.tsv").write_bytes(open(os.path.join(SHARED_DATA, "korsts", "sts-dev.tsv"), "rb").read())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/sts-test.tsv"
        ds = load_sts(url, cache_dir=str(tmp_path / "cache"))
        # Compressed, read from the download (whose cached name has no suffix) by the URL's.
        (tmp_path / "sts-test.tsv.gz").write_bytes(gzip.compress((tmp_path / "sts-test.tsv").read_bytes()))
        assert load_sts(f"{url}.gz", cache_dir=str(tmp_path / "cache"))[:] == ds[:]
        # A URL that is not there, or a host that does not answer, is named with the reason.
        missing = url.replace("sts-test", "sts-missing")
        with pytest.raises(DataError, match=f"{missing}: could not be read: .*404") as not_there:
            load_sts(missing, cache_dir=str(tmp_path / "cache"))
        assert NO_NETWORK not in str(not_there.value)
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(DataError, match=f"{url}: could not be read: .*Cannot connect to host") as no_answer:
        load_sts(url, cache_dir=str(tmp_path / "cache2"))
    assert str(no_answer.value).endswith(NO_NETWORK)
    assert len(ds) == 1500
    assert ds["sentence1"] == load_sts(os.path.join(SHARED_DATA, "korsts", "sts-dev.tsv"))["sentence1"]


def byte_level_bpe(texts):
    """A RoBERTa-style tokenizer (byte-level BPE, <s> ... </s>) trained on `texts`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["<s>", "<pad>", "</s>", "<unk>"]
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=special))
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", cls_token="<s>", sep_token="</s>")


@pytest.mark.parametrize("kind", ["wordpiece", "byte-level-bpe"])
@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("max_length", [6, 64])
def test_token_ids_are_the_tokenizer_call(tokenizer, kind, side, max_length):
    """`token_ids` encodes through the tokenizer's Rust backend directly (the tokenizer is called for the first sentence
    only): the ids of the plain tokenizer call, with its truncation (either side) and special tokens, even after a call
    that configured the backend otherwise."""
    import copy

    from conftest import sample_sentences
    from data_loading import token_ids

    texts = sample_sentences() + ["[CLS] <s> 특수 토큰처럼 보이는 글자가 든 문장 </s> [SEP]", "", "끝"]
    tok = copy.deepcopy(tokenizer) if kind == "wordpiece" else byte_level_bpe(sample_sentences())
    tok.truncation_side = side
    tok(texts[:3], padding="max_length", max_length=80)  # leaves the backend padding to 80, not truncating
    called = []

    class Counted(type(tok)):
        def __call__(self, batch, *args, **kwargs):
            called.append(len(batch))
            return super().__call__(batch, *args, **kwargs)

    tok.__class__ = Counted
    ids = token_ids(tok, texts, max_length)
    tok.__class__ = Counted.__base__
    assert called == [1]
    expected = tok(texts, truncation=True, max_length=max_length)["input_ids"]
    assert ids == expected
    assert (max(map(len, expected)) == max_length) == (max_length == 6)  # truncation happened where it should


def test_tokenizing_in_several_processes_gives_the_rows_of_one(tokenizer, tmp_path):
    """With several processes an in-memory training set is first memory-mapped from a file (`file_backed`), so that each
    process's shard travels as a file name, not as a copy of the whole table; the rows are those of one process."""
    from conftest import sample_sentences
    from data_loading import file_backed, tokenize_rows

    texts = sample_sentences()
    scores = [float(i % 6) for i in range(len(texts))]
    ds = datasets.Dataset.from_dict({"sent0": texts, "sent1": texts[::-1], "score": scores})
    assert not ds.cache_files
    mapped = file_backed(ds, str(tmp_path / "rows"))
    assert mapped.cache_files and mapped.to_dict() == ds.to_dict() and mapped.features == ds.features
    one = tokenize_rows(ds, tokenizer, ["sent0", "sent1"], 16, label_column="score")
    two = tokenize_rows(ds, tokenizer, ["sent0", "sent1"], 16, label_column="score", num_proc=2)
    assert two.to_dict() == one.to_dict() and len(one) == len(texts)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_temporary_folder_without_room_for_the_workers_tokenizes_in_this_process(tokenizer, tmp_path, monkeypatch,
                                                                                   caplog, code):
    """The rows that the workers of several processes read are copied to the temporary folder first; where its disk is
    full (or a quota reached) the rows are tokenized in this process, with a warning, and the copy is removed (it was a
    traceback, after the data had loaded)."""
    from conftest import sample_sentences
    from data_loading import tokenize_rows

    texts = sample_sentences()
    ds = datasets.Dataset.from_dict({"sent0": texts, "sent1": texts[::-1]})
    one = tokenize_rows(ds, tokenizer, ["sent0", "sent1"], 16)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    written = []

    def full(self, folder, *args, **kwargs):
        written.append(folder)
        with open(os.path.join(folder, "part.arrow"), "wb") as f:
            f.write(b"half")
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(datasets.Dataset, "save_to_disk", full)
    with caplog.at_level(logging.WARNING):
        two = tokenize_rows(ds, tokenizer, ["sent0", "sent1"], 16, num_proc=2)
    assert two.to_dict() == one.to_dict()
    assert f"{written[0]}: no room for the rows that worker processes read and write ({os.strerror(code)}): " \
           "tokenizing in this process" in caplog.text
    assert os.listdir(tmp_path) == []


def test_a_full_datasets_cache_is_named_as_such(tmp_path, monkeypatch):
    """datasets writes every source it reads into its cache as Arrow files first: a full disk there said "could not
    be read: An error occurred while generating the dataset", as if the file were at fault."""
    path = tmp_path / "a.txt"
    path.write_text("문장 하나\n", encoding="utf-8")

    def full(*args, **kwargs):
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as e:
            raise datasets.exceptions.DatasetGenerationError("An error occurred while generating the dataset") from e

    monkeypatch.setattr(datasets, "load_dataset", full)
    with pytest.raises(DataError, match=re.escape(f"{path}: could not be cached: No space left on device in the "
                                                  f"datasets cache, {tmp_path / 'cache'}; free space there, or set "
                                                  "HF_DATASETS_CACHE (or cache_dir) to a folder on a larger disk")):
        load_source(str(path), cache_dir=str(tmp_path / "cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(DataError, match=re.escape(f"or the Hub cache, {tmp_path / 'hub'}; free space there, or set "
                                                  "HF_DATASETS_CACHE (or cache_dir) and HF_HUB_CACHE to a folder")):
        load_source("kakaobrain/kor_nli:snli:train", cache_dir=str(tmp_path / "cache"))


@pytest.mark.parametrize("code, names_the_cache", [(errno.EROFS, True), (errno.EACCES, True), (errno.EACCES, False)])
def test_a_cache_this_user_may_not_write_is_named_as_such(tmp_path, monkeypatch, code, names_the_cache):
    """A read-only or another user's datasets cache (a shared HF_HOME) said "could not be read: [Errno 30] Read-only
    file system: '.../datasets'", as if the file were at fault; a source file this user may not read still says so."""
    path = tmp_path / "a.txt"
    path.write_text("문장 하나\n", encoding="utf-8")
    refused = str(tmp_path / "cache" / "text") if names_the_cache else str(path)

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code), refused)

    monkeypatch.setattr(datasets, "load_dataset", refuse)
    with pytest.raises(DataError) as raised:
        load_source(str(path), cache_dir=str(tmp_path / "cache"))
    if names_the_cache:
        assert str(raised.value) == (f"{path}: could not be cached: {os.strerror(code)}: {refused} (the datasets "
                                     f"cache, {tmp_path / 'cache'}); set HF_DATASETS_CACHE (or cache_dir) to a folder "
                                     "this user may write to")
    else:
        assert str(raised.value).startswith(f"{path}: could not be read: [Errno {code}] {os.strerror(code)}")


class SigintReporter:
    """A stand-in tokenizer whose token ids say whether the process that tokenized ignores SIGINT (1) or not (0)."""

    def __call__(self, texts, **kwargs):
        ignored = int(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)
        return {"input_ids": [[ignored] for _ in texts]}


def test_ctrl_c_is_left_to_the_process_that_tokenizes_in_several():
    """Ctrl-C reaches every process of a terminal's job: each worker of datasets' pool printed a traceback of its own
    before the run's own word; they now leave it to the calling process, which keeps its handler."""
    from data_loading import tokenize_rows

    ds = datasets.Dataset.from_dict({"text": [f"문장 {i}" for i in range(8)]})
    # As in a terminal: a process started in the background by a non-interactive shell ignores SIGINT from the start.
    earlier = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        in_workers = tokenize_rows(ds, SigintReporter(), ["text"], 8, num_proc=2)
        in_this_process = tokenize_rows(ds, SigintReporter(), ["text"], 8)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, earlier)
    assert column_values(in_workers, "input_ids") == [[[1]]] * 8
    assert column_values(in_this_process, "input_ids") == [[[0]]] * 8


def test_a_hub_dataset_out_of_reach_is_told_how_to_do_without_the_network(tmp_path, monkeypatch):
    """Offline (HF_HUB_OFFLINE here; no network reads the same, after huggingface_hub's retries), a Hub source that is
    not in the cache said only that the Hub could not be reached."""
    monkeypatch.setattr("datasets.config.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(DataError) as offline:
        load_sts("nobody/sts:sts:validation", cache_dir=str(tmp_path))
    assert str(offline.value).startswith("nobody/sts:sts:validation: could not be read: Couldn't reach 'nobody/sts'")
    assert str(offline.value).endswith(f"{NO_NETWORK}, or load the Hub dataset once online: with HF_HUB_OFFLINE=1 it "
                                       "is then read from the cache")
    # Read through a chain of causes, which may loop.
    from data_loading import unreachable

    looped = ValueError("x")
    looped.__cause__ = looped
    refused = RuntimeError("while reading")
    refused.__context__ = ConnectionRefusedError()
    assert not unreachable(looped) and unreachable(refused)


def test_a_hub_dataset_is_read_at_the_revision_its_source_names(hub, tmp_path):
    """`owner/name@revision[:config][:split]` reads a Hub dataset as of a branch, tag or commit of its repo, where its
    default branch has moved on since: a run, or a score, pinned to the rows it read."""
    sts = datasets.load_dataset("csv", data_files=os.path.join(SAMPLE, "sts.tsv"), sep="\t", quoting=3, split="train")

    def parquet(rows: int) -> bytes:
        path = tmp_path / "part.parquet"
        sts.select(range(rows)).select_columns(["sentence1", "sentence2", "score"]).to_parquet(path)
        return path.read_bytes()

    name = "data/validation-00000-of-00001.parquet"
    hub.add_repo("alice/sts", {name: parquet(10)}, repo_type="dataset")
    repo = hub.repos["datasets/alice/sts"]
    pinned = repo.sha("main")
    repo.branches["main"] = {name: parquet(len(sts))}
    repo.commits.append({"branch": "main", "message": "all pairs", "files": [name], "oid": "b" * 40,
                         "snapshot": dict(repo.branches["main"])})
    code = ("from data_loading import load_sts\n"
            f"print(len(load_sts('alice/sts@{pinned}::validation')), len(load_sts('alice/sts::validation')))")
    proc = cli(["-c", code], hub, tmp_home=tmp_path / "home")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["10", str(len(sts))]
    assert Source.parse("klue/klue@v1.1:sts:validation") == Source(
        "klue/klue@v1.1:sts:validation", repo="klue/klue", revision="v1.1", config="sts", split="validation")
    assert hub_datasets(["klue/klue@v1.1:sts:validation"]) == ["klue/klue"]  # the card's `datasets`: repo ids
    with pytest.raises(DataError, match="nor a Hub dataset 'owner/name\\[@revision\\]"):
        Source.parse("klue/klue@:sts")


def test_a_hub_source_mistyped_is_named_with_what_the_hub_has(hub, tmp_path):
    """A Hub dataset, revision, config or split that is not there: the source and the reason the datasets library
    gives (the revision's, not the HTTP 404 under it), before anything is trained."""
    sts = datasets.load_dataset("csv", data_files=os.path.join(SAMPLE, "sts.tsv"), sep="\t", quoting=3, split="train")
    sts.select_columns(["sentence1", "sentence2", "score"]).to_parquet(tmp_path / "part.parquet")
    hub.add_repo("alice/sts", {"data/validation-00000-of-00001.parquet": (tmp_path / "part.parquet").read_bytes()},
                 repo_type="dataset")
    code = ("from data_loading import DataError, load_sts\n"
            "for source in ['alice/nothing::validation', 'alice/sts@v9::validation', 'alice/sts:sts:validation',\n"
            "               'alice/sts::dev']:\n"
            "    try:\n"
            "        load_sts(source)\n"
            "    except DataError as e:\n"
            "        print(e)\n")
    proc = cli(["-c", code], hub, tmp_home=tmp_path / "home")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == [
        "alice/nothing::validation: could not be read: Dataset 'alice/nothing' doesn't exist on the Hub or cannot be "
        "accessed.",
        "alice/sts@v9::validation: could not be read: Revision 'v9' doesn't exist for dataset 'alice/sts' on the Hub.",
        "alice/sts:sts:validation: could not be read: BuilderConfig 'sts' not found. Available: ['default']",
        "alice/sts::dev: could not be read: Unknown split \"dev\". Should be one of ['validation'].",
    ]
