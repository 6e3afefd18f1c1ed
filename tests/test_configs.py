"""The shipped configs parse (no unknown key), carry the published settings, and run on their Hub sources; the
accelerate launch configs start the processes they describe."""

import csv
import glob
import io
import json
import os
import subprocess
import sys

import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Value
from huggingface_hub import ModelCard
from transformers import AutoTokenizer, BertConfig, BertModel, HfArgumentParser, RobertaConfig, RobertaForMaskedLM

import run_arguments
from conftest import ROOT, SAMPLE, cli, folder_files, free_port
from data_loading import load_nli_triplets, load_sentence_columns

PUBLISHED = sorted(glob.glob(os.path.join(ROOT, "configs", "klue-*.json")))


def test_four_published_configs():
    assert [os.path.basename(p) for p in PUBLISHED] == [
        "klue-bert-sup.json", "klue-bert-unsup.json", "klue-roberta-sup.json", "klue-roberta-unsup.json"]


@pytest.mark.parametrize("path", PUBLISHED, ids=os.path.basename)
def test_published_settings(path):
    with open(path) as f:
        config = json.load(f)
    config.update(bf16=False, use_cpu=True)  # parsing checks the device; this machine has no GPU
    model, data, simcse, training = HfArgumentParser(run_arguments.ALL_ARGUMENTS).parse_dict(config)
    assert model.model_name_or_path in ("klue/bert-base", "klue/roberta-base")
    assert (training.num_train_epochs, training.per_device_train_batch_size, training.learning_rate) == (1, 256, 5e-5)
    assert (data.max_seq_length, simcse.temperature, simcse.dropout) == (64, 0.05, 0.1)
    assert simcse.pooler_type == "cls_before_pooler"  # what the published code really trained and evaluated
    assert [t.split("=")[0] for t in data.test_data] == ["korsts-test", "klue-sts-dev"]
    assert training.eval_steps == 100 and training.load_best_model_at_end
    assert training.accelerator_config.non_blocking  # batches copied to the GPU without a host sync (pinned memory)
    assert data.train_format == ("nli" if "-sup" in path else "text")
    assert data.train_data == ["kakaobrain/kor_nli:multi_nli:train", "kakaobrain/kor_nli:snli:train"]


@pytest.mark.parametrize("name, processes", [("1gpu", 1), ("8gpu", 8), ("2nodes-8gpu", 16)])
def test_accelerate_configs_load(name, processes):
    from accelerate.commands.config.config_args import ClusterConfig

    config = ClusterConfig.from_yaml_file(os.path.join(ROOT, "configs", "accelerate", f"{name}.yaml"))
    assert config.num_processes == processes and config.mixed_precision == "no"


