"""Shared fixtures: a tiny BERT encoder with a tokenizer trained on the shipped Korean sample."""

import json
import multiprocessing.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel, RobertaConfig, RobertaForMaskedLM

from hub_standin import HubStandIn
from scratch_tokenizer import train_wordpiece

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")
SAMPLE = os.path.join(ROOT, "sample_data")
TOKEN = "hf_standinWriteToken0123456789"  # alice's token on the stand-in Hub


def free_port() -> str:
    """A TCP port on 127.0.0.1 that nothing listens on now: for a launcher's rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def without_dropout(model):
    """Set every dropout of `model` to 0 (the forward is then deterministic); returns the model."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def input_widths(module: torch.nn.Module) -> list[int]:
    """A list that gets the width (tokens a row) of `module`'s input at each of its forward passes, from now on; its
    length counts the passes."""
    widths = []
    module.register_forward_hook(lambda _, args, __: widths.append(args[0].shape[1]))
    return widths


def sample_sentences() -> list[str]:
    with open(os.path.join(SAMPLE, "sentences.txt"), encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


@pytest.fixture(scope="session", autouse=True)
def temporary_folder(tmp_path_factory):
    """The temporary folder of this process (after pytest's own) and TMPDIR of the processes the tests launch: a
    folder of the session, removed at the exit. torchrun and `accelerate launch` leave a torchelastic_* folder in TMPDIR
    at each launch, and a process a test kills leaves its socket's folder (pymp-*). It is short, beside the usual one:
    a worker's socket path may have 75 bytes."""
    tmp_path_factory.getbasetemp()
    folder = tempfile.mkdtemp(prefix="simcse-tests-")
    # After multiprocessing's own folder in it (exitpriority -100), which it removes without ignoring errors.
    multiprocessing.util.Finalize(None, shutil.rmtree, args=(folder,), kwargs={"ignore_errors": True},
                                  exitpriority=-101)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", folder)
        patch.setattr(tempfile, "tempdir", folder)
        yield folder


@pytest.fixture(scope="session")
def tokenizer():
    return train_wordpiece(sample_sentences() * 2, vocab_size=300)


@pytest.fixture(scope="session")
def encoder_dir(tmp_path_factory, tokenizer):
    """A saved random tiny BertModel (with its pooler) and its tokenizer.

    Its weights are drawn wider than BERT's default (std 0.2, not 0.02): at the default, a random tiny BERT gives every
    sentence nearly the same CLS vector (mean cosine 0.99999 over the sample), so 3 in 4 of the non-zero gradient
    entries of the CLS loss are below 1e-5 and a comparison within 1e-5 could hardly fail. Here the mean cosine is 0.93
    and the median non-zero entry 0.04.
    """
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, initializer_range=0.2)
    path = str(tmp_path_factory.mktemp("encoder"))
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def sentence_transformer_dir(encoder_dir, tmp_path_factory):
    """The tiny encoder as a sentence-transformers model: mean pooling, then unit length (as e5 models ship)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    modules = [Transformer(encoder_dir, max_seq_length=64), Pooling(32, pooling_mode="mean"), Normalize()]
    path = str(tmp_path_factory.mktemp("sentence-transformer"))
    SentenceTransformer(modules=modules, device="cpu").save(path)
    return path


@pytest.fixture(scope="session")
def foreign_weights_dir(tmp_path_factory, tokenizer):
    """A RoBERTa MLM checkpoint saved under a BERT config, with the sample tokenizer: transformers loads it as a BERT
    whose every weight it initialises at random (another architecture's names)."""
    shape = dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64, max_position_embeddings=66)
    path = str(tmp_path_factory.mktemp("foreign-weights"))
    RobertaForMaskedLM(RobertaConfig(**shape)).save_pretrained(path)
    BertConfig(**shape).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


CUSTOM_ENCODER_CODE = """from transformers import BertConfig, BertModel


class CustomEncoderConfig(BertConfig):
    model_type = "custom-encoder"


class CustomEncoder(BertModel):
    config_class = CustomEncoderConfig
"""


