"""Datasets for DataLoader worker tests, in a module of their own so that a worker started by spawn or forkserver,
which imports it, imports little."""

import os
import sys
import time

from torch.utils.data import Dataset


class WorkerPids(Dataset):
    """20 items, each the pid of the worker that made it, a little slowly (a worker is at work when signalled)."""

    def __len__(self) -> int:
        return 20

    def __getitem__(self, i: int) -> int:
        time.sleep(0.02)
        return os.getpid()


class ModulesOfWorker(Dataset):
    """One item: the names of the modules the worker had loaded when it made it."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, i: int) -> list[str]:
        return sorted(sys.modules)
