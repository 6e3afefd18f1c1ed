"""run_simcse.py's job, with SIGTERM sent to this process as step KILL_AT begins (in the process of rank KILL_RANK, 0 by
default): what a scheduler's time limit or preemption does to a run. Where the process group is destroyed, each process
prints how many DDP models are still alive then (freed after it, one hung the process at exit: run_simcse.run_script).
With KILL_GROUP=1, SIGTERM goes instead to every process of this one's group (DataLoader workers too), from another
process, as a scheduler sends it, at the first prediction step of the dev evaluation after step KILL_AT (start this
process in a group of its own).

    KILL_AT=5 python tests/sigterm_worker.py CONFIG [FLAGS]
    KILL_AT=1 KILL_RANK=1 torchrun --standalone --nproc_per_node 2 tests/sigterm_worker.py CONFIG [FLAGS]
    KILL_AT=3 KILL_GROUP=1 setsid python tests/sigterm_worker.py CONFIG --dataloader_num_workers 2 [FLAGS]
"""

import gc
import os
import signal
import subprocess
import sys

import torch
from transformers import TrainerCallback

import run_simcse


class SendSigterm(TrainerCallback):
    def __init__(self):
        self.group_killed = False

    def on_step_begin(self, args, state, control, **kwargs):
        if os.environ.get("KILL_GROUP"):
            return
        if state.global_step + 1 == int(os.environ["KILL_AT"]) and os.environ.get("RANK", "0") == os.environ.get(
                "KILL_RANK", "0"):
            os.kill(os.getpid(), signal.SIGTERM)

    def on_prediction_step(self, args, state, control, **kwargs):
        if os.environ.get("KILL_GROUP") and state.global_step == int(os.environ["KILL_AT"]) and not self.group_killed:
            self.group_killed = True
            group = os.getpgid(0)
            subprocess.run([sys.executable, "-c", f"import os, signal; os.killpg({group}, signal.SIGTERM)"])


def destroy_process_group(destroy=torch.distributed.destroy_process_group):
    alive = sum(isinstance(o, torch.nn.parallel.DistributedDataParallel) for o in gc.get_objects())
    print(f"rank {os.environ.get('RANK')}: DDP models alive as the process group is destroyed: {alive}", flush=True)
    destroy()


if __name__ == "__main__":
    torch.distributed.destroy_process_group = destroy_process_group
    run_simcse.run_script(callbacks=[SendSigterm()])
