"""A zoo writer process for the database tests: `python zoo_writer.py URL DATASET START STOP [DELAY]`.

Writes records for the configs with indices START..STOP-1 of a seeded config list, 5 per transaction, sleeping
DELAY seconds between transactions (so a test can kill it mid-run). The values are derived from the index, so
every writer of the same index writes the same record.
"""

import sys
import time

import numpy as np

from mednns_fast.metaspace import Zoo, ZooRecord
from mednns_fast.nas import sample_config


def configs(n: int) -> list[dict]:
    rng = np.random.default_rng(1234)
    return [sample_config(rng) for _ in range(n)]


def record(dataset: str, i: int, cfg: dict) -> ZooRecord:
    return ZooRecord(dataset, cfg, params=1000 + i, flops=2000 + i, val_acc=(i % 100) / 100, val_loss=i / 7,
                     test_acc=(i % 50) / 50, test_loss=i / 11, supernet_digest="digest")


def main() -> None:
    url, dataset, start, stop = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    delay = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    zoo = Zoo(url)
    cfgs = configs(stop)
    have = zoo.keys(dataset)
    todo = [i for i in range(start, stop) if record(dataset, i, cfgs[i]).key not in have]
    for b in range(0, len(todo), 5):
        zoo.add([record(dataset, i, cfgs[i]) for i in todo[b:b + 5]])
        print("committed", flush=True)
        time.sleep(delay)


if __name__ == "__main__":
    main()
