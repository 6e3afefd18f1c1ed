"""The fast paths (packed rows; length-sorted pieces) give the plain padded path's loss, gradients and scores; in bf16,
within its rounding."""

import json

import pytest
import torch
from torch._dynamo.testing import CompileCounter
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import AutoModel, TrainerCallback

import run_arguments
import run_simcse
from conftest import SAMPLE, assert_scores_agree, input_widths, without_dropout
from data_collator import SimCSECollator
from modeling_simcse import SimCSEModel
from test_gradient_cache import assert_same, loss_and_grads
from test_loss import ROWS, _ids
from test_packing import WIDTH, features
from test_run_simcse import smoke_config


@pytest.mark.parametrize("pooler", ["cls", "avg"])
def test_length_buckets_same_loss_and_gradients(encoder_dir, tokenizer, pooler):
    """The same loss and gradients, from pieces of the length-sorted sentences each cut to its own longest."""
    ids, mask = _ids(tokenizer, ROWS)
    lengths = mask.reshape(-1, mask.shape[-1]).sum(1)  # of the 9 sentences
    longest = [int(piece[0]) for piece in lengths.sort(descending=True).values.tensor_split(4)]
    assert longest != [mask.shape[-1]] * 4  # pieces that are cut, or no test of the cut
    results = []
    for buckets, widths in ((1, [mask.shape[-1]]), (4, longest)):
        torch.manual_seed(0)  # the same initial MLP for both
        model = SimCSEModel.from_encoder(encoder_dir, pooler_type=pooler, hard_negative_weight=0.2,
                                         length_buckets=buckets)
        without_dropout(model.train())
        seen = input_widths(model.encoder.encoder.layer[0])
        results.append(loss_and_grads(model, ids, mask))
        assert seen == widths
    assert_same(results[0], results[1])


def short_run(folder, **changes):
    """The smoke config without dropout, with `changes`, run in `folder`
    -> (its output folder, its sample-sts scores)."""
    folder.mkdir()
    run_simcse.main([smoke_config(folder, dropout=0.0, **changes)])
    with open(folder / "out" / "sts_results.json") as f:
        return folder / "out", json.load(f)["sample-sts"]


@pytest.mark.parametrize("fast", [{"pack_sequences": True}, {"pack_sequences": False, "length_buckets": 8}],
                         ids=["packed", "length-buckets"])
def test_fast_path_same_scores_after_a_short_run(tmp_path, fast):
    scores, batches = [], []
    for name, layout in (("plain", {"pack_sequences": False, "length_buckets": 1}), ("fast", fast)):
        out, run_scores = short_run(tmp_path / name, **layout)
        scores.append(run_scores)
        with open(out / "environment.json") as f:
            batches.append(json.load(f)["training_batches"])
    assert batches == ["padded", "packed" if fast["pack_sequences"] else "padded"]
    # Same math; float sums in another order, amplified by 12 Adam steps at lr 5e-4.
    assert_scores_agree(scores[1], scores[0])
    assert scores[0]["avg"] != pytest.approx(0.0, abs=1.0)  # a real score, not an empty comparison


def test_the_cuda_graphs_run_gives_the_eager_scores(tmp_path, monkeypatch):
    """A run as one GPU trains by default (`cuda_graphs`: batches of the few fixed shapes, compiled layers in mode
    "reduce-overhead", a step mark each pass), here on the CPU, which records no graph, past the check that asks for
    a GPU: the eager run's scores (2026-12-05: equal to 0.01)."""
    monkeypatch.setattr(run_arguments, "cuda_graphs_conflicts", lambda *args: [])
    _, eager = short_run(tmp_path / "eager", cuda_graphs=False)
    out, graphs = short_run(tmp_path / "graphs", cuda_graphs=True)
    with open(out / "environment.json") as f:
        assert json.load(f)["cuda_graphs"] is True
    assert graphs == pytest.approx(eager, abs=0.1)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("pooler", ["cls", "avg"])
def test_fast_path_in_bf16_gives_the_plain_loss_within_bf16_tolerance(encoder_dir, tokenizer, pooler, attention):
    """The fast path as a bf16 GPU run takes it (packed rows under bf16 autocast; on CPU here) against the plain path
    (padded, fp32) on one fixed batch: the same loss within bf16 rounding, gradients pointing the same way."""
    rows = features(tokenizer, ROWS)
    results = []
    for width, bf16 in ((None, False), (WIDTH, True)):
        torch.manual_seed(0)  # the same initial MLP for both
        encoder = AutoModel.from_pretrained(encoder_dir, attn_implementation=attention)
        model = without_dropout(SimCSEModel.from_encoder(encoder, pooler_type=pooler, hard_negative_weight=0.4).train())
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            results.append(loss_and_grads(model, SimCSECollator(tokenizer.pad_token_id, pack_width=width)(rows)))
    (plain, plain_grads), (fast, fast_grads) = results
    assert fast != plain  # bf16 really ran
    assert fast == pytest.approx(plain, rel=5 * 2**-8)  # bf16 keeps 8 significant bits: 2**-8 relative per rounding
    flat = [torch.cat([g[k].flatten().float() for k in sorted(g)]) for g in (plain_grads, fast_grads)]
    assert torch.nn.functional.cosine_similarity(*flat, dim=0) > 0.99


