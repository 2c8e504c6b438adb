"""Beam pipeline options for every job: what follows `--` on the command line, as Beam parses it.

Besides Beam's own flags, two things happen here for the cluster paths (docs/runners.md):

- `--environment_type=EXTERNAL` (SDK workers from a worker pool you run, the way Flink and Spark
  run Python workers): when the job service runs in this process (the FnApiRunner, or the
  PortableRunner with `--job_endpoint=embed`) the pool is asked for one probe worker first, and
  the job refuses to start, with the reason, when none answers within `--worker_start_timeout`
  seconds (default 60). Without the probe a pool whose `python` lacks Beam makes the job wait
  forever: the pool starts each worker as `python -c 'from apache_beam…'` and only its own log says
  `No module named 'apache_beam'`.
- With the FnApiRunner (the default) an EXTERNAL environment runs `--direct_num_workers` SDK workers
  from the pool (`ExternalPoolRunner`); the PortableRunner's embedded job service asks for one.

A worker that finds its machine unfit for the job (a manifest that is not there, because the
workers do not share the launcher's files) raises `WorkerSetupError`; `find_worker_setup_error`
finds it in whatever the runner re-raised, so the command says it in one line (exit 2).
"""

from __future__ import annotations

import logging
import re
import socket
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from pipelines.core.config import ConfigError

log = logging.getLogger(__name__)
EXTERNAL_POOL_RUNNER = "pipelines.core.beam.ExternalPoolRunner"


