"""Several processes (gloo; torchrun, accelerate launch) give the math of one big batch; the per-device switch gives the
split one; a launch that asked for several processes and got one says so."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch

import run_arguments
from conftest import ROOT, SAMPLE, SHARED_DATA, assert_scores_agree, free_port, logged_losses
from distributed_worker import build
from modeling_simcse import POOLER_TYPES, SimCSEModel

with open(os.path.join(SAMPLE, "nli.tsv"), encoding="utf-8") as f:
    SAMPLE_NLI = f.read()

def local_env(**more: str) -> dict[str, str]:
    """The environment of launched processes: they talk over loopback only, one thread each (2 cores)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1", **more}


# The modes of the tests below, whose 2-process steps (mode, gather) come from one launch (each launched process pays
# the import of torch and transformers, 5 s of a 2-core machine).
BIG_BATCH_MODES = ["sup", "unsup", "sup-chunked"]
REPEATED_ROWS = [("sup-chunked", 5), ("unsup", 3)]
PER_DEVICE_MODES = ["sup", "sup/3"]
WORKER_STEPS = ([(mode, True) for mode in BIG_BATCH_MODES] + [(f"{mode}/{real}", True) for mode, real in REPEATED_ROWS]
                + [(mode, False) for mode in PER_DEVICE_MODES])


@pytest.fixture(scope="module")
def worker_steps(encoder_dir, tmp_path_factory) -> dict[tuple[str, bool], dict]:
    """{(mode, gather): the loss and gradients 2 processes (torchrun, gloo) gave}, from tests/distributed_worker.py."""
    out = tmp_path_factory.mktemp("distributed-steps")
    env = local_env(PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         os.path.join(ROOT, "tests", "distributed_worker.py"), encoder_dir, str(out),
         *(f"{mode}:{int(gather)}" for mode, gather in WORKER_STEPS)],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {spec: torch.load(out / f"{k}.pt") for k, spec in enumerate(WORKER_STEPS)}