@pytest.fixture(scope="session")
def custom_code_encoder_dir(encoder_dir, tmp_path_factory):
    """The tiny encoder's weights saved by a model class of its own code, shipped beside it as Hub models with custom
    code ship it (`auto_map` in config.json, custom_encoder.py in the folder): loading it runs that code."""
    import importlib.util

    code = tmp_path_factory.mktemp("code") / "custom_encoder.py"
    code.write_text(CUSTOM_ENCODER_CODE)
    spec = importlib.util.spec_from_file_location("custom_encoder", code)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.CustomEncoderConfig.register_for_auto_class()
    module.CustomEncoder.register_for_auto_class("AutoModel")
    built_in = BertModel.from_pretrained(encoder_dir)
    custom = module.CustomEncoder(module.CustomEncoderConfig.from_dict(built_in.config.to_dict()))
    custom.load_state_dict(built_in.state_dict())
    path = str(tmp_path_factory.mktemp("custom-code-encoder"))
    sys.modules["custom_encoder"] = module  # where save_pretrained finds the code to copy
    try:
        custom.save_pretrained(path)
    finally:
        del sys.modules["custom_encoder"]
    AutoTokenizer.from_pretrained(encoder_dir).save_pretrained(path)
    assert os.path.isfile(os.path.join(path, "custom_encoder.py"))
    return path


@pytest.fixture()
def hub(monkeypatch):
    """A local stand-in for the Hugging Face Hub (see hub_standin.py) where alice and bob have tokens. Clients in this
    process upload large files through LFS, which the stand-in serves, not Xet, which it does not."""
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_DISABLE_XET", True)
    server = HubStandIn(tokens={TOKEN: "alice", "hf_otherUserToken000000": "bob"}).start()
    yield server
    server.stop()
    assert not server.errors, "the Hub stand-in failed to handle a request:\n" + "\n".join(server.errors)


def logged_losses(output_dir) -> dict[int, float]:
    """A run's training losses as its trainer_state.json in `output_dir` logged them: {step: loss}."""
    with open(os.path.join(output_dir, "trainer_state.json")) as f:
        return {e["step"]: e["loss"] for e in json.load(f)["log_history"] if "loss" in e}


def assert_scores_agree(got: dict[str, float], expected: dict[str, float]) -> None:
    """Scores (x100) of one small STS set, such as the shipped sample's 24 pairs, from two computations that differ in
    float rounding only (another order of sums, other kernels): each Pearson correlation within 0.25 (the smoke model's
    cosine Pearson moved 0.10 with the evaluation's batch size), each Spearman correlation, and AVG, within 1.0 (a near
    tie of two similarities swaps two ranks: a manhattan Spearman moved 0.52 on one machine and not on another)."""
    assert got.keys() == expected.keys()
    for metric, score in expected.items():
        tolerance = 0.25 if metric.endswith("pearson") else 1.0
        assert got[metric] == pytest.approx(score, abs=tolerance), (metric, got, expected)


def folder_files(folder) -> dict[str, bytes]:
    """Every file under `folder` (a Path), by its relative path: a repo for `HubStandIn.add_repo`."""
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def standin_env(hub: HubStandIn, tmp_home, token: str | None = TOKEN) -> dict[str, str]:
    """This process's environment pointed at the stand-in (HF_ENDPOINT), with its own HF_HOME and the token (or none),
    uploading large files through LFS (the stand-in has no Xet storage)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_home), HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_XET="1")
    if token:
        env["HF_TOKEN"] = token
    return env


def cli(args: list[str], hub: HubStandIn, tmp_home, token: str | None = TOKEN) -> subprocess.CompletedProcess:
    """Run `python *args` in the project root, in a fresh process with `standin_env`."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=standin_env(hub, tmp_home, token), capture_output=True,
                          text=True, timeout=300)
