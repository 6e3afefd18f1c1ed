"""The benchmark scripts against the product's current interfaces (their timings are not tested: bench/RESULTS.md)."""

import pytest
from transformers import AutoTokenizer

from bench import quality
from conftest import SAMPLE
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