def test_accelerate_configs_start_the_processes_they_describe(tmp_path):
    """`accelerate launch --config_file` with the multi-GPU configs starts 8 processes on one machine, and 8 on each of
    two machines with global ranks 0-15 (both machines' launchers run here, the first machine's address given as
    127.0.0.1). Each process writes down its ranks and exits, which needs no GPU."""
    script, out = tmp_path / "ranks.py", tmp_path / "ranks"
    out.mkdir()
    script.write_text("import os\n"
                      "ranks = [os.environ[k] for k in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'LOCAL_WORLD_SIZE')]\n"
                      f"open(os.path.join({str(out)!r}, 'rank' + ranks[0]), 'w').write(' '.join(ranks))\n")

    def ranks(name: str, machines: int = 1) -> list[tuple[int, ...]]:
        """Launch `configs/accelerate/<name>.yaml` (each machine's launcher) -> the (rank, local rank, world size,
        local world size) of every process started."""
        port = free_port()  # for the rendezvous
        config = os.path.join(ROOT, "configs", "accelerate", f"{name}.yaml")
        flags = [[] if machines == 1 else ["--machine_rank", str(m), "--main_process_ip", "127.0.0.1"]
                 for m in range(machines)]
        procs = [subprocess.Popen([sys.executable, "-m", "accelerate.commands.launch", "--config_file", config, *f,
                                   "--main_process_port", port, str(script)], cwd=ROOT, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for f in flags]
        try:
            for proc in procs:
                _, err = proc.communicate(timeout=120)
                assert proc.returncode == 0, err[-3000:]
        finally:
            for proc in procs:
                proc.kill()
        written = []
        for f in out.iterdir():
            written.append(tuple(map(int, f.read_text().split())))
            f.unlink()
        return sorted(written)

    assert ranks("8gpu") == [(r, r, 8, 8) for r in range(8)]
    assert ranks("2nodes-8gpu", machines=2) == [(r, r % 8, 16, 8) for r in range(16)]


def _parquet(rows: dict, features: Features) -> bytes:
    buffer = io.BytesIO()
    Dataset.from_dict(rows, features=features).to_parquet(buffer)
    return buffer.getvalue()


def _sample_rows(name: str) -> list[dict]:
    with open(os.path.join(SAMPLE, name), encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def save_as_a_2021_upload(model, tokenizer, folder) -> None:
    """Save `model` (an MLM head and all) and `tokenizer` as models were uploaded before safetensors and
    tokenizer.json: config.json, pytorch_model.bin, vocab.txt, and a tokenizer_config.json that names BertTokenizer
    (klue/roberta-base's card: AutoTokenizer loads a BertTokenizer for it, not RoBERTa's)."""
    folder.mkdir(parents=True)
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    vocabulary = tokenizer.get_vocab()
    (folder / "vocab.txt").write_text("\n".join(sorted(vocabulary, key=vocabulary.get)) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"do_lower_case": False, "model_max_length": 512, "tokenizer_class": "BertTokenizer"}))


def seed_published_sources(hub, tokenizer, tmp_path) -> None:
    """Put on the stand-in Hub what the published configs name: klue/bert-base and klue/roberta-base (tiny, random;
    the one as transformers 5 saves it, the other as a 2021 upload), and, in the layout the real repos have,
    kakaobrain/kor_nli (parquet per config; its multi_nli and snli train splits both hold the shipped NLI sample,
    labels as ClassLabel integers) and klue/klue (sts validation: the shipped STS sample with KLUE's nested
    `labels`, where `label` is rounded and `real-label` the score)."""
    shape = dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                 intermediate_size=64, max_position_embeddings=80, pad_token_id=tokenizer.pad_token_id)
    bert = tmp_path / "klue/bert-base"
    BertModel(BertConfig(**shape)).save_pretrained(bert)
    tokenizer.save_pretrained(bert)
    hub.add_repo("klue/bert-base", folder_files(bert))
    roberta = tmp_path / "klue/roberta-base"
    save_as_a_2021_upload(RobertaForMaskedLM(RobertaConfig(**shape)), tokenizer, roberta)
    hub.add_repo("klue/roberta-base", folder_files(roberta))

    names = ["entailment", "neutral", "contradiction"]
    nli = _sample_rows("nli.tsv")
    nli_parquet = _parquet({"premise": [r["sentence1"] for r in nli], "hypothesis": [r["sentence2"] for r in nli],
                            "label": [names.index(r["gold_label"]) for r in nli]},
                           Features(premise=Value("string"), hypothesis=Value("string"), label=ClassLabel(names=names)))
    hub.add_repo("kakaobrain/kor_nli", {
        "README.md": b"---\nconfigs:\n"
                     b"- config_name: multi_nli\n  data_files:\n  - split: train\n    path: multi_nli/train-*\n"
                     b"- config_name: snli\n  data_files:\n  - split: train\n    path: snli/train-*\n---\n",
        "multi_nli/train-00000-of-00001.parquet": nli_parquet,
        "snli/train-00000-of-00001.parquet": nli_parquet,
    }, repo_type="dataset")

    sts = _sample_rows("sts.tsv")
    labels = Features({"label": Value("float64"), "real-label": Value("float64"),
                       "binary-label": ClassLabel(names=["negative", "positive"])})
    klue = _parquet({"guid": [r["id"] for r in sts], "source": ["sample"] * len(sts),
                     "sentence1": [r["sentence1"] for r in sts], "sentence2": [r["sentence2"] for r in sts],
                     "labels": [{"label": round(float(r["score"])), "real-label": float(r["score"]),
                                 "binary-label": int(float(r["score"]) >= 3)} for r in sts]},
                    Features(guid=Value("string"), source=Value("string"), sentence1=Value("string"),
                             sentence2=Value("string"), labels=labels))
    hub.add_repo("klue/klue", {
        "README.md": b"---\nconfigs:\n- config_name: sts\n  data_files:\n  - split: validation\n"
                     b"    path: sts/validation-*\n---\n",
        "sts/validation-00000-of-00001.parquet": klue,
    }, repo_type="dataset")


