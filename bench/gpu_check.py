"""The GPU check in one call: the CUDA-marked tests, then the LDM throughput sweep; every figure as JSON.

    bench/gpu_check.sh                 # on the GPU machine (docs/BENCHMARKS.md, "GPU check")
    bench/gpu_check.sh --cpu-dry-run   # the same steps on this CPU: tests on T2A_TEST_DEVICE=cpu, a tiny UNet

bench/gpu_check.sh installs the carried wheels and starts this. It writes under --out ($OUT on the
GPU machine, which comes back; at most 8 files):

    environment.json     Python, torch, CUDA, numpy, diffusers, transformers, accelerate, Beam; the GPU
    cuda_tests.json      every test of `pytest -m cuda tests/cuda`: outcome, seconds, message
    cuda_tests.xml       the same as JUnit XML
    ldm_throughput.json  every configuration of bench/ldm_throughput.py that ran (or why it did not), and
                         `t2a train ldm` itself on latent shards (bench/ldm_train_throughput.py)
    summary.json         the counts, the best configuration, its samples/s and MFU; the trainer's
                         samples/s and data wait
    gpu_check.log        everything the steps printed

Each step has a deadline inside --budget-s (the run tool allows 10 minutes a command), and what is
left undone for lack of time is recorded as skipped, so a slow step never costs the results before it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TRAINER = "trainer+channels_last+fused_adamw"
TRAINER_GPU = ["--device", "cuda", "--size", "audioldm-s"]
TRAINER_CPU = [
    "--device",
    "cpu",
    "--size",
    "tiny",
    "--batch",
    "4",
    "--steps",
    "4",
    "--log-every",
    "2",
    "--workers",
    "1",
    "--samples",
    "32",
]
# (name, options) in order of importance: the sweep stops launching configurations when time runs out.
GPU_SWEEP = [
    ("baseline", ["--batches", "32", "64", "128", "256"]),
    ("fused_adamw", ["--batches", "128", "256", "--fused-adamw"]),
    ("channels_last+fused_adamw", ["--batches", "128", "256", "--channels-last", "--fused-adamw"]),
    # The trainer itself on latent shards (bench/ldm_train_throughput.py): samples/s and data-wait.
    (
        TRAINER,
        ["--batch", "128", "--steps", "40", "--log-every", "10", "--workers", "4", "--channels-last", "--fused-adamw"],
    ),
    (
        "device_noise+channels_last+fused_adamw",
        ["--batches", "256", "--channels-last", "--fused-adamw", "--noise-generator", "device"],
    ),
    (
        "compile+channels_last+fused_adamw",
        ["--batches", "256", "--compile", "--channels-last", "--fused-adamw", "--warmup", "3"],
    ),
    ("eager_attention", ["--batches", "128", "--attention", "eager"]),
    (
        "compile+channels_last+fused_adamw+device_noise",
        [
            "--batches",
            "128",
            "256",
            "--compile",
            "--channels-last",
            "--fused-adamw",
            "--noise-generator",
            "device",
            "--warmup",
            "3",
        ],
    ),
]
GPU_COMMON = ["--device", "cuda", "--size", "audioldm-s", "--dtypes", "bf16", "--repeats", "10", "--warmup", "2"]
# The dry run: the same configurations, a tiny UNet on the CPU, batch 2, one timed step.
CPU_COMMON = ["--device", "cpu", "--size", "tiny", "--dtypes", "bf16", "--repeats", "1", "--warmup", "1"]
PACKAGES = [
    "torch",
    "numpy",
    "diffusers",
    "transformers",
    "accelerate",
    "huggingface-hub",
    "apache-beam",
    "pydantic",
    "webdataset",
    "librosa",
    "soundfile",
    "soxr",
    "scipy",
    "pyarrow",
]


def log(message: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {message}", flush=True)


def environment(dry_run: bool) -> dict:
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    info = {
        "mode": "cpu-dry-run" if dry_run else "gpu",
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "packages": versions,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {
            "name": props.name,
            "capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / 2**30, 1),
            "multiprocessors": props.multi_processor_count,
            "count": torch.cuda.device_count(),
            "cudnn": torch.backends.cudnn.version(),
        }
        info["nvidia_smi"] = _command(
            [
                "nvidia-smi",
                "--query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit,temperature.gpu",
                "--format=csv",
            ]
        )
    return info


def _command(cmd: list[str]) -> str | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def run_tests(out: Path, device: str, timeout: float, extra: list[str]) -> dict:
    """`pytest -m cuda tests/cuda` on `device`; the JUnit report turned into one JSON record per test."""
    xml = out / "cuda_tests.xml"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "cuda",
        "tests/cuda",
        "-p",
        "no:cacheprovider",
        "-q",
        "-rfEs",
        f"--junitxml={xml}",
        *extra,
    ]
    env = {**os.environ, "T2A_TEST_DEVICE": device, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=sys.stdout, stderr=sys.stdout)
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        # Ctrl-C: pytest stops, and still writes the JUnit report of the tests that finished.
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        code = "timeout"
    result = {
        "command": " ".join(cmd[1:]),
        "device": device,
        "exit": code,
        "seconds": round(time.perf_counter() - started, 1),
    }
    result |= junit(xml) if xml.is_file() else {"tests": [], "counts": {}}
    return result


def junit(path: Path) -> dict:
    tests, counts = [], {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", None
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                message = (node.get("message") or "")[:2000]
                break
        counts[outcome] += 1
        tests.append(
            {
                "test": f"{case.get('classname')}::{case.get('name')}",
                "outcome": outcome,
                "seconds": float(case.get("time") or 0),
                "message": message,
            }
        )
    return {"tests": tests, "counts": counts}


def run_sweep(dry_run: bool, deadline: float, per_run: float) -> list[dict]:
    """bench/ldm_throughput.py once per configuration (bench/ldm_train_throughput.py for TRAINER), each in
    its own process (a fresh compile cache and allocator); a configuration that would start with less
    than a minute left is recorded as skipped."""
    common = CPU_COMMON if dry_run else GPU_COMMON
    runs, scratch = [], Path(tempfile.mkdtemp(prefix="t2a-ldm-"))
    for name, options in GPU_SWEEP:
        left = deadline - time.monotonic()
        if left < 60:
            runs.append({"name": name, "options": options, "skipped": f"out of time ({left:.0f} s left)"})
            continue
        target = scratch / f"{name}.json"  # outside `out`: only the finished figures go back
        if name == TRAINER:
            script, options = "bench/ldm_train_throughput.py", TRAINER_CPU if dry_run else [*TRAINER_GPU, *options]
            options = [*options, "--channels-last", "--fused-adamw"] if dry_run else options
        else:
            script, options = "bench/ldm_throughput.py", [*common, *_dry(options, dry_run)]
        cmd = [sys.executable, script, *options, "--out", str(target)]
        log(f"{Path(script).stem} {name}: {' '.join(cmd[2:])}")
        started = time.perf_counter()
        record = {"name": name, "options": options}
        try:
            done = subprocess.run(
                cmd, cwd=ROOT, timeout=min(per_run, left - 10), stdout=subprocess.DEVNULL, stderr=sys.stdout
            )
            record["exit"] = done.returncode
        except subprocess.TimeoutExpired:
            record["exit"] = "timeout"
        record["seconds"] = round(time.perf_counter() - started, 1)
        if target.is_file():
            record["result"] = json.loads(target.read_text())
            target.unlink()
        runs.append(record)
    return runs


def _dry(options: list[str], dry_run: bool) -> list[str]:
    """The dry run times batch 2 wherever the GPU sweep lists its batch sizes, and compiles with the
    aot_eager backend: dynamo's tracing and AOTAutograd run, inductor's C++ code generation (minutes on
    two CPU cores) does not."""
    if not dry_run:
        return options
    if "--compile" in options:
        options = [*options, "--compile-backend", "aot_eager"]
    out, skipping = [], False
    for option in options:
        if option == "--batches":
            out += ["--batches", "2"]
            skipping = True
        elif option.startswith("--"):
            skipping = False
            out.append(option)
        elif not skipping:
            out.append(option)
    return out


def summarise(env: dict, tests: dict, runs: list[dict], seconds: float) -> dict:
    rows = [
        {
            "config": run["name"],
            **run["result"]["settings"],
            **row,
            "gflop_per_sample": run["result"]["gflop_per_sample_fwd_bwd"],
            "peak_tflops": run["result"]["peak_tflops"],
            "peak_source": run["result"]["peak_source"],
        }
        for run in runs
        if "result" in run and run["name"] != TRAINER
        for row in run["result"]["rows"]
        if "samples_per_s" in row
    ]
    best = max(rows, key=lambda row: row["samples_per_s"], default=None)
    trainer = next((run["result"] for run in runs if run["name"] == TRAINER and "result" in run), None)
    return {
        "mode": env["mode"],
        "device": (env.get("gpu") or {}).get("name", "cpu"),
        "seconds": round(seconds, 1),
        "tests": tests["counts"],
        "tests_exit": tests["exit"],
        "sweep_runs": {
            "ran": sum("result" in r for r in runs),
            "skipped": sum("skipped" in r for r in runs),
            "failed": sum(r.get("exit") not in (0, None) for r in runs),
        },
        "best": best,
        "mfu_target": 0.40,
        "meets_target": bool(best and best["mfu"] >= 0.40) if env["mode"] == "gpu" else None,
        "trainer": trainer and {"settings": trainer["settings"], "steady": trainer["steady"], "data_wait_target": 0.02},
        "rows": rows,
    }


def table(summary: dict) -> str:
    lines = [
        "config | batch | samples/s | step s | TFLOP/s | MFU | MFU vs matmul | GiB",
        "---|---|---|---|---|---|---|---",
    ]
    for row in summary["rows"]:
        lines.append(
            f"{row['config']} | {row['batch']} | {row['samples_per_s']} | {row['step_s']} | {row['achieved_tflops']} | "
            f"{row['mfu']:.1%} | {row['mfu_vs_matmul']:.1%} | {row.get('peak_memory_gib', '-')}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or ROOT / "bench" / "out" / "gpu_check"))
    parser.add_argument(
        "--cpu-dry-run", action="store_true", help="the same steps on the CPU: tests on cpu, a tiny UNet"
    )
    parser.add_argument("--budget-s", type=float, default=420.0, help="the whole check's deadline (default 7 min)")
    parser.add_argument("--tests-budget-s", type=float, default=200.0)
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    deadline = started + args.budget_s
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    env = environment(args.cpu_dry_run)
    (out / "environment.json").write_text(json.dumps(env, indent=1) + "\n")
    log(
        f"environment: {json.dumps({k: env.get(k) for k in ('mode', 'python', 'torch_cuda', 'gpu')})} {env['packages']}"
    )
    if not args.cpu_dry_run and not env["cuda_available"]:
        log("torch sees no CUDA GPU: use --cpu-dry-run on a machine without one")
        return 2
    device = "cpu" if args.cpu_dry_run else "cuda"
    tests = {"exit": None, "counts": {}, "tests": [], "skipped": "--skip-tests"}
    if not args.skip_tests:
        log(f"pytest -m cuda tests/cuda on {device}")
        tests = run_tests(out, device, min(args.tests_budget_s, deadline - time.monotonic() - 60), args.pytest_args)
        log(f"tests: {tests['counts']} (exit {tests['exit']}, {tests['seconds']} s)")
    (out / "cuda_tests.json").write_text(json.dumps(tests, indent=1) + "\n")
    runs = [] if args.skip_sweep else run_sweep(args.cpu_dry_run, deadline - 15, per_run=240.0)
    (out / "ldm_throughput.json").write_text(json.dumps({"environment": env, "runs": runs}, indent=1) + "\n")
    summary = summarise(env, tests, runs, time.monotonic() - started)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(table(summary))
    best, trainer = summary["best"], summary["trainer"]
    if trainer and trainer["steady"]:
        steady = trainer["steady"]
        print(
            f"trainer (t2a train ldm, batch {trainer['settings']['batch']}, {trainer['settings']['workers']} workers): "
            f"{steady['samples_per_s']:.1f} samples/s, {steady['step_s']:.3f} s/step, data wait {steady['data_wait']:.1%}"
        )
    print(
        f"tests {summary['tests']} exit {summary['tests_exit']}; sweep {summary['sweep_runs']}; "
        + (
            f"best {best['config']} batch {best['batch']}: {best['samples_per_s']} samples/s, MFU {best['mfu']:.1%} of {best['peak_tflops']} TFLOP/s ({best['peak_source']})"
            if best
            else "no throughput measured"
        )
        + f"; {summary['seconds']} s in all; figures in {out}"
    )
    return 0 if tests["exit"] in (0, None) and summary["sweep_runs"]["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
