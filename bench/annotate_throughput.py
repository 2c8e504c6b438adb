"""The annotate job end to end on the demo corpus: clips/s, with and without start-up, and peak memory.

Needs the demo's clip cache and models (`make demo`, or `dvc repro ingest demo_models`). The job
runs as `t2a annotate` runs it, as its own process, on a copy of the corpus config whose output is a
scratch folder holding a copy of the clip cache: first from scratch, then again, when every row is
current and skipped — that second run is the job's fixed cost (imports, Beam graph, model loading
for the caption bank's checksum, listing), subtracted for the per-clip rate.

    python bench/annotate_throughput.py [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _measure import machine, run_measured  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "annotate")
    args = parser.parse_args()
    clips = ROOT / "data" / "demo" / "clips"
    if not clips.is_dir() or not (ROOT / "data" / "demo-models" / "clap").is_dir():
        raise SystemExit("no demo clip cache or models: run `make demo` first")
    shutil.rmtree(args.out, ignore_errors=True)
    shutil.copytree(clips, args.out / "data" / "clips")
    raw = yaml.safe_load((ROOT / "datasets.yaml").read_text())
    raw["corpora"]["demo"]["output"] = str(args.out / "data")
    config = args.out / "datasets.yaml"
    config.write_text(yaml.safe_dump(raw))
    shutil.copytree(ROOT / "data" / "demo-corpus", args.out / "data" / "demo-corpus", dirs_exist_ok=True)
    for name in ("demo-models",):
        (args.out / "data" / name).symlink_to(ROOT / "data" / name)
    n = sum(1 for _ in (args.out / "data" / "clips").glob("*/*/clip.json"))
    command = [sys.executable, "-m", "pipelines.cli", "annotate", "--config", str(config), "--device", args.device]
    first = run_measured(command)
    again = run_measured(command)
    work = first["wall_s"] - again["wall_s"]
    result = {
        "machine": machine(),
        "device": args.device,
        "clips": n,
        "first": first["wall_s"],
        "rerun_all_skipped": again["wall_s"],
        "clips_per_s": round(n / first["wall_s"], 2),
        "clips_per_s_after_startup": round(n / work, 2) if work > 0 else None,
        "peak_rss_job_mb": first["peak_rss_job_mb"],
        "peak_rss_tree_mb": first["peak_rss_tree_mb"],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
