"""run_simcse.py's job, saving the dropout mask of each process's first training step: where the encoder's first
dropout (the embeddings') zeroed its output, as a bool tensor in MASKS_DIR/rank<RANK>.pt.

    MASKS_DIR=DIR torchrun --standalone --nproc_per_node 2 tests/dropout_masks_worker.py CONFIG [FLAGS]
"""

import os

import torch
from transformers import TrainerCallback

import run_simcse


class SaveFirstMask(TrainerCallback):
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        dropout = next(m for m in model.modules() if isinstance(m, torch.nn.Dropout))
        path = os.path.join(os.environ["MASKS_DIR"], f"rank{os.environ.get('RANK', '0')}.pt")

        def save(module, inputs, output):
            if module.training:  # not the dev evaluations
                torch.save(output == 0, path)
                handle.remove()

        handle = dropout.register_forward_hook(save)


if __name__ == "__main__":
    run_simcse.run_script(callbacks=[SaveFirstMask()])
