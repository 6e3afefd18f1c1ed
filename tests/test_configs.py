"""The shipped configs parse (no unknown key) and carry the published settings."""

import glob
import json
import os

import pytest
from transformers import HfArgumentParser

import run_simcse
from conftest import ROOT

PUBLISHED = sorted(glob.glob(os.path.join(ROOT, "configs", "klue-*.json")))


def test_four_published_configs():
    assert [os.path.basename(p) for p in PUBLISHED] == [
        "klue-bert-sup.json", "klue-bert-unsup.json", "klue-roberta-sup.json", "klue-roberta-unsup.json"]


@pytest.mark.parametrize("path", PUBLISHED, ids=os.path.basename)
def test_published_settings(path):
    with open(path) as f:
        config = json.load(f)
    config.update(bf16=False, use_cpu=True)  # parsing checks the device; this machine has no GPU
    model, data, simcse, training = HfArgumentParser(run_simcse.ALL_ARGUMENTS).parse_dict(config)
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