def single_process(encoder_dir, mode, parts=1):
    """Loss and gradients of one process; with parts > 1, the mean over equal slices (per-device negatives)."""
    model, ids, mask = build(encoder_dir, mode, gather=True)
    share = len(ids) // parts
    losses = []
    for k in range(parts):
        part = slice(k * share, (k + 1) * share)
        loss = model(input_ids=ids[part], attention_mask=mask[part]).loss / parts
        loss.backward()
        losses.append(loss.item())
    return sum(losses), {k: p.grad for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("mode", BIG_BATCH_MODES)
def test_two_processes_equal_one_big_batch(encoder_dir, worker_steps, mode):
    """sup-chunked: the gradient cache in each process, against one process's plain pass."""
    got = worker_steps[mode, True]
    loss, grads = single_process(encoder_dir, mode.removesuffix("-chunked"))
    assert got["loss"] == pytest.approx(loss, abs=1e-5)
    assert set(got["grads"]) == set(grads)
    for name, grad in grads.items():
        torch.testing.assert_close(got["grads"][name], grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("mode, real", REPEATED_ROWS)
def test_repeats_that_complete_the_last_batch_are_left_out(encoder_dir, worker_steps, mode, real):
    """accelerate completes an epoch's last batch with repeats of its first rows: told how many rows are real, 2
    processes x 4 rows give the loss and gradients of one process on those rows alone (with 3, one process holds
    only repeats); untold, they do not."""
    got = worker_steps[f"{mode}/{real}", True]
    model, ids, mask = build(encoder_dir, mode.removesuffix("-chunked"), gather=True)
    loss = model(input_ids=ids[:real], attention_mask=mask[:real]).loss
    loss.backward()
    assert got["loss"] == pytest.approx(loss.item(), abs=1e-5)
    assert set(got["grads"]) == {k for k, p in model.named_parameters() if p.grad is not None}
    for name, param in model.named_parameters():
        if param.grad is not None:
            torch.testing.assert_close(got["grads"][name], param.grad, atol=1e-5, rtol=1e-4, msg=name)
    model.zero_grad()
    assert model(input_ids=ids, attention_mask=mask).loss.item() != pytest.approx(loss.item(), abs=1e-3)


@pytest.mark.parametrize("mode", PER_DEVICE_MODES)
def test_per_device_switch_reproduces_the_split(encoder_dir, worker_steps, mode):
    """sup/3: per-device negatives keep the repeats of an epoch's last batch, each process training on its own."""
    got = worker_steps[mode, False]
    loss, grads = single_process(encoder_dir, mode, parts=2)
    assert got["loss"] == pytest.approx(loss, abs=1e-5)
    for name, grad in grads.items():
        torch.testing.assert_close(got["grads"][name], grad, atol=1e-5, rtol=1e-4, msg=name)
    full_loss, _ = single_process(encoder_dir, mode)
    assert abs(full_loss - loss) > 1e-3  # the split really is different math


@pytest.mark.parametrize("pooler_type, mlp_only_train", [(p, False) for p in POOLER_TYPES] + [("cls", True)])
def test_every_trainable_parameter_gets_a_gradient(encoder_dir, tokenizer, tmp_path, pooler_type, mlp_only_train):
    """DDP without find_unused_parameters (Trainer's choice under activation checkpointing) fails at the second step
    on a trainable parameter that the loss does not use; the encoder's own pooler, which no pooler type trains, is
    frozen."""
    from test_loss import ROWS, _ids

    model = SimCSEModel.from_encoder(encoder_dir, pooler_type=pooler_type, mlp_only_train=mlp_only_train).train()
    ids, mask = _ids(tokenizer, ROWS)
    model(input_ids=ids, attention_mask=mask).loss.backward()
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []
    frozen = {"encoder.pooler.dense.weight", "encoder.pooler.dense.bias"}
    assert {n for n, p in model.named_parameters() if not p.requires_grad} == frozen
    # A saved SimCSEModel (a training checkpoint as model_name_or_path) too: loading makes new, trainable parameters.
    model.save_pretrained(tmp_path / "saved")
    loaded = SimCSEModel.from_pretrained(tmp_path / "saved")
    assert {n for n, p in loaded.named_parameters() if not p.requires_grad} == frozen


@pytest.mark.parametrize("model_type, settings", [
    ("roberta", {"pad_token_id": 1}), ("xlm-roberta", {"pad_token_id": 1}), ("electra", {"embedding_size": 16}),
    ("albert", {"embedding_size": 16}), ("deberta-v2", {}),
])
def test_every_trainable_parameter_of_other_encoder_families_gets_a_gradient(model_type, settings):
    """The same for the other families the README names (ALBERT's pooler is a bare Linear; ELECTRA and DeBERTa have
    none), packed where they can be."""
    from transformers import AutoConfig, AutoModel

    from data_collator import SimCSECollator

    config = AutoConfig.for_model(model_type, vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64, max_position_embeddings=64, **settings)
    model = SimCSEModel.from_encoder(AutoModel.from_config(config), pooler_type="cls").train()
    rows = [{"input_ids": [[2, 5, 6, 7, 3], [2, 8, 9, 3], [2, 10, 11, 12, 13, 3]]}] * 4
    batch = SimCSECollator(0, pack_width=16 if model.supports_packing else None)(rows)
    model(**batch).loss.backward()
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []


def launch_run_simcse(config: str, processes: int) -> subprocess.CompletedProcess:
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] if processes > 1 else []
    return subprocess.run([sys.executable, *launcher, "run_simcse.py", config], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=local_env())


def test_run_simcse_two_processes_match_one_process_with_twice_the_batch(tmp_path):
    """The real Trainer path (torchrun, gloo): 2 processes x 4 triplets log the losses of 1 process x 8 triplets and
    give its scores. The 9 triplets leave one for the last step of each epoch, which accelerate completes with repeats
    (3 on the first process, 4 on the second); the model is told, and leaves them out. The 24 STS pairs go to the
    processes in batches of 5, the last one completed with repeated pairs, which the scores must leave out."""
    from test_run_simcse import smoke_config

    logs, scores = {}, {}
    for processes, batch in ((1, 8), (2, 4)):
        folder = tmp_path / f"p{processes}"
        folder.mkdir()
        config = smoke_config(folder, per_device_train_batch_size=batch, dropout=0.0, max_train_samples=9,
                              per_device_eval_batch_size=5)
        proc = launch_run_simcse(config, processes)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "started this one alone" not in proc.stderr  # MASTER_ADDR is set (local_env), but accelerate is not used
        said = "contrastive batch (rows that are negatives for each other): " + (
            "8 rows" if processes == 1 else "8 rows, gathered from 2 processes")
        assert said in proc.stderr, proc.stderr[-3000:]
        assert proc.stderr.count("test set sample-sts: 24 of its") == 1  # a warning of the run, given by one process
        # DDP searched for unused parameters at every step (Trainer's default) and warned that it found none.
        assert "find_unused_parameters=True was specified" not in proc.stderr
        logs[processes] = logged_losses(folder / "out")
        seed = "42" if processes == 1 else "42 (dropout masks: 42 + the process's index, 0 to 1)"
        assert f"| seed | {seed} |" in (folder / "out" / "README.md").read_text()
        with open(folder / "out" / "sts_results.json") as f:
            scores[processes] = json.load(f)
    # Resuming the 2-process run in 1 process would halve the contrastive batch and reorder the data: refused.
    resumed = smoke_config(tmp_path / "p2", per_device_train_batch_size=4, dropout=0.0, max_train_samples=9,
                           per_device_eval_batch_size=5, resume_from_checkpoint="last", overwrite_output_dir=False)
    proc = launch_run_simcse(resumed, 1)
    said = ("holds a different run (run_args.json differs in: world_size); it ran in 2 process(es) and this launch has "
            "1: resume it with as many")
    assert proc.returncode != 0 and said in proc.stderr, proc.stderr[-3000:]
    # Another run over that folder in 2 processes: one process deletes the old checkpoints while the other waits (two
    # processes deleting one folder's checkpoints at once fail: the second finds files gone). With activation
    # checkpointing, under which Trainer's DDP refuses a parameter without a gradient (the encoder's own pooler was
    # one: "Expected to have finished reduction in the prior iteration"), the same losses.
    old = sorted(p.name for p in (tmp_path / "p2" / "out").glob("checkpoint-*"))
    again = smoke_config(tmp_path / "p2", per_device_train_batch_size=4, dropout=0.0, max_train_samples=9,
                         per_device_eval_batch_size=5, activation_checkpointing=True)
    proc = launch_run_simcse(again, 2)
    assert old and proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / "p2" / "out" / "run_args.json") as f:
        assert json.load(f)["activation_checkpointing"] is True
    logs["checkpointed"] = logged_losses(tmp_path / "p2" / "out")
    assert len(logs[1]) == 3, logs
    assert logs[2] == pytest.approx(logs[1], abs=1e-4), logs
    assert logs["checkpointed"] == pytest.approx(logs[1], abs=1e-4), logs
    # The gradients all-reduced, not summed in one batch: float rounding. The repeated pairs moved the Pearson
    # correlations by 0.5-1.3 and AVG by 1.1.
    assert scores[1].keys() == scores[2].keys()
    for name, metrics in scores[1].items():
        assert_scores_agree(scores[2][name], metrics)


