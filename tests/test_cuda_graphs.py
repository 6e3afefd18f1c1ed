"""`cuda_graphs` (the compiled encoder layers replayed as CUDA graphs) against the eager path, on a GPU: the same loss,
gradients and embeddings, fresh dropout at every replay, and the same scores after a short run of the real job; and
evaluation's `FirstTokenLayer` through the GPU's attention kernels, fp32 and bf16.

CUDA graphs exist only on a CUDA device, so these tests are skipped elsewhere (CI has no GPU); on a GPU:
`python -m pytest tests/test_cuda_graphs.py`. The parts a CPU can check (rows of padding change nothing, the step marks
and copied token states of the compiled path, evaluation run eagerly, the settings refused) are in test_packing.py,
test_fast_path.py and test_run_simcse.py.
"""

import pytest
import torch

from conftest import assert_scores_agree, without_dropout
from data_collator import SimCSECollator
from modeling_simcse import SimCSEModel
from run_simcse import CUDA_GRAPH_SHAPES
from test_fast_path import short_run
from test_loss import ROWS
from test_packing import WIDTH, features, padded_sentences

DEVICE = "cuda"
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")


def model_on_device(encoder_dir, cuda_graphs: bool) -> SimCSEModel:
    torch.manual_seed(0)  # the same initial MLP for every model
    model = SimCSEModel.from_encoder(encoder_dir, pooler_type="cls", hard_negative_weight=0.2).to(DEVICE).train()
    if cuda_graphs:
        model.compile_layers(cuda_graphs=True)
    return model


def device_batch(tokenizer) -> dict[str, torch.Tensor]:
    batch = SimCSECollator(tokenizer.pad_token_id, pack_width=WIDTH, **CUDA_GRAPH_SHAPES)(features(tokenizer, ROWS))
    return {k: v.to(DEVICE) for k, v in batch.items()}


def step(model: SimCSEModel, batch: dict) -> tuple[float, dict[str, torch.Tensor]]:
    """One forward + backward -> the loss and a copy of every gradient."""
    model.zero_grad(set_to_none=True)
    loss = model(**batch).loss
    loss.backward()
    return loss.item(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def test_replayed_graphs_give_the_eager_loss_gradients_and_embeddings(encoder_dir, tokenizer):
    batch, sentences = device_batch(tokenizer), [s for row in ROWS for s in row]
    eager = without_dropout(model_on_device(encoder_dir, cuda_graphs=False))
    graphs = without_dropout(model_on_device(encoder_dir, cuda_graphs=True))
    expected = step(eager, batch)
    for _ in range(3):  # the first run warms up, the second records, the third replays
        loss, grads = step(graphs, batch)
        assert loss == pytest.approx(expected[0], abs=1e-4)
        assert grads.keys() == expected[1].keys()
        for name, grad in grads.items():
            torch.testing.assert_close(grad, expected[1][name], atol=1e-4, rtol=1e-3, msg=name)
    # `encode` (eval mode) runs the layers eagerly, between replays of the training graphs: the trained weights'
    # embeddings, and the next training step replays as before.
    reference = eager.encode(sentences, tokenizer, batch_size=4)
    torch.testing.assert_close(graphs.encode(sentences, tokenizer, batch_size=4), reference, atol=1e-4, rtol=1e-3)
    assert step(graphs.train(), batch)[0] == pytest.approx(expected[0], abs=1e-4)


def test_every_replay_draws_fresh_dropout(encoder_dir, tokenizer):
    batch = device_batch(tokenizer)
    graphs = model_on_device(encoder_dir, cuda_graphs=True)
    losses = [step(graphs, batch)[0] for _ in range(6)]
    assert len(set(losses[2:])) == 4, losses  # the replays (after warm-up and recording) all differ


def test_same_scores_as_eager_after_a_short_run(tmp_path):
    """The smoke job on the GPU, dropout off (so the runs can agree), eager and with `"cuda_graphs": true`."""
    (_, eager_scores), (_, graph_scores) = (
        short_run(tmp_path / name, use_cpu=False, cuda_graphs=on) for name, on in (("eager", False), ("graphs", True)))
    assert_scores_agree(graph_scores, eager_scores)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_evaluation_runs_the_last_layer_for_the_first_token_on_the_gpu(encoder_dir, tokenizer, dtype):
    """The embeddings of evaluation (the last layer for the CLS token alone) against the whole pass of training mode
    without dropout, the same kernels up to that layer; test_packing.py checks each encoder type on the CPU."""
    model = SimCSEModel.from_encoder(encoder_dir, pooler_type="cls_before_pooler").to(DEVICE, dtype)
    ids, mask = (t.to(DEVICE) for t in padded_sentences(tokenizer))
    tokens_a_row = []
    model.encoder.encoder.layer[-1].intermediate.register_forward_hook(
        lambda module, args, out: tokens_a_row.append(args[0].shape[1]))
    with torch.no_grad():
        whole = without_dropout(model.train()).embed(ids, mask)
        first_token = model.eval().embed(ids, mask)
    assert tokens_a_row == [ids.shape[1], 1]
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2  # bf16: 8 significant bits, a few roundings
    torch.testing.assert_close(first_token, whole, atol=tolerance, rtol=tolerance)
