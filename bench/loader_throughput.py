"""Training-loader throughput: the streaming shard loader (training/data/loader.py) against the research
trainers' approach, a torch Dataset that decodes one clip per sample and computes its mel in
`__getitem__`, on the same clips.

    shards:  StreamLoader(mel_example("audioldm"), batch_size 16) over data/demo/shards/train
    naive:   DataLoader(batch_size 16, shuffle) over the same clips' data/demo/clips/<xx>/<key>/audio.flac,
             load_audio + MelExtractor(audioldm) per sample (48 kHz FLAC → 16 kHz → [1, 1024, 64])

Both give float32 mels [16, 1, 1024, 64]. Each reader runs on one core (torch.set_num_threads(1), as
DataLoader workers do), with 0 workers (the main process reads) and with 2 worker processes;
samples/s per worker = samples/s ÷ max(workers, 1). The first batch (worker start-up, first shard
opened) is not timed. Prints a JSON and writes it to bench/out/loader_throughput.json.

    python bench/loader_throughput.py                 # the demo corpus (built: `make demo`)
    python bench/loader_throughput.py --seconds 10

`--checksums` measures instead what verifying each member against the checksum its JSON records
costs the shard loader (issue 14, item 9): a synthetic split written by the real shard writer
(`audioldm` mels [64, 1024] float16 = 128 KiB, a CLAP embedding and the JSON per sample), read by
the same StreamLoader with the check on and off (`verify`), 0 workers, rounds alternated; and the
check alone, per sample. Writes bench/out/loader_checksums.json.

    python bench/loader_throughput.py --checksums --seconds 36 --rounds 12
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _measure import machine  # noqa: E402

from pipelines.core.features import MelExtractor, get_profile, load_audio  # noqa: E402
from training.data.loader import StreamLoader, list_shards, mel_example  # noqa: E402

PROFILE, BATCH = "audioldm", 16


class NaiveClips(Dataset):
    """One audio file per sample, its mel computed on the fly (the research trainers' Dataset)."""

    def __init__(self, paths: list[Path]):
        self.paths = paths
        self.extractor: MelExtractor | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        if self.extractor is None:
            self.extractor = MelExtractor(get_profile(PROFILE))
        mel, _ = self.extractor(*load_audio(self.paths[index]))
        return {"key": self.paths[index].parent.name, "mel": torch.from_numpy(mel.T.copy())[None]}


def timed(batches, seconds: float) -> dict:
    """Samples/s after the first batch, over at least `seconds`."""
    first = time.perf_counter()
    next(batches)
    start = time.perf_counter()
    samples = 0
    while time.perf_counter() - start < seconds:
        batch = next(batches)
        assert batch["mel"].shape[1:] == (1, 1024, 64) and batch["mel"].dtype == torch.float32
        samples += len(batch["key"])
    elapsed = time.perf_counter() - start
    return {
        "samples": samples,
        "seconds": round(elapsed, 2),
        "startup_s": round(start - first, 2),
        "samples_per_s": round(samples / elapsed, 1),
    }


def forever(loader: DataLoader):
    while True:
        yield from loader


def checksum_cost(seconds: float, rounds: int = 3) -> dict:
    """Loader samples/s with and without the checksum check, on a synthetic split; and the check alone."""
    import tempfile

    import numpy as np

    from pipelines.shard import contract, index, writer

    with tempfile.TemporaryDirectory(prefix="t2a-bench-checksum-") as folder:
        root, stats, rng = Path(folder), [], np.random.default_rng(0)
        for s in range(8):
            samples = [_synthetic_sample(f"s{s}-{i:03d}", rng) for i in range(32)]
            path = root / "train" / f"shard-{s:06d}.tar"
            stats.append(writer.write_stats(path, writer.write_shard(path, samples), {"split": "train"}))
        index.write_indexes(root, stats, "0" * 64, [PROFILE])
        shards = list_shards(str(root), "train")
        rates: dict[str, list[float]] = {"verified": [], "unverified": []}
        for _ in range(rounds):
            for name, verify in (("verified", True), ("unverified", False)):
                loader = StreamLoader(shards, mel_example(PROFILE), batch_size=BATCH, shuffle_buffer=64, verify=verify)
                rates[name].append(timed(iter(loader), seconds / rounds)["samples_per_s"])
        members = [m for _, m in _synthetic_samples_of(root)]
        passes = []
        for _ in range(5):  # the best of five passes over every sample
            start = time.perf_counter()
            for raw in members:
                assert not contract.checksum_problems(raw)
            passes.append((time.perf_counter() - start) / len(members) * 1e6)
        check_us = min(passes)
    median = {name: statistics.median(values) for name, values in rates.items()}
    return {
        "samples": 256,
        "rounds": rounds,
        "member_bytes": {
            "mel": contract.npy_size([64, 1024], "float16"),
            "clap_audio": contract.npy_size([512], "float32"),
        },
        "samples_per_s": rates,
        "median_samples_per_s": median,
        "cost_percent_of_medians": round(100 * (1 - median["verified"] / median["unverified"]), 1),
        "check_alone_us_per_sample": round(check_us, 1),
        "check_alone_percent_of_a_verified_sample": round(100 * check_us * median["verified"] / 1e6, 1),
    }


def _synthetic_sample(key: str, rng) -> tuple[str, dict[str, bytes]]:
    import numpy as np

    from pipelines.shard import contract

    mel = rng.standard_normal((64, 1024)).astype(np.float16)
    clap = rng.standard_normal(512).astype(np.float32)
    meta = contract.SampleMeta(
        key=key,
        source="bench",
        format="table",
        source_id=key,
        segment={"start": 0.0, "end": 10.24},
        duration=10.24,
        audio_seconds=10.24,
        padded=False,
        sample_rate=48000,
        captions=[{"text": f"a sound {key}", "origin": "table", "kind": "human"}],
        event_count=1,
        split="train",
        mels={
            PROFILE: {
                "member": contract.mel_member(PROFILE),
                "shape": [64, 1024],
                "dtype": "float16",
                "sample_rate": 16000,
                "hop_length": 160,
                "n_mels": 64,
                "real_frames": 1024,
            }
        },
        embeddings={"clap_audio": {"member": "clap_audio.npy", "shape": [512], "dtype": "float32", "model": "bench"}},
    )
    return key, contract.build_sample(meta, {PROFILE: mel}, arrays={"clap_audio": clap})


def _synthetic_samples_of(root: Path):
    from pipelines.shard.reader import iter_members

    for shard in sorted((root / "train").glob("shard-*.tar")):
        yield from iter_members(shard)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=Path, default=ROOT / "data/demo/shards")
    parser.add_argument("--clips", type=Path, default=ROOT / "data/demo/clips")
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per configuration")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--checksums", action="store_true", help="measure the checksum check's cost instead")
    parser.add_argument("--rounds", type=int, default=6, help="--checksums: alternated rounds per configuration")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.checksums:
        cost = checksum_cost(args.seconds, args.rounds)
        results = {"machine": machine(), "profile": PROFILE, "batch_size": BATCH, **cost}
        _write(results, args.out or ROOT / "bench/out/loader_checksums.json")
        return
    shards = list_shards(str(args.shards), "train")
    keys = {key for info in shards for key in _keys(info.url)}
    paths = sorted(p for p in args.clips.glob("*/*/audio.flac") if p.parent.name in keys)
    if len(paths) != len(keys):
        raise SystemExit(f"{len(keys)} samples in the shards but {len(paths)} of their clips under {args.clips}")
    results: dict = {
        "machine": machine(),
        "profile": PROFILE,
        "batch_size": BATCH,
        "clips": len(paths),
        "shards": len(shards),
    }
    for workers in (0, 2):
        loader = StreamLoader(shards, mel_example(PROFILE), batch_size=BATCH, workers=workers, shuffle_buffer=64)
        stream = timed(iter(loader), args.seconds)
        naive = DataLoader(
            NaiveClips(paths), batch_size=BATCH, shuffle=True, num_workers=workers, persistent_workers=workers > 0
        )
        direct = timed(forever(naive), args.seconds)
        readers = max(workers, 1)
        for rate in (stream, direct):
            rate["samples_per_s_per_worker"] = round(rate["samples_per_s"] / readers, 1)
        ratio = round(stream["samples_per_s"] / direct["samples_per_s"], 1)
        results[f"workers_{workers}"] = {"shard_loader": stream, "naive_dataset": direct, "ratio": ratio}
    _write(results, args.out or ROOT / "bench/out/loader_throughput.json")


def _write(results: dict, out: Path) -> None:
    text = json.dumps(results, indent=1)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")


def _keys(shard: str) -> list[str]:
    import tarfile

    with tarfile.open(shard) as tar:
        return sorted({name.partition(".")[0] for name in tar.getnames()})


if __name__ == "__main__":
    main()
