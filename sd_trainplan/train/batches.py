"""Which samples each weight update sees, keyed by the global sample index.

An epoch is every training image `repeats` times, shuffled within its bucket and cut into
update batches of `effective_batch` images (the last batch of a bucket is filled from the
start of the same bucket's order, so shapes stay static). Update u holds global samples
u*eb .. u*eb+eb-1; micro-batch m on process p takes its slice of BS of them. So 1 process at
BS 4 and 2 processes at BS 2 see the same samples, and a resumed run continues exactly.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

Bucket = Tuple[int, int]


@dataclass(frozen=True)
class Slice:
    bucket: Bucket
    positions: Tuple[int, ...]   # rows in that bucket's latent tensors
    keys: Tuple[int, ...]        # global sample indices (the keys of every random number)


class UpdateOrder:
    def __init__(self, bucket_sizes: Dict[Bucket, int], repeats: int, effective_batch: int, seed: int):
        self.buckets = sorted(bucket_sizes)
        self.sizes = bucket_sizes
        self.repeats = repeats
        self.eb = effective_batch
        self.seed = seed
        self.updates_per_epoch = sum(-(-n * repeats // effective_batch) for n in bucket_sizes.values())
        self._cache: Dict[int, List[Tuple[Bucket, List[int]]]] = {}

    def epoch_batches(self, epoch: int) -> List[Tuple[Bucket, List[int]]]:
        if epoch not in self._cache:
            rng = random.Random(f"order-{self.seed}-{epoch}")
            batches = []
            for b in self.buckets:
                rows = [r for r in range(self.sizes[b]) for _ in range(self.repeats)]
                rng.shuffle(rows)
                for start in range(0, len(rows), self.eb):
                    chunk = rows[start:start + self.eb]
                    chunk += (rows * (self.eb // len(rows) + 1))[:self.eb - len(chunk)]  # fill from the start
                    batches.append((b, chunk))
            rng.shuffle(batches)
            self._cache = {epoch: batches}
        return self._cache[epoch]

    def update(self, u: int) -> Tuple[Bucket, List[int]]:
        bucket, rows = self.epoch_batches(u // self.updates_per_epoch)[u % self.updates_per_epoch]
        return bucket, rows

    def micro(self, u: int, micro: int, process: int, batch_size: int, processes: int) -> Slice:
        bucket, rows = self.update(u)
        start = (micro * processes + process) * batch_size
        keys = tuple(u * self.eb + start + k for k in range(batch_size))
        return Slice(bucket, tuple(rows[start:start + batch_size]), keys)


def epoch_of(u: int, order: UpdateOrder) -> float:
    return u / order.updates_per_epoch


def class_rows(keys: Sequence[int], n_class: int, seed: int) -> List[int]:
    """Prior-preservation images for a micro-batch: a seeded permutation cycled by sample index."""
    out = []
    for k in keys:
        cycle, pos = divmod(k, n_class)
        perm = list(range(n_class))
        random.Random(f"class-{seed}-{cycle}").shuffle(perm)
        out.append(perm[pos])
    return out
