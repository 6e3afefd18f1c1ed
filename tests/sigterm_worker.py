"""run_simcse.py's job, with SIGTERM sent to this process as step KILL_AT begins (in the process of rank KILL_RANK, 0 by
default, KILL_TIMES times, 1 by default): what a scheduler's time limit or preemption does to a run.

    KILL_AT=5 python tests/sigterm_worker.py CONFIG [FLAGS]
    KILL_AT=1 KILL_RANK=1 torchrun --standalone --nproc_per_node 2 tests/sigterm_worker.py CONFIG [FLAGS]
"""

import os
import signal
import sys

import torch
from transformers import TrainerCallback

import run_simcse


class SendSigterm(TrainerCallback):
    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step + 1 == int(os.environ["KILL_AT"]) and os.environ.get("RANK", "0") == os.environ.get(
                "KILL_RANK", "0"):
            for _ in range(int(os.environ.get("KILL_TIMES", "1"))):
                os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    try:
        run_simcse.main(sys.argv[1:], callbacks=[SendSigterm()])
    finally:  # as run_simcse.py does
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