def test_length_grouping_gives_two_processes_the_batches_of_one(tmp_path):
    """group_by_length: Trainer sizes the length groups by one process's batch (up to 50 batches a group, fewer on a
    small set: here groups of 8 rows for a batch of 8, of 12 for 4), and accelerate deals consecutive batches of the
    order to the processes, so 2 processes x 4 took other rows a step than 1 process x 8 (losses apart by up to 1e-3
    in 6 steps); grouped by the batch of both, they take the same rows and log the same losses."""
    from test_run_simcse import smoke_config

    logs = {}
    for processes, batch in ((1, 8), (2, 4)):
        folder = tmp_path / f"p{processes}"
        folder.mkdir()
        config = smoke_config(folder, train_data=[os.path.join(SHARED_DATA, "kornli", "xnli.dev.ko.tsv")],
                              max_train_samples=48, per_device_train_batch_size=batch, dropout=0.0,
                              train_sampling_strategy="group_by_length", logging_steps=1, num_train_epochs=1,
                              eval_steps=6, save_steps=6)
        proc = launch_run_simcse(config, processes)
        assert proc.returncode == 0, proc.stderr[-3000:]
        logs[processes] = logged_losses(folder / "out")
    assert len(logs[1]) == 6, logs
    assert logs[2] == pytest.approx(logs[1], abs=1e-5), logs


def test_each_process_draws_dropout_masks_of_its_own(tmp_path):
    """One process draws a mask for every row of the big batch; Trainer seeds every process alike, so 2 processes whose
    batches had one shape (sentences cut at 8 tokens) dropped the same units of their different sentences (all of the
    first step's masks alike). Dropout 0.1 drops a unit in one process and not the other about 18% of the time."""
    from test_run_simcse import smoke_config

    config = smoke_config(tmp_path, train_data=[os.path.join(SAMPLE, "sentences.txt")], train_format="text",
                          max_seq_length=8, per_device_train_batch_size=4, max_steps=1, test_data=[])
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           os.path.join(ROOT, "tests", "dropout_masks_worker.py"), config], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env=local_env(PYTHONPATH=ROOT, MASKS_DIR=str(tmp_path)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    masks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]
    assert masks[0].shape == masks[1].shape == (8, 8, 64)  # 4 sentences twice, 8 tokens, hidden size 64
    assert 0.12 < (masks[0] != masks[1]).float().mean() < 0.24


