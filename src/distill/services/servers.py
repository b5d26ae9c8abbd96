"""Local services: the Prefect server, the served ``local`` deployment and the MLflow UI.

``python -m distill.services <command>``:

- ``serve``: start the Prefect server on 127.0.0.1:4200 if it is down, wait for its health
  endpoint, and serve the ``distill-pipeline/local`` deployment from a background process.
- ``trigger [-p key=value ...]``: check that the server and the deployment are up (saying how to
  start them if not), then ``prefect deployment run distill-pipeline/local --watch``, streaming the
  served process's output (the step running, the texts/s bars) to this terminal meanwhile.
- ``ui``: start the MLflow UI on 127.0.0.1:5000 against the project's store.
- ``stop``: stop what ``serve`` and ``ui`` started.

Everything binds 127.0.0.1 only, on ports 4200 and 5000 unless ``DISTILL_PREFECT_PORT`` /
``DISTILL_MLFLOW_PORT`` say otherwise (tests use free ports of their own). Background processes write
logs and pid files under ``.prefect/``.

Why the processes are started here rather than by ``prefect server start --background``: that covers the
server only (the served deployment and the MLflow UI have no background mode), keeps one pid per
``PREFECT_HOME``, and returns before the server answers; here all three are started, recorded (pid and
start time, so a reused pid is never signalled) and waited for in one way, per project folder.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from distill.config.loader import deep_merge, load_params, parse_override
from distill.services.tracking import artifact_root, tracking_uri

PREFECT_PORT = int(os.environ.get("DISTILL_PREFECT_PORT", "4200"))
MLFLOW_PORT = int(os.environ.get("DISTILL_MLFLOW_PORT", "5000"))
PREFECT_URL = f"http://127.0.0.1:{PREFECT_PORT}"
MLFLOW_URL = f"http://127.0.0.1:{MLFLOW_PORT}"
# Environment settings beat prefect.toml: the server, the served flow, the CLI and this process's
# client all use the chosen port.
os.environ.update({"PREFECT_API_URL": f"{PREFECT_URL}/api", "PREFECT_SERVER_API_PORT": str(PREFECT_PORT)})
DEPLOYMENT = "distill-pipeline/local"
STATE = Path(".prefect")
BIN = Path(sys.executable).parent


class ServiceError(RuntimeError):
    """A service is down or failed to start; the message says what to do."""


def _get(url: str, timeout: float = 3.0) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback only
            return response.read()
    except (urllib.error.URLError, OSError):
        return None


def prefect_up() -> bool:
    return _get(f"{PREFECT_URL}/api/health") is not None


def _start_time(pid: int) -> str | None:
    """The process's start time (``psutil``), which tells a recorded pid from a later process reusing it."""
    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except psutil.Error:
        return None


def _recorded_pid(name: str) -> int | None:
    """The pid in .prefect/<name>.pid if that process still runs: its start time must match the one
    recorded, so a reused pid is never taken for (or signalled as) ours."""
    pid_file = STATE / f"{name}.pid"
    if not pid_file.is_file():
        return None
    try:
        pid_text, started = pid_file.read_text().split()
        pid = int(pid_text)
    except ValueError:
        return None
    return pid if _start_time(pid) == started else None


def _pid_alive(name: str) -> bool:
    return _recorded_pid(name) is not None


def _spawn(name: str, command: list[str], env: dict[str, str] | None = None) -> None:
    """Start ``command`` in its own session (it outlives this process), logging to .prefect/<name>.log."""
    STATE.mkdir(exist_ok=True)
    log = open(STATE / f"{name}.log", "ab")
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    (STATE / f"{name}.pid").write_text(f"{process.pid} {_start_time(process.pid)}")