class T2aOptions(PipelineOptions):
    """t2a's own pipeline options (they go after `--` with Beam's)."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:  # noqa: ANN001
        parser.add_argument(
            "--worker_start_timeout",
            type=float,
            default=60.0,
            help="seconds an EXTERNAL worker pool has to start a probe SDK worker before the job refuses to run",
        )
        parser.add_argument(
            "--no_forward_secrets",
            dest="forward_secrets",
            action="store_false",
            help="do not send the environment variables the config names (API keys) to the workers: they have them",
        )


# Runners Beam ships but does not know by name (the class path always works).
RUNNER_PATHS = {"DaskRunner": "apache_beam.runners.dask.dask_runner.DaskRunner"}


def pipeline_options(beam_args: Sequence[str] = ()) -> PipelineOptions:
    """Beam's own flags (`--runner=…`, `--job_endpoint=…`, …); without `--runner` the FnApiRunner
    (the DirectRunner would first try to download the Prism runner). `--runner=DaskRunner` names
    Beam's Dask runner (needs `dask` and `distributed`; docs/runners.md). An EXTERNAL worker pool is
    checked first when the job service runs here (`check_worker_pool`)."""
    options = PipelineOptions(list(beam_args))
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = "FnApiRunner"
    standard.runner = RUNNER_PATHS.get(standard.runner, standard.runner)
    portable = options.view_as(PortableOptions)
    if portable.environment_type and portable.environment_type.upper() == "EXTERNAL":
        runner = standard.runner.rsplit(".", 1)[-1]
        if runner == "FnApiRunner":
            standard.runner = EXTERNAL_POOL_RUNNER
        embedded = runner in ("FnApiRunner", "ExternalPoolRunner") or (
            runner == "PortableRunner" and portable.job_endpoint == "embed"
        )
        address = external_address(portable.environment_config)
        if embedded:
            check_worker_pool(address, options.view_as(T2aOptions).worker_start_timeout)
        else:
            log.warning(
                "the EXTERNAL worker pool at %s is not checked from here (the job service runs elsewhere): "
                "its `python` must have apache_beam and t2a installed, or the job waits for workers forever",
                address,
            )
    return options


def external_address(config: str | None) -> str:
    """host:port of an EXTERNAL environment (`--environment_config=host:port`, or Beam's JSON form)."""
    import json

    if config and config.lstrip().startswith("{"):
        try:
            config = json.loads(config).get("url")
        except (ValueError, AttributeError):
            config = None
    if not config or not re.fullmatch(r"[^\s:/]+:\d{1,5}", config):
        raise ConfigError(
            f"--environment_type=EXTERNAL needs --environment_config=host:port (the worker pool), got {config!r}"
        )
    return config


def check_worker_pool(address: str, timeout: float) -> None:
    """Ask the worker pool at `address` for one SDK worker pointed at a probe control service here,
    and wait until it connects; the probe then ends its stream and the worker exits. A ConfigError
    that says why when no pool answers, the pool refuses, or no worker connects within `timeout`."""
    import grpc
    from apache_beam.portability.api import beam_fn_api_pb2, beam_fn_api_pb2_grpc, endpoints_pb2

    connected = threading.Event()

    class Probe(beam_fn_api_pb2_grpc.BeamFnControlServicer):
        def Control(self, request_iterator, context):  # noqa: ANN001, ANN202, N802 (the gRPC method name)
            connected.set()
            return iter(())

    server = grpc.server(ThreadPoolExecutor(2))
    beam_fn_api_pb2_grpc.add_BeamFnControlServicer_to_server(Probe(), server)
    port = server.add_insecure_port("[::]:0")
    server.start()
    channel = grpc.insecure_channel(address)
    here = endpoints_pb2.ApiServiceDescriptor(url=f"{socket.getfqdn()}:{port}")  # as Beam's own handler says it
    request = beam_fn_api_pb2.StartWorkerRequest(
        worker_id="t2a-probe",
        control_endpoint=here,
        logging_endpoint=here,
        artifact_endpoint=here,
        provision_endpoint=here,
    )
    try:
        stub = beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolStub(channel)
        try:
            response = stub.StartWorker(request, timeout=timeout, wait_for_ready=True)  # a pool still starting
        except grpc.RpcError as error:
            code = error.code().name if hasattr(error, "code") else type(error).__name__
            raise ConfigError(
                f"no EXTERNAL worker pool answers at {address} ({code}): start one with "
                "`python -m apache_beam.runners.worker.worker_pool_main --service_port=PORT` in t2a's environment "
                "(docs/runners.md)"
            ) from None
        if response.error:
            raise ConfigError(f"the EXTERNAL worker pool at {address} cannot start workers: {response.error.strip()}")
        if not connected.wait(timeout):
            raise ConfigError(
                f"the EXTERNAL worker pool at {address} started no SDK worker within {timeout:.0f} s "
                "(--worker_start_timeout): its workers cannot run. The pool starts each worker as "
                "`python -c 'from apache_beam…'` with the first `python` on its PATH, which must have "
                "apache_beam and t2a installed (else the pool's log says `No module named 'apache_beam'`): "
                "start the pool with t2a's environment first on PATH (docs/runners.md)"
            )
    finally:
        channel.close()
        server.stop(0)


class ExternalPoolRunner(FnApiRunner):
    """The FnApiRunner with its SDK workers from an EXTERNAL worker pool (`--environment_config`):
    `--direct_num_workers` of them, each a process of the pool. `pipeline_options` picks it for
    `--environment_type=EXTERNAL` with the FnApiRunner."""

    def run_pipeline(self, pipeline, options):  # noqa: ANN001, ANN201 (Beam's signature)
        from apache_beam.transforms.environments import ExternalEnvironment

        self._default_environment = ExternalEnvironment.from_options(options.view_as(PortableOptions))
        return super().run_pipeline(pipeline, options)


class WorkerSetupError(ConfigError):
    """A worker cannot do its part because of how the workers were set up (not because of the data):
    raised inside a DoFn, it fails the run, and the launcher reports it in one line."""

    MARK = "t2a worker setup: "

    def __init__(self, message: str):
        super().__init__(self.MARK + message)


def find_worker_setup_error(error: BaseException) -> ConfigError | None:
    """The `WorkerSetupError` inside whatever a runner raised (Beam re-raises a worker's exception
    with its own text around it, or as text inside its own), as a ConfigError with its message
    only; None for any other error."""
    seen: set[int] = set()
    current: BaseException | None = error
    texts = []
    while current is not None and id(current) not in seen:
        texts.append(str(current))
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    for text in texts:
        if WorkerSetupError.MARK in text:
            message = text.rsplit(WorkerSetupError.MARK, 1)[1].split("\n", 1)[0]
            message = re.sub(r" \[while running '[^\]]*'\]", "", message)
            return ConfigError(message.rstrip(" '\""))
    return None


def side_inputs_in_this_task() -> None:
    """On a worker of Beam's DaskRunner, compute side inputs inside the task that reads them.

    The DaskRunner reads a side input by computing its bag from inside the worker task that needs
    it. A dask worker's default scheduler is its cluster, which it can reach only through a
    client: a fresh worker has none ("Requested dask.distributed scheduler but no Client active"),
    and one that has a client blocks its only thread on a nested job. The synchronous scheduler
    computes the side input's lineage here, in this process (Beam-internal side inputs of that
    lineage too), as every other runner would recompute or read it: same values, no nested job.
    A no-op outside a dask worker (and without `distributed` installed)."""
    try:
        import dask
        from distributed import get_worker
    except ImportError:
        return
    try:
        get_worker()
    except ValueError:  # not in a dask worker
        return
    dask.config.set(scheduler="sync")