@pytest.mark.parametrize("name", ["klue-bert-sup.json", "klue-roberta-unsup.json"])
def test_published_config_runs_on_its_hub_sources(name, hub, tokenizer, tmp_path):
    """The published config as shipped, its Hub model and dataset ids served by the stand-in; only the KorSTS URLs
    (GitHub, not the Hub) become the shipped STS sample, and the size and device settings shrink to a CPU run."""
    seed_published_sources(hub, tokenizer, tmp_path)
    with open(os.path.join(ROOT, "configs", name)) as f:
        config = json.load(f)
    config.update(dev_data=os.path.join(SAMPLE, "sts.tsv"), output_dir=str(tmp_path / "out"), bf16=False, use_cpu=True,
                  max_steps=4, per_device_train_batch_size=8, eval_steps=2, save_steps=2, logging_steps=2,
                  dataloader_num_workers=0, optim="adamw_torch")
    config["test_data"] = [f"korsts-test={SAMPLE}/sts.tsv", config["test_data"][1]]
    (tmp_path / "config.json").write_text(json.dumps(config))
    proc = cli(["run_simcse.py", str(tmp_path / "config.json")], hub, tmp_home=tmp_path / "home")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "HTTP Request:" not in proc.stderr  # huggingface_hub's client logged each of its requests at INFO

    with open(tmp_path / "out" / "sts_results.json") as f:
        results = json.load(f)
    # klue/klue's sts validation holds the same pairs as the local file: scored alike only if `real-label` was read.
    assert results["klue-sts-dev"] == results["korsts-test"]
    with open(tmp_path / "out" / "environment.json") as f:
        environment = json.load(f)
    train_rows = environment["train_rows"]
    assert environment["cuda_graphs"] is False  # the published configs leave it unset: off on a CPU
    assert environment["tokenization_processes"] == 1  # the default for a small training set
    local = os.path.join(SAMPLE, "nli.tsv")
    expected = (2 * len(load_nli_triplets([local], strip_quotes=True)) if "-sup" in name
                else len(set(load_sentence_columns([local, local], ["sentence1"])["sent0"])))
    assert train_rows == expected
    card = ModelCard.load(tmp_path / "out" / "README.md").data
    assert card.base_model == config["model_name_or_path"] and card.datasets == ["kakaobrain/kor_nli", "klue/klue"]
    if "roberta" in name:  # its BertTokenizer, built from vocab.txt (save_as_a_2021_upload), is the export's
        assert type(AutoTokenizer.from_pretrained(str(tmp_path / "out"))).__name__ == "BertTokenizer"
    # The evaluation command takes Hub ids too: the base encoder, scored on the Hub's KLUE-STS dev.
    output = tmp_path / "base.json"
    proc = cli(["sts_evaluation.py", config["model_name_or_path"], "--set", "klue-sts-dev=klue/klue:sts:validation",
                "--output", str(output)], hub, tmp_home=tmp_path / "home")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| klue-sts-dev |" in proc.stdout and list(json.loads(output.read_text())) == ["klue-sts-dev"]