def _wait(check, what: str, log_name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise ServiceError(f"gave up waiting for {what} after {timeout:.0f}s; see {STATE / (log_name + '.log')}")


def deployment_served(since: float = 0.0) -> bool:
    """True when our serve process runs and its runner has polled for the deployment since ``since``."""
    if not _pid_alive("serve"):
        return False
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name(DEPLOYMENT)
    except ObjectNotFound:
        return False
    polled = deployment.last_polled.timestamp() if deployment.last_polled else 0.0
    return not deployment.paused and polled >= since


def serve(timeout: float = 120) -> None:
    if not prefect_up():
        print(f"starting the Prefect server on {PREFECT_URL} …")
        _spawn("server", [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(PREFECT_PORT)])
        _wait(prefect_up, "the Prefect server", "server", timeout)
    print(f"Prefect server is up: {PREFECT_URL}")
    if not _pid_alive("serve"):
        print(f"serving {DEPLOYMENT} …")
        started = time.time()
        _spawn("serve", [sys.executable, "flows/distill_pipeline.py"])
        _wait(lambda: deployment_served(started), f"the {DEPLOYMENT} deployment", "serve", timeout)
    print(f"deployment {DEPLOYMENT} is served (log: {STATE / 'serve.log'})")


def trigger(parameters: list[str], watch: bool = True) -> int:
    if not prefect_up():
        raise ServiceError(
            f"the Prefect server is not running at {PREFECT_URL}. Start it and serve the deployment with "
            "`make serve`, then run this again."
        )
    if not _pid_alive("serve"):
        raise ServiceError(
            f"the Prefect server is up but nothing serves {DEPLOYMENT}, so the run would wait forever. "
            "Serve it with `make serve`."
        )
    command = [str(BIN / "prefect"), "deployment", "run", DEPLOYMENT]
    if watch:
        command.append("--watch")
    for name, value in flow_parameters(parameters).items():
        command += ["-p", f"{name}={json.dumps(value)}"]
    log_path = STATE / "serve.log"
    with log_path.open("rb") as served_output:
        served_output.seek(0, os.SEEK_END)
        process = subprocess.Popen(command)
        while True:
            finished = process.poll() is not None
            chunk = served_output.read()
            if chunk:
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
            if finished:
                return process.returncode
            time.sleep(0.3)


def flow_parameters(dotted: list[str]) -> dict[str, Any]:
    """``["train.epochs=2", "seed=3"]`` → ``{"train": {"epochs": 2}, "seed": 3}``.

    Prefect parameters are the flow's argument names, so a dotted params key becomes a partial
    mapping for its section (``-p train='{"epochs": 2}'``).
    """
    merged: dict[str, Any] = {}
    for item in dotted:
        merged = deep_merge(merged, parse_override(item))
    return merged


def ui(timeout: float = 90) -> None:
    store = tracking_uri(load_params("params.yaml"))  # MLFLOW_TRACKING_URI, else the params' store
    if _get(MLFLOW_URL) is None:
        print(f"starting the MLflow UI on {MLFLOW_URL} …")
        _spawn(
            "mlflow-ui",
            [
                str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(MLFLOW_PORT), "--workers", "1",
                "--backend-store-uri", store,
                "--default-artifact-root", artifact_root(store) or Path("mlartifacts").resolve().as_uri(),
            ],
            env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )
        _wait(lambda: _get(MLFLOW_URL) is not None, "the MLflow UI", "mlflow-ui", timeout)
    print(f"MLflow UI: {MLFLOW_URL}  (runs: experiment 'distill'; models: Models tab → distilled-student)")


def stop(timeout: float = 30) -> None:
    for name in ("serve", "server", "mlflow-ui"):
        pid = _recorded_pid(name)
        if pid is not None:
            os.killpg(pid, signal.SIGTERM)
            _wait(lambda name=name: not _pid_alive(name), f"stopping {name}", name, timeout)
            print(f"stopped {name} (pid {pid})")
        (STATE / f"{name}.pid").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distill.services", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve")
    run_parser = commands.add_parser("trigger")
    run_parser.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE")
    run_parser.add_argument("--no-watch", action="store_true")
    commands.add_parser("ui")
    commands.add_parser("stop")
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            serve()
        elif args.command == "trigger":
            return trigger(args.param, watch=not args.no_watch)
        elif args.command == "ui":
            ui()
        else:
            stop()
    except ServiceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


