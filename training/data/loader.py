"""The streaming training loader: WebDataset shards (`t2a shard`, `t2a encode-latents`) → batches.

    shards = list_shards("data/demo/shards", "train")             # <corpus>/train/index.json
    loader = StreamLoader(shards, mel_example("audioldm", 256), batch_size=16, workers=2)
    for batch in loader: ...                                      # {"mel": [B, 1, T, n_mels], "caption": [...], ...}
    saved = loader.state_dict()                                   # JSON; load_state_dict(saved) resumes

Guarantees (each one tested in tests/training/data/test_loader.py):

Splitting. A rank's DataLoader workers (`workers`, at least one reader) and the ranks give
S = world_size · max(workers, 1) reader slots; slot = rank · workers + worker. Every epoch e the
shards are put in an order (a permutation seeded by (seed, e), or index order without
shard_shuffle) and dealt to the slots in that order, each to the slot holding the fewest samples so
far (ties: the lower slot) — deterministic, and every slot sees the same deal, so within an epoch
no sample is read by two slots and every sample by one. Fewer shards than slots is a ConfigError.

Infinite stream, equal batches. Each slot streams epoch after epoch without end (training counts
steps, not epochs) and forms its batches itself: always exactly batch_size examples; a slot's
partial batch at the end of an epoch is completed with the next epoch's first samples, never
dropped and never delivered short. No rank ever runs out of batches, so DDP never waits on a rank
whose data ended. `__epoch__` of a batch is the epoch of its last sample.

Determinism. Everything random — the shard permutation, the shuffle buffer (seeded by (seed,
epoch, slot)), crops and augmentations (an example's generator is seeded by (seed, epoch, slot,
key); a batch transform's by (seed, epoch, slot, position)) — comes from the seed, never from
torch's worker seeds: two loaders with the same arguments give the same batches, with or without
worker processes. With workers the DataLoader takes batches from the workers in turn (in order).

Resume: exact, sample-level. Each batch carries `__slot__`, `__epoch__`, `__position__` (samples
of the epoch the slot has consumed, this batch's last included: delivered, filtered and skipped
ones alike) and the slot's cumulative `__errors__` and `__delivered__`; StreamLoader strips them and
keeps the latest per slot, counting only batches handed to the caller (prefetched ones do not
count). A loader given that state replays each slot's current epoch from its start (the same shard
deal, the same shuffle buffer input) and discards the first `position` samples without decoding
them, then continues: the batches equal those the first loader would have delivered next. Cost:
re-reading each slot's current epoch up to its position (tar reading only). The worker that goes
first is rotated so that the in-order DataLoader resumes with the slot that was next. A state
recorded with another seed, world size, worker count or shard list cannot be resumed exactly: it
is logged, and every slot restarts at the start of the earliest recorded epoch (counts restart).

Errors. A broken shard (unreadable or truncated tar: its unread samples), a member whose bytes
differ from the checksum its JSON records ("checksum": flipped bytes that would still decode), an
undecodable member or a member the contract does not name ("decode: ContractError"), and an example
(or filter) function raising ("example: ValueError") are logged, counted by reason and skipped. Once a slot has read
min_samples_for_rate samples, a skipped share above max_error_rate raises LoaderError with the
counts. `StreamLoader.errors` sums the slots' counts as seen so far.

Example functions, transforms and filters are in training/data/examples.py; shard listing, reading,
decoding and collation in training/data/stream.py.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pipelines.core.config import ConfigError
from training.data.examples import curriculum_filter, latent_example, mel_example, mixup_transform, token_example
from training.data.stream import (
    BatchTransform, Example, LoaderError, SampleFilter, SampleProcessor, ShardInfo, Tally, collate, list_shards,
    open_shard, read_samples, sample_rng, MAX_IDLE_EPOCHS,
)

__all__ = [
    "LoaderError", "ShardInfo", "ShardStream", "StreamLoader", "collate", "curriculum_filter", "iter_batches",
    "latent_example", "list_shards", "token_example", "make_loader", "mel_example", "mixup_transform", "open_shard", "require_split",
]

log = logging.getLogger(__name__)
STATE_VERSION = 1


class ShardStream(IterableDataset):
    """The batches of one rank's reader slots (see the module docstring); infinite."""

    def __init__(
        self,
        shards: list[ShardInfo],
        example: Example,
        *,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        workers: int = 0,
        shuffle_buffer: int = 0,
        shard_shuffle: bool = True,
        max_error_rate: float = 0.05,
        min_samples_for_rate: int = 50,
        retries: int = 3,
        storage_options: dict | None = None,
        sample_filter: SampleFilter | None = None,
        batch_transform: BatchTransform | None = None,
        state: dict | None = None,
        verify: bool = True,
    ):
        super().__init__()
        if batch_size < 1 or workers < 0 or not 0 <= rank < world_size:
            raise ConfigError(f"loader: needs batch_size ≥ 1, workers ≥ 0 and 0 ≤ rank < world_size; "
                              f"got {batch_size}, {workers}, {rank}, {world_size}")
        self.shards, self.example, self.batch_size, self.seed = list(shards), example, batch_size, seed
        self.rank, self.world_size, self.workers = rank, world_size, workers
        self.shuffle_buffer, self.shard_shuffle, self.retries, self.storage_options = shuffle_buffer, shard_shuffle, retries, storage_options
        self.limits = {"max_error_rate": max_error_rate, "min_samples_for_rate": min_samples_for_rate}
        self.sample_filter, self.batch_transform, self.state = sample_filter, batch_transform, state or {}
        self.verify = verify  # members against their checksums (xxh3_64); off only to measure the check (bench/)
        self.readers = max(workers, 1)  # reader slots per rank
        self.slots = world_size * self.readers
        if len(self.shards) < self.slots:
            raise ConfigError(
                f"{len(self.shards)} shard(s) for {self.slots} reader slots ({world_size} rank(s) × {self.readers} worker(s)): "
                "every slot needs a shard of its own. Write more, smaller shards (shards.max_samples in the corpus "
                "config) or use fewer data.workers or ranks"
            )

    def slot_of(self, worker: int) -> int:
        """The slot a DataLoader worker plays; rotated on resume so that the next slot goes first."""
        offset = int(self.state.get("batches", 0)) % self.readers
        return self.rank * self.readers + (worker + offset) % self.readers

    def epoch_shards(self, epoch: int, slot: int) -> list[ShardInfo]:
        """This slot's shards in epoch `epoch`: the epoch's order, dealt to the least-loaded slot."""
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.shards)) if self.shard_shuffle else range(len(self.shards))
        loads, mine = [0] * self.slots, []
        for index in order:
            target = min(range(self.slots), key=lambda s: (loads[s], s))
            loads[target] += max(self.shards[index].nsamples, 1)
            if target == slot:
                mine.append(self.shards[index])
        return mine

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        if info is None:
            return self._in_turn()
        if info.num_workers != self.readers:
            raise ConfigError(f"ShardStream built for {self.workers} workers runs in a DataLoader with {info.num_workers}")
        return self.slot_batches(info.id)

    def _in_turn(self) -> Iterator[dict]:
        """All of this rank's slots in one process, taken in turn as the in-order DataLoader takes them."""
        streams = [self.slot_batches(worker) for worker in range(self.readers)]
        while True:
            for stream in streams:
                yield next(stream)

    def slot_batches(self, worker: int) -> Iterator[dict]:
        """The endless batches of the slot `worker` plays (tests call this without worker processes)."""
        slot = self.slot_of(worker)
        epoch, skip, errors, delivered = self._resume_point(slot)
        tally = Tally(slot, errors, delivered, **self.limits)
        process = SampleProcessor(self.example, self.sample_filter, self.seed, tally, self.verify)
        pending: list[dict] = []
        idle = 0
        while True:
            position, before = 0, tally.delivered
            tally.muted = skip > 0  # the restored counts already hold what the replayed samples cost
            process.new_epoch()
            for raw in self._epoch_samples(epoch, slot, tally, process):
                position += 1
                if position <= skip:
                    process.pass_over(raw)
                    tally.muted = position < skip
                    continue
                example = process(raw, epoch, slot)
                if example is None:
                    continue
                pending.append(example)
                if len(pending) == self.batch_size:
                    yield self._batch(pending, slot, epoch, position, tally)
                    pending = []
            tally.muted = False
            idle = idle + 1 if tally.delivered == before else 0
            if idle >= MAX_IDLE_EPOCHS:
                raise LoaderError(f"slot {slot}: no sample delivered in {idle} epochs (read {position} in the last): "
                                  "the shards are broken or the sample filter keeps nothing")
            epoch, skip = epoch + 1, 0

    def _resume_point(self, slot: int) -> tuple[int, int, dict, int]:
        record = self.state.get("slots", {}).get(str(slot))
        if record is None:
            return int(self.state.get("epoch", 0)), 0, {}, 0
        return int(record["epoch"]), int(record["position"]), dict(record["errors"]), int(record["delivered"])

    def _epoch_samples(self, epoch: int, slot: int, tally: Tally, process: SampleProcessor) -> Iterator[dict]:
        """Raw samples of the slot's epoch, shuffled before decoding so that a replay sees the same input."""
        shards = self.epoch_shards(epoch, slot)
        read = wds.filters.pipelinefilter(read_samples)(
            tally, wants=process.wants, retries=self.retries, storage_options=self.storage_options
        )
        stages = [lambda: iter(shards), read]
        if self.shuffle_buffer > 1:
            rng = random.Random(int(sample_rng(self.seed, epoch, slot, "shuffle").integers(2**63)))
            stages.append(wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, rng=rng))
        return iter(wds.DataPipeline(*stages))

    def _batch(self, examples: list[dict], slot: int, epoch: int, position: int, tally: Tally) -> dict:
        if self.batch_transform is not None:
            examples = self.batch_transform(examples, sample_rng(self.seed, epoch, slot, position, "batch"))
        batch = collate(examples)
        batch.update({"__slot__": slot, "__epoch__": epoch, "__position__": position,
                      "__errors__": dict(tally.errors), "__delivered__": tally.delivered})
        return batch