def test_two_processes_resumed_within_an_epoch_end_as_an_uninterrupted_run(tmp_path):
    """Each process restores its own random state (dropout on) and the data's order from the checkpoint: a copy of
    checkpoint-3 (step 1 of the second epoch's 2) resumed in 2 processes logs the uninterrupted run's losses and ends
    with its weights and scores."""
    from test_resume_and_guards import assert_same_export
    from test_run_simcse import smoke_config

    kept = {"save_total_limit": None, "load_best_model_at_end": False, "logging_steps": 1}
    uninterrupted = smoke_config(tmp_path, **kept)
    proc = launch_run_simcse(uninterrupted, 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    os.mkdir(resumed / "out")
    shutil.copytree(tmp_path / "out" / "checkpoint-3", resumed / "out" / "checkpoint-3")
    shutil.copy(tmp_path / "out" / "run_args.json", resumed / "out")
    again = smoke_config(resumed, resume_from_checkpoint="last", overwrite_output_dir=False, **kept)
    proc = launch_run_simcse(again, 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs, scores = [], []
    for out in (tmp_path / "out", resumed / "out"):
        logs.append(logged_losses(out))
        with open(out / "sts_results.json") as f:
            scores.append(json.load(f)["sample-sts"])
    assert list(logs[0]) == list(range(1, 9)) and logs[1] == pytest.approx(logs[0], abs=1e-6), logs
    assert scores[1] == pytest.approx(scores[0], abs=1e-6)
    assert_same_export(tmp_path / "out", resumed / "out")


def test_sigterm_to_one_process_stops_every_process_after_the_same_step_with_a_checkpoint(tmp_path):
    """SIGTERM reaches one process of two (rank 1, as step 1 begins): the processes agree at the next step that Trainer
    logs, evaluates or saves (step 3), save checkpoint-3 with the random states of both and stop; none hangs, at the
    exit neither (the run's DDP model freed before the process group)."""
    from test_run_simcse import smoke_config

    config = smoke_config(tmp_path, per_device_train_batch_size=4)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           os.path.join(ROOT, "tests", "sigterm_worker.py"), config], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=local_env(PYTHONPATH=ROOT, KILL_AT="1", KILL_RANK="1"))
    out = tmp_path / "out"
    assert proc.returncode != 0 and "exitcode  : 143" in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.count(f"SIGTERM: stopped at step 3 of 12; {out} holds checkpoint-3 (step 3)") == 1, \
        proc.stderr[-3000:]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-3"]
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= set(os.listdir(out / "checkpoint-3"))
    assert not (out / "config.json").exists()
    for rank in (0, 1):  # the DDP model freed first (run_simcse.run_script), not after the group at the exit
        assert f"rank {rank}: DDP models alive as the process group is destroyed: 0" in proc.stdout, proc.stdout


def test_a_diverging_run_of_two_processes_says_so_once(tmp_path):
    """Each process reads the loss Trainer gathers from both, so both stop at the same step; both said why, on one line
    run together ("...resume_from_checkpointerror: loss is nan at step 3...")."""
    from test_run_simcse import smoke_config

    proc = launch_run_simcse(smoke_config(tmp_path, learning_rate=1e30, max_grad_norm=0.0), 2)
    assert proc.returncode != 0 and proc.stderr.count("error: loss is nan at step 3; training stopped.") == 1, \
        proc.stderr[-3000:]
    assert "\nerror: loss is nan at step 3; training stopped. No checkpoint was saved yet. Lower the learning rate " \
           "or mend the data, and train again in another output_dir (or with overwrite_output_dir, which deletes " \
           "this run's checkpoints)\n" in proc.stderr


