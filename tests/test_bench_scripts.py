"""The benchmark scripts against the product's current interfaces (their timings are not tested: bench/RESULTS.md)."""

import re
import subprocess
import sys

import pytest
from transformers import AutoTokenizer

from bench import quality
from bench.throughput import bf16_peak_tflops
from conftest import ROOT, SAMPLE
from modeling_simcse import SimCSEModel
from sts_evaluation import main as evaluate_command


def test_quality_scores_an_export_by_its_own_embedding_and_a_plain_encoder_by_its_cls_state(
        encoder_dir, tmp_path, monkeypatch):
    """bench/quality.py scores the untrained encoder, sentence-transformers' output (plain encoders) and this project's
    export with one function; the evaluation command refuses --pooler for an export, so it must not pass one there."""
    monkeypatch.setattr(quality, "SETS", [f"sample={SAMPLE}/sts.tsv"])
    export = str(tmp_path / "export")
    SimCSEModel.from_encoder(encoder_dir, pooler_type="cls_before_pooler").export_encoder(
        export, AutoTokenizer.from_pretrained(encoder_dir), 64)

    plain = quality.evaluate(encoder_dir)["sample"]
    exported = quality.evaluate(export)["sample"]

    want = evaluate_command([encoder_dir, "--set", f"sample={SAMPLE}/sts.tsv", "--pooler", "cls_before_pooler"])
    assert plain == pytest.approx(want["sample"], abs=1e-6)
    assert exported == pytest.approx(plain, abs=1e-3)  # the export of an untrained encoder: the same CLS vectors


def test_quality_table_compares_the_means_of_this_project_s_runs_however_they_are_named():
    """The difference row of bench/quality.py's table: the mean of this project's runs (named as --embedding-chunk-size
    names them) minus sentence-transformers', with Welch's standard error, computed here directly."""
    def results(korsts_avg: float) -> dict:
        return {"korsts-test": {"avg": korsts_avg, "cosine_spearman": 70.0},
                "klue-sts-dev": {"avg": 60.0, "cosine_spearman": 65.0}}

    ours = "this project: run_simcse.py, embedding_chunk_size 16"
    runs = {quality.SYSTEMS["st"][0]: {42: results(73.0), 43: results(74.0)},
            ours: {42: results(75.0), 43: results(73.0)}}
    table = quality.quality_table(runs, ours)
    difference = table.splitlines()[-1].split(" | ")
    assert difference[:2] == ["| this project − sentence-transformers (difference of means ± s.e.)", "2 vs 2 seeds"]
    error = ((2.0 / 2) + (0.5 / 2)) ** 0.5  # sample variances 2.0 (75, 73) and 0.5 (73, 74), 2 runs each
    assert difference[2] == f"+0.50 ± {error:.2f}"
    assert f"| {ours}: mean | 2 seeds | 74.00 |" in table
    assert "difference of means" not in quality.quality_table(runs)  # named otherwise, no runs of this project


def run_script(*argv: str) -> list[str]:
    """Run a bench script as a user does, from the repository root -> its stdout lines (fails on a non-zero exit)."""
    proc = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.splitlines()


def test_throughput_script_times_both_trainers_and_ends_with_the_ratio():
    """bench/throughput.py, the script a GPU reviewer runs with --shape bert-base --device cuda, in its smallest
    form."""
    lines = run_script("bench/throughput.py", "--shape", "small", "--device", "cpu", "--batch", "8", "--warmup", "1",
                       "--steps", "1", "--train-only")
    rows = [line for line in lines if line.startswith("| train:")]
    assert [row.split(" | ")[0] for row in rows] == ["| train: this project", "| train: sentence-transformers"]
    assert rows[-1].endswith("| 1.00x |")
    assert re.fullmatch(r"train_vs_st=\d+\.\d\d", lines[-1])


def test_epoch_rehearsal_script_runs_the_whole_job_and_splits_its_time():
    """bench/epoch_rehearsal.py in its smallest form: 4 steps, 2 dev evaluations, final evaluation and export (the tiny
    shape: the small one spent 25 of its 30 s scoring the full KorSTS and KLUE-STS sets)."""
    lines = run_script("bench/epoch_rehearsal.py", "--shape", "tiny", "--device", "cpu", "--triplets", "64",
                       "--batch", "16", "--evaluations", "2")
    phases = {line.split(" | ")[0].removeprefix("| ") for line in lines if line.startswith("| ") and "---" not in line}
    assert {"load_data", "tokenize (1 process)", "train", "dev_evaluations (part of train)",
            "checkpoint_saves (part of train)", "final_evaluation", "export"} <= phases
    windows = [tuple(map(int, m.groups())) for m in map(re.compile(r"\| (\d+)-(\d+) \|").match, lines) if m]
    assert windows[0] == (1, 1)  # step 1 apart (the compiler's, on a GPU)
    assert [step for first, last in windows for step in range(first, last + 1)] == [1, 2, 3, 4]


def test_memory_script_measures_the_plain_the_cached_and_the_checkpointed_step():
    """bench/memory.py, each path in its own process (a step adds about 80-95 MiB here: the table's MiB are whole)."""
    lines = run_script("bench/memory.py", "--shape", "small", "--device", "cpu", "--batches", "8", "--chunk", "8")
    row = next(line for line in lines if line.startswith("| 8 |"))
    plain, cached, cached_ratio, checkpointed, checkpointed_ratio = (float(cell) for cell in
                                                                     row.strip("| ").split(" | ")[1:])
    assert plain > 0 and cached > 0 and cached_ratio == pytest.approx(cached / plain, rel=0.05)
    assert checkpointed > 0 and checkpointed_ratio == pytest.approx(checkpointed / plain, rel=0.05)


def test_tokenization_script_times_each_setting_in_its_own_process():
    """bench/tokenization.py, one process count: a row for the tokenizer's thread pool as it comes and one without."""
    lines = run_script("bench/tokenization.py", "--triplets", "300", "--processes", "2")
    rows = [line.strip("| ").split(" | ") for line in lines if line.startswith("| 2 |")]
    assert [row[:2] for row in rows] == [["2", "unset"], ["2", "false"]]
    for _, _, seconds, cpu, busy, _ in rows:  # busy = CPU / wall seconds, each printed rounded (to 0.01, 0.1)
        seconds, cpu, busy = float(seconds), float(cpu), float(busy)
        assert cpu > 0 and (cpu - 0.005) / (seconds + 0.005) - 0.05 <= busy <= (cpu + 0.005) / (seconds - 0.005) + 0.05
    assert lines[-1].startswith("fastest: 2 process(es)") and lines[-1].endswith("default (1, unset): not timed")


def test_the_bf16_peak_is_the_device_s_own_part():
    """A PCIe or NVL Hopper is credited with its own (lower) peak, not the SXM part's; an unknown device has none."""
    assert bf16_peak_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert bf16_peak_tflops("NVIDIA H200") == 989.4
    assert bf16_peak_tflops("NVIDIA H100 PCIe") == 756.5
    assert bf16_peak_tflops("NVIDIA H200 NVL") == 835.5
    assert bf16_peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert bf16_peak_tflops("NVIDIA A10") == 125.0
    assert bf16_peak_tflops("NVIDIA A10G") is None