class StreamLoader:
    """Collated batches of a ShardStream through a torch DataLoader, without the bookkeeping keys;
    remembers where each slot stands (`state_dict`) and how many samples it skipped (`errors`)."""

    def __init__(self, shards: list[ShardInfo], example: Example, *, batch_size: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1, workers: int = 0, pin_memory: bool = False, **options: Any):
        self.stream_args = dict(shards=list(shards), example=example, batch_size=batch_size, seed=seed, rank=rank,
                                world_size=world_size, workers=workers, **options)
        ShardStream(**self.stream_args)  # fail now, not in a worker: bad arguments, too few shards
        self.workers, self.pin_memory = workers, pin_memory
        self.errors: Counter[str] = Counter()
        self.samples = 0
        self._slots: dict[str, dict[str, Any]] = {}
        self._batches = 0
        self._epoch = 0  # where slots without a record start

    def __iter__(self) -> Iterator[dict]:
        """Continues from the current state: iterating again picks up where the last iteration stopped."""
        stream = ShardStream(**self.stream_args, state=self.state_dict())
        loader = DataLoader(stream, batch_size=None, num_workers=self.workers, pin_memory=self.pin_memory)
        for batch in loader:
            self._record(batch)
            yield {key: value for key, value in batch.items() if not key.startswith("__")}

    def _record(self, batch: dict) -> None:
        errors = {str(k): int(v) for k, v in batch["__errors__"].items()}
        self._slots[str(int(batch["__slot__"]))] = {
            "epoch": int(batch["__epoch__"]), "position": int(batch["__position__"]), "errors": errors, "delivered": int(batch["__delivered__"]),
        }
        self._batches += 1
        self._totals()

    def _totals(self) -> None:
        self.errors = sum((Counter(s["errors"]) for s in self._slots.values()), Counter())
        self.samples = sum(s["delivered"] for s in self._slots.values())

    def _identity(self) -> dict[str, Any]:
        args = self.stream_args
        # split folder and shard name: a corpus moved elsewhere (or served over http) still resumes
        names = "".join(f"{'/'.join(info.url.rsplit('/', 2)[-2:])}\t{info.nsamples}\n" for info in args["shards"])
        return {"seed": args["seed"], "rank": args["rank"], "world_size": args["world_size"], "workers": args["workers"],
                "shards": hashlib.sha256(names.encode()).hexdigest()}

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable: where every slot of this rank stands (see the module docstring)."""
        slots = {slot: {**record, "errors": dict(record["errors"])} for slot, record in self._slots.items()}
        return {"version": STATE_VERSION, **self._identity(), "batches": self._batches, "epoch": self._epoch, "slots": slots}

    def load_state_dict(self, state: dict) -> None:
        """Resume from `state_dict()` (before iterating). A state of another seed, world size, worker
        count or shard list is logged and restarts every slot at the start of its earliest epoch."""
        expected = self._identity()
        differ = [key for key, value in expected.items() if state.get(key) != value]
        if state.get("version") != STATE_VERSION:
            differ.insert(0, "version")
        if differ:
            epochs = [int(record["epoch"]) for record in state.get("slots", {}).values()] or [int(state.get("epoch", 0))]
            self._slots, self._batches, self._epoch = {}, 0, min(epochs)
            log.warning("loader state recorded with another %s: cannot resume exactly; every slot restarts at the start of epoch %d "
                        "(samples of that epoch seen before may repeat; error counts restart)", ", ".join(differ), self._epoch)
        else:
            self._slots = {str(slot): {**record, "errors": dict(record["errors"])} for slot, record in state["slots"].items()}
            self._batches, self._epoch = int(state["batches"]), int(state["epoch"])
        self._totals()


def require_split(data, split: str, why: str) -> list[ShardInfo]:
    """The shards of a split a run will read later (validation), listed before the first step: a
    missing split is one ConfigError now, not a failure after the whole schedule has trained."""
    try:
        return list_shards(data.shards, split, data.storage_options)
    except ConfigError as error:
        raise ConfigError(
            f"{why} reads split {split!r}, which the corpus cannot give: {error}. Write that split with "
            "`t2a shard` (clips with that split in their manifests or shards.default_split), or name a split "
            "the corpus has in data.valid_split"
        ) from None


def make_loader(data, split: str, example: Example, *, rank: int = 0, world_size: int = 1, seed: int = 0, batch_size: int | None = None,
                sample_filter: SampleFilter | None = None, batch_transform: BatchTransform | None = None) -> StreamLoader:
    """The training loader of `split` from a `training.config.DataConfig`. The augmentations in
    data.augment are not applied here: pass mixup_transform / curriculum_filter (and the example's reprogram)."""
    shards = list_shards(data.shards, split, data.storage_options)
    return StreamLoader(
        shards, example, batch_size=batch_size or data.batch_size, seed=seed, rank=rank, world_size=world_size, workers=data.workers,
        shuffle_buffer=data.shuffle_buffer, shard_shuffle=data.shard_shuffle, max_error_rate=data.max_error_rate,
        min_samples_for_rate=data.min_samples_for_rate, retries=data.retries, storage_options=data.storage_options,
        sample_filter=sample_filter, batch_transform=batch_transform,
    )


def iter_batches(data_or_location, split: str, example: Example, *, batch_size: int, rank: int = 0, world_size: int = 1,
                 storage_options: dict | None = None) -> Iterator[dict]:
    """One finite pass over `split` in index order: no shuffling, no repeat, the last partial batch
    kept; rank r reads shards r, r + world_size, ... (a rank with no shard yields nothing). For
    validation and `t2a encode-latents`. Example generators are seeded by (0, 0, 0, key): a sample
    gets the same crop whatever the number of ranks."""
    if isinstance(data_or_location, (str, Path)):
        location, limits, retries = str(data_or_location), {}, 3
    else:
        data = data_or_location
        location, retries = data.shards, data.retries
        storage_options = data.storage_options if storage_options is None else storage_options
        limits = {"max_error_rate": data.max_error_rate, "min_samples_for_rate": data.min_samples_for_rate}
    shards = list_shards(location, split, storage_options)[rank::world_size]
    tally = Tally(rank, **limits)
    process = SampleProcessor(example, None, 0, tally)
    pending: list[dict] = []
    for raw in read_samples(shards, tally, wants=process.wants, retries=retries, storage_options=storage_options):
        example_out = process(raw, 0, 0)
        if example_out is not None:
            pending.append(example_out)
        if len(pending) == batch_size:
            yield collate(pending)
            pending = []
    if pending:
        yield collate(pending)
