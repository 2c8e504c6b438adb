"""Run a job as its own process and measure it: wall time, and the peak RSS of the job's Python
process and of its whole process tree (children such as ffmpeg or Beam's worker processes),
sampled every 0.1 s, and the CPU seconds of the tree."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]

# A stage's Beam job in its own process, its result (summary or index) as JSON on stdout.
_JOB = """import json, sys
from pipelines.datasets import load_corpus
from pipelines.{stage} import job
json.dump(job.run(load_corpus(sys.argv[1], sys.argv[2]), beam_args=sys.argv[3:]), sys.stdout)
"""


def job_command(stage: str, config: Path, corpus: str, beam_args: list[str]) -> list[str]:
    """The command that runs `pipelines.<stage>.job.run` on a corpus with these Beam options."""
    return [sys.executable, "-c", _JOB.format(stage=stage), str(config), corpus, *beam_args]


def run_measured(cmd: list[str]) -> dict:
    started = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    job = psutil.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak = {"tree": 0, "job": 0}
    sampler = threading.Thread(target=_sample, args=(job, peak), daemon=True)
    sampler.start()
    stdout, _ = job.communicate()
    seconds = time.perf_counter() - started
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if job.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {job.returncode}")
    return {
        "stdout": stdout,
        "wall_s": round(seconds, 2),
        # CPU seconds of the job and every descendant it waited for: a per-core rate that holds on a
        # machine other processes share, where wall time does not.
        "cpu_s": round(cpu, 2),
        "peak_rss_job_mb": round(peak["job"] / 2**20, 1),
        "peak_rss_tree_mb": round(peak["tree"] / 2**20, 1),
    }


def _sample(job: psutil.Popen, peak: dict) -> None:
    while job.poll() is None:
        try:
            own = job.memory_info().rss
            tree = own + sum(child.memory_info().rss for child in job.children(recursive=True))
        except psutil.Error:
            continue
        peak["job"], peak["tree"] = max(peak["job"], own), max(peak["tree"], tree)
        time.sleep(0.1)


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, {round(psutil.virtual_memory().total / 2**30)} GiB"
