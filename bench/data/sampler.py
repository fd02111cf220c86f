"""Speaker-balanced batches: ``m`` utterances of each of ``n`` distinct speakers.

Contrastive losses need positives in every batch, so a global batch holds ``n = speakers_per_batch``
different speakers with ``m = utts_per_speaker`` utterances each (``B = n*m``), laid out speaker by
speaker: ``[s1 u, s1 u, s2 u, s2 u, ...]``. The whole epoch is drawn up front from
``(seed, epoch)`` alone, so it does not depend on rank, world size, worker count or where a
resumed run starts.

Speakers are drawn without replacement within a batch, with probability proportional to their
utterance count, and each speaker walks through a reshuffled queue of its utterances; an epoch has
``len(utts) // B`` batches (at least one), so every utterance is seen about once per epoch.

Batches that cannot be filled as asked (defined behaviour, tested in tests/test_data_sampler.py):

* a speaker with at least ``m`` utterances always contributes ``m`` *different* utterances (a queue
  running out mid-batch is refilled with the ones already taken moved to its end);
* a speaker with ``k < m`` utterances contributes all ``k`` of them, then repeats them in the same
  order (each item still gets its own crop and augmentation): its positive pairs are different
  views of one recording, as multi-view training makes anyway;
* fewer training speakers than ``n`` is refused when the loader is built (BenchError naming
  ``data.speakers_per_batch``), never a smaller or looping batch;
* a dominant speaker (say 90 % of the utterances) is still drawn at most once per batch; it then
  sits in almost every batch and its utterances are not all seen each epoch, while the other
  ``n - 1`` places go to the rest in proportion to their size. Drawing always terminates: every
  batch takes ``n*m`` items in one pass;
* a loss that needs positives (SupCon family) with ``m == 1`` and one view would have none: that is
  refused when the config is resolved (:func:`bench.config_checks.check_batch_positives`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from bench.errors import BenchError


class SpeakerBalancedBatchSampler:
    """Yields this rank's slice of each global batch as a list of items ``(batch, position, utt)``.

    ``batch`` is the global batch number, ``position`` the index within the global batch and ``utt``
    the row of the training index: together with (seed, epoch) they seed the crop and augmentation
    of that item, which makes the data independent of the number of loader workers and ranks.

    Args:
        labels: int ``[N]`` speaker label of each training utterance.
        speakers_per_batch, utts_per_speaker: ``n`` and ``m``.
        seed, epoch: the only sources of randomness.
        rank, world_size: each rank gets the contiguous slice ``[rank*B/W, (rank+1)*B/W)``.
        start_batch: skip the first batches (mid-epoch resume); the rest are identical.
        num_batches: epoch length override (``train.steps_per_epoch``); default ``N // B``.
    """

    def __init__(
        self,
        labels: np.ndarray,
        speakers_per_batch: int,
        utts_per_speaker: int,
        *,
        seed: int,
        epoch: int,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
        num_batches: int | None = None,
    ):
        labels = np.asarray(labels, dtype=np.int64)
        self.n, self.m = speakers_per_batch, utts_per_speaker
        self.batch_size = self.n * self.m
        if world_size < 1 or not 0 <= rank < world_size:
            raise BenchError(f"invalid rank {rank} for world size {world_size}")
        if self.batch_size % world_size:
            raise BenchError(f"global batch {self.batch_size} (speakers_per_batch*utts_per_speaker) is not "
                             f"divisible by world size {world_size}")
        n_speakers = len(np.unique(labels))
        if n_speakers < self.n:
            raise BenchError(f"data.speakers_per_batch={self.n} but the training set has only {n_speakers} speakers")
        self.labels = labels
        self.seed, self.epoch = seed, epoch
        self.rank, self.world_size = rank, world_size
        self.num_batches = num_batches if num_batches is not None else max(len(labels) // self.batch_size, 1)
        if not 0 <= start_batch <= self.num_batches:
            raise BenchError(f"start_batch {start_batch} outside the epoch of {self.num_batches} batches")
        self.start_batch = start_batch
        self._epoch_batches: np.ndarray | None = None

    @property
    def per_rank(self) -> int:
        return self.batch_size // self.world_size

    def epoch_batches(self) -> np.ndarray:
        """int64 ``[num_batches, B]`` utterance rows of every global batch of the epoch."""
        if self._epoch_batches is None:
            self._epoch_batches = self._draw()
        return self._epoch_batches

    def _draw(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch, 0x5A17])
        speakers, inverse = np.unique(self.labels, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        members = np.split(order, np.cumsum(np.bincount(inverse, minlength=len(speakers)))[:-1])
        queues = [rng.permutation(ix) for ix in members]
        heads = np.zeros(len(speakers), dtype=np.int64)
        p = np.array([len(ix) for ix in members], dtype=np.float64)
        p /= p.sum()
        out = np.empty((self.num_batches, self.batch_size), dtype=np.int64)
        for b in range(self.num_batches):
            chosen = rng.choice(len(speakers), size=self.n, replace=False, p=p)
            for k, s in enumerate(chosen):
                if len(members[s]) < self.m:  # all of a small speaker's utterances, then again in order
                    out[b, k * self.m:(k + 1) * self.m] = np.resize(rng.permutation(members[s]), self.m)
                    continue
                take: list[int] = []
                while len(take) < self.m:
                    if heads[s] >= len(queues[s]):
                        fresh = rng.permutation(members[s])
                        # utterances already in this batch go last, so the batch holds distinct ones
                        used = np.isin(fresh, take)
                        fresh = np.concatenate([fresh[~used], fresh[used]])
                        queues[s] = fresh
                        heads[s] = 0
                    take.append(int(queues[s][heads[s]]))
                    heads[s] += 1
                out[b, k * self.m:(k + 1) * self.m] = take
        return out

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        batches = self.epoch_batches()
        lo = self.rank * self.per_rank
        for b in range(self.start_batch, self.num_batches):
            yield [(b, j, int(batches[b, j])) for j in range(lo, lo + self.per_rank)]

    def __len__(self) -> int:
        """Batches this sampler will yield (the epoch minus ``start_batch``)."""
        return self.num_batches - self.start_batch
