"""Cost per manifest row: ingest of synthetic AudioSet manifests against an empty local mirror.

Every row fails fast (no file in the mirror, no ffmpeg), so what is measured is t2a's own cost per
manifest row: reading, de-duplication, the fetch loop, recording failures, the status table. The
manifest is an AudioSet segments CSV (3 comment lines, `YTID, start, end, "mids"`), deterministic,
with 2 % duplicate rows (the same segment again) and 1 % malformed rows (a bad start time), like the
public files' quirks. For each size the job runs as its own process, exactly as `t2a ingest` runs
it, twice: on an empty output, then again (a no-op re-run: every row's failure is already
recorded). A 100-row run gives the fixed cost (Beam start-up) that per-row figures leave out.

    python bench/manifest_scale.py --rows 10000 100000            # + 1000000 when there is time
    python bench/manifest_scale.py --rows 10000 -- --runner=FnApiRunner
    python bench/manifest_scale.py --probe-shuffle --rows 100000 1000000   # where the memory goes

One JSON line per size: wall and peak RSS of both runs, the per-row cost over the 100-row run,
reading alone (the manifest parsed in this process, no Beam), and what the failures take on disk.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _measure import job_command, machine, run_measured  # noqa: E402

from pipelines.datasets import load_corpus  # noqa: E402
from pipelines.ingest.manifests.base import FORMATS  # noqa: E402

MIDS = ["/m/09x0r", "/m/03kmc9", "/m/0jbk", "/m/04rlf", "/m/07yv9", "/m/0k4j", "/m/01jt3m", "/m/07pbtc8"]
ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def youtube_id(i: int) -> str:
    digest = hashlib.sha256(str(i).encode()).digest()
    return "".join(ID_CHARS[b % 64] for b in digest[:11])


def write_manifest(path: Path, rows: int) -> None:
    """`rows` data lines: every 50th repeats the row 7 before it (a duplicate segment), every
    100th has a bad start time (a rejected row)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# Segments csv created by bench/manifest_scale.py", f"# num_ytids={rows}", "# YTID, start_seconds, ..."]
    for i in range(rows):
        source = i - 7 if i % 50 == 49 else i
        start = "x" if i % 100 == 99 else f"{(source % 20) * 10:.3f}"
        end = f"{(source % 20) * 10 + 10:.3f}"
        mids = ",".join(MIDS[(source + k) % len(MIDS)] for k in range(1 + source % 3))
        lines.append(f'{youtube_id(source)}, {start}, {end}, "{mids}"')
    temp = path.with_suffix(".tmp")
    temp.write_text("\n".join(lines) + "\n")
    os.replace(temp, path)


def write_config(work: Path, rows: int) -> tuple[Path, Path]:
    manifest = work / f"manifests/unbalanced_train_segments-{rows}.csv"
    if not manifest.exists():
        write_manifest(manifest, rows)
    mirror = work / "mirror"  # empty: every clip fails fast with "file not found in the mirror"
    mirror.mkdir(parents=True, exist_ok=True)
    output = work / f"out-{rows}"
    source = {
        "name": "audioset",
        "format": "audioset",
        "manifest": str(manifest),
        "fetch": {"backend": "local", "path_template": str(mirror / "{id}.m4a")},
    }
    config = work / f"scale-{rows}.yaml"
    corpus = {"output": str(output), "media": {"sample_rate": 48000, "frames": 0}, "sources": [source]}
    config.write_text(yaml.safe_dump({"corpora": {"scale": corpus}}))
    return config, output


def reading_seconds(config: Path) -> tuple[float, int]:
    """Parsing the manifest alone, in this process: the floor under any per-row cost."""
    source = load_corpus(config, "scale").config.sources[0]
    started = time.perf_counter()
    records = sum(1 for _ in FORMATS.get(source.format).read(source))
    return time.perf_counter() - started, records


