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
"""

from __future__ import annotations

import argparse
import json
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=Path, default=ROOT / "data/demo/shards")
    parser.add_argument("--clips", type=Path, default=ROOT / "data/demo/clips")
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per configuration")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/out/loader_throughput.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
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
    text = json.dumps(results, indent=1)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


def _keys(shard: str) -> list[str]:
    import tarfile

    with tarfile.open(shard) as tar:
        return sorted({name.partition(".")[0] for name in tar.getnames()})


if __name__ == "__main__":
    main()
