"""Ingest throughput on a loopback HTTP corpus of videos: clips/s and peak memory.

The corpus (issue "Ingest", Benchmark): N videos of 30 s, H.264 320x240 at 25 fps + AAC 44.1 kHz,
one 10-s segment of each cut out, output audio (48 kHz mono FLAC) + 4 frames. The job runs as its
own process, exactly as `t2a ingest` runs it; this script serves the corpus, samples the memory of
the job's whole process tree (Python + ffmpeg children) every 0.1 s, and prints one JSON line.

    python bench/ingest_throughput.py --videos 60
    python bench/ingest_throughput.py --videos 600
    python bench/ingest_throughput.py --videos 60 --backend youtube   # yt-dlp's generic extractor
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import shutil
import sys
from pathlib import Path

import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _measure import job_command, machine, run_measured  # noqa: E402

from demo.corpus import build_video_corpus  # noqa: E402
from demo.server import LoopbackServer  # noqa: E402
from pipelines.core.ontology import load_ontology  # noqa: E402
from pipelines.ingest.status import status_path  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--backend", choices=("http", "youtube"), default="http")
    parser.add_argument("--concurrency", type=int, default=None, help="default: the backend's (2 per core for http)")
    parser.add_argument("--port", type=int, default=8791)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("beam_args", nargs="*", help="Beam options for the job, after --")
    args = parser.parse_args()
    corpus = args.work / f"videos-{args.videos}x{args.seconds:g}s-port{args.port}"
    if not (corpus / "table.csv").exists():
        build_video_corpus(corpus, n_videos=args.videos, seconds=args.seconds, base_url=f"http://127.0.0.1:{args.port}")
    output = args.work / f"ingest-{args.backend}-{args.videos}"
    shutil.rmtree(output, ignore_errors=True)
    config = write_config(args, corpus, output)
    with LoopbackServer(corpus, port=args.port):
        result = run_job(config, output, args.beam_args)
    result.update(describe(args, corpus, output))
    print(json.dumps(result))


def write_config(args: argparse.Namespace, corpus: Path, output: Path) -> Path:
    if args.backend == "http":
        source = {
            "name": "videos",
            "format": "table",
            "manifest": str(corpus / "table.csv"),
            "fetch": {"backend": "http", "concurrency": args.concurrency},
        }
        source["fetch"] = {k: v for k, v in source["fetch"].items() if v is not None}
    else:
        source = {
            "name": "videos",
            "format": "audioset",
            "manifest": str(youtube_manifest(corpus)),
            "fetch": {
                "backend": "youtube",
                "concurrency": args.concurrency or 2,
                "url_template": f"http://127.0.0.1:{args.port}/yt/{{id}}.mp4",
            },
        }
    config = output.parent / f"bench-{args.backend}-{args.videos}.yaml"
    media = {"sample_rate": 48000, "frames": 4, "frame_size": 224}
    config.write_text(
        yaml.safe_dump({"corpora": {"bench": {"output": str(output), "media": media, "sources": [source]}}})
    )
    return config


def youtube_manifest(corpus: Path) -> Path:
    """The same cuts as an AudioSet segments CSV over 11-character ids (links into videos/)."""
    ontology = load_ontology()
    (corpus / "yt").mkdir(exist_ok=True)
    lines = ["# Segments csv", "# for the ingest benchmark", "# YTID, start_seconds, end_seconds, positive_labels"]
    with (corpus / "table.csv").open() as handle:
        for i, row in enumerate(csv.DictReader(handle)):
            ytid = f"v{i:010d}"
            link = corpus / "yt" / f"{ytid}.mp4"
            if not link.exists():
                link.symlink_to(Path("..") / "videos" / Path(row["url"]).name)
            mids = ",".join(ontology.mid_for_name(name) for name in row["labels"].split(";"))
            lines.append(f'{ytid}, {float(row["start"]):.3f}, {float(row["end"]):.3f}, "{mids}"')
    path = corpus / "segments.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_job(config: Path, output: Path, beam_args: list[str]) -> dict:
    cmd = job_command("ingest", config, "bench", beam_args)
    measured = run_measured(cmd)
    summary = json.loads(measured.pop("stdout"))
    ok = summary["totals"]["ok"]
    clip_seconds = _clip_seconds(output, summary["run_id"])
    return {
        "clips_ok": ok,
        "totals": {k: v for k, v in summary["totals"].items() if v},
        "clips_per_s": round(ok / measured["wall_s"], 2),
        **measured,
        "median_clip_s": clip_seconds[len(clip_seconds) // 2] if clip_seconds else None,
    }


def _clip_seconds(output: Path, run_id: str) -> list[float]:
    """Wall seconds per fetched clip, from the run's status table."""
    rows = pq.read_table(status_path(output, run_id), columns=["status", "seconds"]).to_pylist()
    return sorted(row["seconds"] for row in rows if row["status"] == "ok")


def describe(args: argparse.Namespace, corpus: Path, output: Path) -> dict:
    """The run's inputs and outputs. Bytes read are ffmpeg's own count per clip (clip.json): the
    server's socket writes would overstate them, as loopback buffers absorb what ffmpeg skips."""
    media_bytes = sum(p.stat().st_size for p in (corpus / "videos").glob("*.mp4"))
    entries = [json.loads(p.read_text()) for p in (output / "clips").glob("*/*/clip.json")]
    # http: what ffmpeg read over the network; youtube: the size of the sections yt-dlp downloaded
    key = "read_bytes" if args.backend == "http" else "fetched_bytes"
    read = sum(entry[key] for entry in entries)
    return {
        "bytes_read": read,
        "bytes_read_share": round(read / media_bytes, 3),
        "backend": args.backend,
        "videos": args.videos,
        "video_seconds": args.seconds,
        "concurrency": args.concurrency,
        "corpus_bytes": media_bytes,
        "output_bytes": sum(p.stat().st_size for p in (output / "clips").rglob("*") if p.is_file()),
        "machine": machine(),
        "python": platform.python_version(),
    }


if __name__ == "__main__":
    main()
