"""A dataset for DataLoader worker tests, in a module of its own so that a worker started by spawn or forkserver,
which imports it, imports little: 20 items, each the pid of the worker that made it, a little slowly (a worker is at
work when signalled)."""

import os
import time

from torch.utils.data import Dataset


class WorkerPids(Dataset):
    def __len__(self) -> int:
        return 20

    def __getitem__(self, i: int) -> int:
        time.sleep(0.02)
        return os.getpid()