def test_the_encoder_runs_without_cudnn_attention(encoder_dir, tokenizer):
    """sdpa's cuDNN kernel builds a plan for every new input shape (on an H100 that made an encode pass 5x slower,
    bench/RESULTS.md): training steps and encoding run the encoder with it switched off, and switch it back after."""
    model = SimCSEModel.from_exported(encoder_dir)
    cudnn_on = []
    model.encoder.register_forward_pre_hook(lambda *_: cudnn_on.append(torch.backends.cuda.cudnn_sdp_enabled()))
    model.encode(["첫 번째 문장입니다.", "두 번째 문장입니다."], tokenizer)
    model.train()
    model(**SimCSECollator(tokenizer.pad_token_id, pack_width=WIDTH)(features(tokenizer, ROWS))).loss.backward()
    assert len(cudnn_on) == 2 and not any(cudnn_on)
    assert torch.backends.cuda.cudnn_sdp_enabled()


@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_compiled_layers_give_the_eager_loss_and_gradients(encoder_dir, tokenizer, cuda_graphs):
    """`compile_layers` (torch.compile of each encoder layer, in place) on a packed batch, dropout off: the eager loss
    and gradients, under the same parameter names, and the eager embeddings from `encode` (which runs the layers
    eagerly). With `cuda_graphs` (mode "reduce-overhead", whose graphs only a GPU records) this checks the step marks
    and the copied token states."""
    batch = SimCSECollator(tokenizer.pad_token_id, pack_width=WIDTH)(features(tokenizer, ROWS))
    sentences = [s for row in ROWS for s in row]
    results, embeddings = [], []
    for compiled in (False, True):
        torch.manual_seed(0)  # the same initial MLP for both
        model = SimCSEModel.from_encoder(encoder_dir, pooler_type="cls", hard_negative_weight=0.2)
        without_dropout(model.train())
        names = list(model.state_dict())
        if compiled:
            assert model.compile_layers(cuda_graphs=cuda_graphs) == model.config.encoder.num_hidden_layers
            assert list(model.state_dict()) == names
        results.append(loss_and_grads(model, batch))
        embeddings.append(model.encode(sentences, tokenizer, batch_size=4))
    assert_same(results[0], results[1])
    torch.testing.assert_close(embeddings[1], embeddings[0], rtol=1e-5, atol=1e-5)


def test_compiled_layers_serve_training_steps_only(encoder_dir, tokenizer):
    """Evaluation (scored STS pairs in eval mode) and `encode` run compiled layers eagerly: nothing is compiled for
    them, before or after the training step compiled, and training steps after an evaluation reuse that compile."""
    counter = CompileCounter()  # a torch.compile backend that counts the graphs it is given and runs them as they are
    torch.manual_seed(0)
    model = SimCSEModel.from_encoder(encoder_dir, pooler_type="cls")
    model.compile_layers(backend=counter)
    pairs = SimCSECollator(tokenizer.pad_token_id)(
        [dict(f, labels=2.5) for f in features(tokenizer, [r[:2] for r in ROWS])])
    packed = SimCSECollator(tokenizer.pad_token_id, pack_width=WIDTH)(features(tokenizer, ROWS))
    sentences = [s for row in ROWS for s in row]

    def evaluate():
        with torch.no_grad():
            assert model.eval()(**pairs).scores.shape == (len(ROWS), 4)
        assert model.encode(sentences, tokenizer, batch_size=4).shape[0] == len(sentences)

    evaluate()
    assert counter.frame_count == 0
    model.train()(**packed).loss.backward()
    compiled = counter.frame_count
    assert compiled > 0
    evaluate()
    model.train()(**packed).loss.backward()
    assert counter.frame_count == compiled


def test_compiled_layers_same_scores_after_a_short_run(tmp_path):
    """`"compile_layers": true` through the real job (training, dev evaluations, best checkpoint, export): the scores of
    the eager run, and an export that AutoModel loads with the trained weights."""
    (eager, eager_scores), (compiled, compiled_scores) = (
        short_run(tmp_path / name, compile_layers=on) for name, on in (("eager", False), ("compiled", True)))
    assert_scores_agree(compiled_scores, eager_scores)
    weights = [AutoModel.from_pretrained(out).state_dict() for out in (eager, compiled)]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:  # 12 Adam steps of up to lr = 5e-4 each; float reordering moves a few entries by < 1e-3
        difference = (weights[1][key] - weights[0][key]).abs()
        assert difference.max() < 1e-3 and difference.mean() < 1e-5, key


# Operators that make the host wait for the device on CUDA (a device value read on the host, or a data-dependent size).
HOST_SYNCING = ("_local_scalar_dense", "nonzero", "masked_select", "unique", "repeat_interleave", "is_nonzero", "equal")


class OperatorLog(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func))
        return func(*args, **(kwargs or {}))


class RecordStep(TrainerCallback):
    """Logs every operator of training step `step`, from its start to its end (forward, backward, clipping,
    optimizer)."""

    def __init__(self, step: int):
        self.step, self.log = step, OperatorLog()

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step - 1:
            self.log.__enter__()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            self.log.__exit__(None, None, None)


@pytest.mark.parametrize("train_format", ["nli", "text"])
def test_a_training_step_never_waits_for_the_device(tmp_path, train_format):
    """A Trainer step of the real job (packed batches, fused AdamW as in the GPU configs) runs no operator that reads a
    device value on the host, so the host can queue the next step's kernels while the device runs this one."""
    record = RecordStep(step=2)
    changes = {"train_format": "text", "train_data": [f"{SAMPLE}/sentences.txt"]} if train_format == "text" else {}
    run_simcse.main([smoke_config(tmp_path, optim="adamw_torch_fused", max_steps=3, **changes)], callbacks=[record])
    names = record.log.names
    assert any("addmm" in n or ".mm." in n for n in names) and any("_fused_adamw" in n for n in names)  # a real step
    assert [n for n in names if any(op in n for op in HOST_SYNCING)] == []
