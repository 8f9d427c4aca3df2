"""``LOOPML_EXECUTOR=ray://HOST:PORT``: the same pipeline runs on a separately started Ray cluster.

A private Ray head (own ``--temp-dir``, own ports, Ray Client server on) is started with
``ray start --block`` in its own process session; the pipeline is driven from a fresh Python
process (this one may already hold the session's local Ray from ``ray_local``) and must give
the same outputs as in process. The head is stopped by its process group, then any process
still naming its temp dir is killed by PID: ``ray stop`` would stop every Ray on the machine.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopml import sdk
from loopml.config import Settings
from loopml.errors import InvalidInput
from loopml.pipelines import Pipeline, engine
from loopml.pipelines.executors import open_executor
from loopml.pipelines.loader import load_target
from tests.integration.test_pipelines_executors import FLOW

REPO = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).parent / "ray"
START_TIMEOUT = 120.0

# The driver runs in a fresh interpreter: a ray:// client cannot share a process with a local Ray.
DRIVER = """
import json, sys
from loopml.config import Settings
from loopml.pipelines.loader import load_target
from tests.integration.test_pipelines_ray_client import summary
print("SUMMARY " + json.dumps(summary(load_target(sys.argv[1]), Settings.load(), sys.argv[2])))
"""


def summary(pipe: Pipeline, settings: Settings, executor: str) -> dict[str, object]:
    """What a run produced, as JSON: output digests (models compared through their scores),
    the best score, one score vector, where ``where`` ran, the executor and a logged metric."""
    result = pipe.run({"n": 300}, settings=settings, executor=executor, cache=False)
    skip = ("where", "fit[")
    digests = {
        s.step: s.outputs[0]["digest"]
        for s in result.record.steps
        if s.outputs and not s.step.startswith(skip)
    }
    fitted = next(s for s in result.record.steps if s.step == "fit[2]")
    _, tracking = engine.context(settings)
    accuracy = tracking.get_run(fitted.tracking_run_id or "").metrics["train_accuracy"].value
    value = result.value
    return {
        "executor": result.record.executor,
        "digests": digests,
        "best": value["best"],
        "scores2": [float(x) for x in value["scores"][2]],
        "where": value["where"],
        "driver_pid": os.getpid(),
        "train_accuracy": accuracy,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _pids_naming(marker: str) -> list[int]:
    """PIDs of processes whose command line contains ``marker`` (the head's temp dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            found.append(int(entry.name))
    return found


def _stop_head(head: subprocess.Popen[bytes], temp_dir: str) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=10)
    deadline = time.monotonic() + 20
    while _pids_naming(temp_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in _pids_naming(temp_dir):  # stragglers outside the group (workers, agents)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _ray_env() -> dict[str, str]:
    """This environment without RAY_* settings; token auth off (a ~/.ray/auth_token would turn it on
    for the head but the client would not send it), no usage stats, BLAS pinned."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", OPENBLAS_NUM_THREADS="1")
    env.update(OMP_NUM_THREADS="1")
    return env


@pytest.fixture
def ray_head() -> Iterator[str]:
    """A private one-CPU Ray head with a Ray Client server on 127.0.0.1; yields its ray:// URL."""
    if not RAY.exists():
        pytest.skip(f"Ray CLI not found at {RAY}: pip install 'loopml[ray]'")
    if importlib.util.find_spec("grpc") is None:
        pytest.skip("the Ray Client (ray://) needs grpcio, which is not installed: pip install 'ray[client]'")
    # short path: Ray's unix sockets live under it and are limited to ~107 bytes
    temp_dir = tempfile.mkdtemp(prefix="loopml-rayc-", dir="/tmp")
    gcs_port, client_port = _free_port(), _free_port()
    command = [
        str(RAY), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs_port}",
        f"--ray-client-server-port={client_port}", "--num-cpus=1", "--include-dashboard=false",
        "--disable-usage-stats", f"--temp-dir={temp_dir}",
    ]  # fmt: skip
    log = Path(temp_dir) / "ray-start.log"
    with log.open("wb") as out:
        head = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=_ray_env(), start_new_session=True
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _listening(client_port):
            if head.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-1500:]
                pytest.skip(f"`ray start --head` did not come up within {START_TIMEOUT:.0f}s:\n{tail}")
            time.sleep(0.5)
        yield f"ray://127.0.0.1:{client_port}"
    finally:
        _stop_head(head, temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def flow_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for var in ("LOOPML_TRACKING_URI", "LOOPML_DATABASE_URL", "LOOPML_ARTIFACT_ROOT", "LOOPML_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    sdk.reset()
    path = tmp_path / "sweep.py"
    path.write_text(textwrap.dedent(FLOW))
    yield path
    engine.reset()
    sdk.reset()


@pytest.mark.timeout(300)
def test_ray_client_cluster_gives_the_same_outputs(flow_file: Path, ray_head: str) -> None:
    local = summary(load_target(str(flow_file)), Settings.load(), "inprocess")
    env = _ray_env()
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
    # the proxy starts a server process per client: slow on a loaded machine (Ray allows 5 s at first)
    env.update(RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S="20")
    for _attempt in range(2):
        proc = subprocess.run(
            [sys.executable, "-c", DRIVER, str(flow_file), ray_head],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        # Ray's proxy starts one server process per client on the first free port from 23000; if
        # that process dies at start-up (a port taken meanwhile), connecting again starts another.
        if "Starting Ray client server failed" not in proc.stderr:
            break
    lines = [line for line in proc.stdout.splitlines() if line.startswith("SUMMARY ")]
    assert proc.returncode == 0 and lines, f"driver failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    remote = json.loads(lines[-1].removeprefix("SUMMARY "))
    assert remote["executor"] == ray_head
    assert remote["digests"] == local["digests"]  # the frame and each model's scores: byte-identical
    assert remote["best"] == local["best"]
    assert remote["scores2"] == local["scores2"]
    assert remote["train_accuracy"] > 0.6
    where = remote["where"]
    assert where["pid"] not in (remote["driver_pid"], os.getpid())  # ran in a worker of the cluster
    assert where["blas"] == "1"


@pytest.mark.ray
@pytest.mark.timeout(120)
def test_ray_client_refuses_a_process_already_on_a_local_ray(ray_local: object) -> None:
    # its tasks would otherwise run on the local instance, not on the cluster the user named
    with pytest.raises(InvalidInput, match="already runs a local Ray"):
        open_executor("ray://127.0.0.1:9")


def test_ray_client_without_grpcio_says_what_to_install() -> None:
    pytest.importorskip("ray")
    # a fresh process (this one may already hold the session's local Ray, refused first) in which
    # grpcio cannot be found, as in an install of plain `ray` without the client extra
    code = (
        "import importlib.util, sys\n"
        "find = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda name, *a: None if name == 'grpc' else find(name, *a)\n"
        "from loopml.pipelines.executors import open_executor; open_executor('ray://127.0.0.1:9')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=_ray_env(), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    assert "InvalidInput" in proc.stderr and "pip install 'ray[client]'" in proc.stderr