def run_job(config: Path, beam_args: list[str]) -> dict:
    """Wall and CPU seconds (user + system of the job and its children: steadier than wall on a
    shared machine), peak RSS, and the run's totals."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    measured = run_measured(job_command("ingest", config, "scale", beam_args))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary = json.loads(measured.pop("stdout"))
    totals = {k: v for k, v in summary["totals"].items() if v}
    return {**measured, "cpu_s": round(cpu, 2), "totals": totals, "rows": summary["rows"]}


def disk(folder: Path) -> dict:
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files)}


def measure(rows: int, work: Path, beam_args: list[str], fixed: dict | None) -> dict:
    config, output = write_config(work, rows)
    shutil.rmtree(output, ignore_errors=True)
    first = run_job(config, beam_args)
    failures = disk(output / "failures")
    again = run_job(config, beam_args)
    result = {"rows": rows, "first": first, "rerun": again, "failures_on_disk": failures}
    if fixed is not None:
        extra = rows - fixed["rows"]
        for run, key in ((first, "first"), (again, "rerun")):
            for measure_, unit in (("wall_s", "wall"), ("cpu_s", "cpu")):
                per_row = (run[measure_] - fixed[key][measure_]) / extra * 1000
                result[f"{key}_{unit}_ms_per_row"] = round(per_row, 4)
    read_s, records = reading_seconds(config)
    result["reading_us_per_row"] = round(read_s / rows * 1e6, 2)
    result["records"] = records
    shutil.rmtree(output, ignore_errors=True)
    return result


_PROBE = """import resource, sys, tempfile
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from pipelines.datasets import load_corpus
from pipelines.ingest.job import SpillManifest, batch_count, partition_of, read_records

sources = load_corpus(sys.argv[1], "scale").config.sources
with tempfile.TemporaryDirectory() as out, beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
    listed = p | beam.Create(sources)
    if sys.argv[2] == "read":
        _ = listed | beam.FlatMap(read_records) | beam.Map(lambda record: None)
    elif sys.argv[2] == "shuffle":  # the records themselves through the runner's shuffle (t2a before the spill)
        keyed = listed | beam.FlatMap(read_records) | beam.Map(lambda r, n: (partition_of(r, n), r), batch_count(sources))
        _ = keyed | beam.GroupByKey() | beam.Map(lambda batch: None)
    else:  # what ingest does: records through spill files, references through the shuffle
        spilled = listed | beam.ParDo(SpillManifest(out, "probe", batch_count(sources)))
        _ = spilled | beam.GroupByKey() | beam.Map(lambda batch: None)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def probe_shuffle(rows: int, work: Path) -> dict:
    """Peak RSS of the job's reading alone, of reading plus a shuffle of the records themselves
    (what ingest did before its spill files), and of reading plus the spill and a shuffle of its
    references (what ingest does), each in its own process."""
    config, _ = write_config(work, rows)
    peaks = {}
    for mode in ("read", "shuffle", "spill"):
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, str(config), mode], cwd=ROOT, capture_output=True, text=True
        )
        peaks[f"{mode}_peak_rss_mb"] = int(done.stdout.split()[-1])
    return {"rows": rows, **peaks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "manifest-scale")
    parser.add_argument("--probe-shuffle", action="store_true", help="only the reading/shuffle memory probe")
    parser.add_argument("beam_args", nargs="*", help="Beam options for the job, after --")
    args = parser.parse_args()
    if args.probe_shuffle:
        for rows in args.rows:
            print(json.dumps(probe_shuffle(rows, args.work)), flush=True)
        return
    beam_args = args.beam_args or ["--runner=FnApiRunner"]
    print(json.dumps({"machine": machine(), "beam_args": beam_args}), flush=True)
    fixed = measure(100, args.work, beam_args, None)
    print(json.dumps(fixed), flush=True)
    for rows in args.rows:
        print(json.dumps(measure(rows, args.work, beam_args, fixed)), flush=True)


if __name__ == "__main__":
    main()