def launch_per_process(tmp_path, configs: list[str], **env: str) -> subprocess.CompletedProcess:
    """run_simcse.py in len(configs) processes (torchrun, gloo), process k on configs[k]: as machines that each read
    their own files. env: more environment variables."""
    wrapper = tmp_path / "config_by_rank.py"
    wrapper.write_text("import os, runpy, sys\nsys.argv = ['run_simcse.py', sys.argv[1 + int(os.environ['RANK'])]]\n"
                       f"runpy.run_path({os.path.join(ROOT, 'run_simcse.py')!r}, run_name='__main__')\n")
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc_per_node={len(configs)}", str(wrapper), *configs], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=local_env(PYTHONPATH=ROOT, **env))


def test_processes_that_would_not_train_one_run_are_refused(tmp_path):
    """Machines with their own disks: a resumption where only the first process sees the checkpoints (the other would
    train from step 0: it hung), a run whose second process reads another copy of the training file (mixed data), and
    one whose processes read other copies of the config, are refused in every process before anything is written or
    deleted."""
    from test_run_simcse import smoke_config

    settings = {"per_device_train_batch_size": 4, "max_train_samples": 16, "num_train_epochs": 1}
    (tmp_path / "node1").mkdir()
    proc = launch_run_simcse(smoke_config(tmp_path / "node1", **settings), 2)
    assert proc.returncode == 0, proc.stderr[-3000:]

    (tmp_path / "node2").mkdir()
    proc = launch_per_process(tmp_path, [
        smoke_config(tmp_path / node, **settings, resume_from_checkpoint="last", overwrite_output_dir=False)
        for node in ("node1", "node2")])
    assert proc.returncode != 0
    assert re.search(r"processes found different checkpoints to resume from \(the step of each process, 0 for none: "
                     r"[1-9]\d*, 0\)", proc.stderr), proc.stderr[-3000:]
    assert not (tmp_path / "node2" / "out").exists()

    configs = []
    # Each copy with one hypothesis edited, another in each: rows of another run than the first's, and not the same.
    for k, text in enumerate((SAMPLE_NLI.replace("밖에서 공을", "운동장에서 공을", 1),
                              SAMPLE_NLI.replace("밖에서 공을", "마당에서 공을", 1))):
        (tmp_path / f"copy{k}").mkdir()
        (tmp_path / f"copy{k}" / "nli.tsv").write_text(text, encoding="utf-8")
        # Over the first run's folder, which overwrite_output_dir lets another run replace, once nothing stops it.
        configs.append(smoke_config(tmp_path / f"copy{k}", **settings, output_dir=str(tmp_path / "node1" / "out"),
                                    train_data=[str(tmp_path / f"copy{k}" / "nli.tsv")]))
    before = sorted(os.listdir(tmp_path / "node1" / "out"))
    proc = launch_per_process(tmp_path, configs)
    assert proc.returncode != 0
    assert "the processes read other rows (train_rows_sha256 differ between them)" in proc.stderr, proc.stderr[-3000:]
    assert any(name.startswith("checkpoint-") for name in before)
    assert sorted(os.listdir(tmp_path / "node1" / "out")) == before

    # Each machine's own copy of the config, the copies not the same: the replicas trained at other learning rates,
    # and drifted apart without a word. Each its own output folder, as machines with their own disks may have.
    configs = []
    for k, rate in enumerate((5e-4, 3e-4)):
        (tmp_path / f"lr{k}").mkdir()
        configs.append(smoke_config(tmp_path / f"lr{k}", **settings, learning_rate=rate))
    proc = launch_per_process(tmp_path, configs)
    assert proc.returncode != 0
    assert "the processes were given other arguments (learning_rate differs between them)" in proc.stderr, \
        proc.stderr[-3000:]
    assert not any((tmp_path / f"lr{k}" / "out").exists() for k in range(2))


@pytest.mark.parametrize("missing", ["arguments file", "training file", "encoder folder", "encoder weights"])
def test_a_start_up_error_of_one_process_stops_every_process_with_its_message(tmp_path, encoder_dir, missing):
    """Machines with their own files, the second without the JSON arguments file, the training file, the encoder
    folder or the encoder's weights (found by the argument checks, the data loading and the model loading, each a
    stage of its own): the first process waited for it at the next collective operation and stopped with gloo's
    'Connection closed by peer' traceback (under NCCL it would wait for the collective's timeout); without the
    arguments file, which stops the second before it joins the process group, the first waited there (two launchers:
    still waiting after 200 s). Now every process names the one that stopped, and why."""
    from test_run_simcse import pretrained, smoke_config

    no_weights = tmp_path / "no-weights"
    shutil.copytree(encoder_dir, no_weights, ignore=shutil.ignore_patterns("*.safetensors"))
    no_file = str(tmp_path / "machine1" / "klue-bert-sup.json")
    changes, said = {
        "arguments file": ({}, f"{no_file}: file not found"),
        "training file": ({"train_data": ["/no/such/nli.tsv"]}, "/no/such/nli.tsv: file not found"),
        "encoder folder": (pretrained("/no/such/encoder"), "model_name_or_path: /no/such/encoder: no such folder"),
        "encoder weights": (pretrained(str(no_weights)), f"{no_weights}: "),
    }[missing]
    # bf16 against the launcher's fp16: a warning as the arguments are read, of the run as a whole.
    settings = {"per_device_train_batch_size": 4, "max_train_samples": 16, "num_train_epochs": 1, "bf16": True}
    for k in range(2):
        (tmp_path / f"machine{k}").mkdir()
    second = no_file if missing == "arguments file" else smoke_config(tmp_path / "machine1", **settings, **changes)
    proc = launch_per_process(tmp_path, [smoke_config(tmp_path / "machine0", **settings, **pretrained(encoder_dir)),
                                         second], ACCELERATE_MIXED_PRECISION="fp16")
    assert proc.returncode != 0
    assert f"error: process 1 of 2 stopped at start-up, so this one stops too: {said}" in proc.stderr, \
        proc.stderr[-3000:]
    assert proc.stderr.count("the launcher asks for mixed_precision fp16 and the arguments for bf16") == 1
    assert "Connection closed by peer" not in proc.stderr
    assert not any((tmp_path / f"machine{k}" / "out").exists() for k in range(2))


def test_uneven_or_split_batches_across_processes_are_refused_before_training(tmp_path):
    """even_batches false crashed at the last step (gathers of different sizes); split_batches true trained each
    process on half the batch that the card gave. Both are errors at start-up now."""
    from test_run_simcse import smoke_config

    config = smoke_config(tmp_path, per_device_train_batch_size=4,
                          accelerator_config={"even_batches": False, "split_batches": True})
    proc = launch_run_simcse(config, 2)
    assert proc.returncode != 0
    assert "accelerator_config.even_batches: false" in proc.stderr + proc.stdout
    assert ("accelerator_config.split_batches: true splits each batch of per_device_train_batch_size between the 2 "
            "processes") in proc.stderr + proc.stdout
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("world_size, env, alone", [
    # accelerate's simple launcher, asked for 2 processes on a CPU or one GPU: it sets these and starts one process
    (1, {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1"}, True),
    (2, {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "WORLD_SIZE": "2"}, False),  # --multi_gpu on a CPU
    (1, {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "WORLD_SIZE": "1"}, False),  # a world of 1 asked for
    (1, {"MASTER_ADDR": "127.0.0.1"}, False),  # python run_simcse.py in a shell that sets MASTER_ADDR
    (1, {"ACCELERATE_USE_CPU": "True"}, False),  # accelerate launch --cpu, 1 process
    (1, {}, False),
])
def test_one_process_is_said_to_be_started_alone_by_the_simple_launchers_settings_only(world_size, env, alone):
    assert run_arguments.launched_alone(world_size, env) is alone


def test_accelerate_asked_for_two_processes_on_a_cpu(tmp_path):
    """On a CPU `accelerate launch --num_processes 2` starts one process, which says so (the run trains alone);
    `--multi_gpu` starts two, gloo processes, whose negatives are gathered, and one of which logs the run."""
    from test_run_simcse import smoke_config

    said = {}
    for flags in (["--cpu"], ["--multi_gpu"]):
        folder = tmp_path / flags[0].strip("-")
        folder.mkdir()
        config = smoke_config(folder, per_device_train_batch_size=4, max_train_samples=16, num_train_epochs=1)
        # Not local_env: MASTER_ADDR must be accelerate's own.
        env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
        proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", *flags, "--num_processes", "2",
                               "--main_process_port", free_port(), "run_simcse.py", config], cwd=ROOT,
                              capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        said[flags[0]] = proc.stderr
    assert "started this one alone" in said["--cpu"], said["--cpu"][-3000:]
    assert "contrastive batch (rows that are negatives for each other): 4 rows\n" in said["--cpu"]
    assert "started this one alone" not in said["--multi_gpu"]
    # One process tells the run (each had logged every line); the other only warnings, as Trainer's log_level_replica.
    assert said["--multi_gpu"].count("negatives for each other): 8 rows, gathered from 2 processes") == 1
