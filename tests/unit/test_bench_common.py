"""The benchmark harnesses' shared helpers (bench/_common.py): statistics, /proc accounting, children,
servers. Every figure in BENCHMARKS.md goes through them, so a wrong tick count or percentile would
silently skew every ratio."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_common", BENCH / "_common.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_common"] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


common = _load()


def _burn(cpu_seconds: float) -> None:
    start = time.process_time()
    while time.process_time() - start < cpu_seconds:
        sum(i * i for i in range(10_000))


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS line")


def test_median_and_nearest_rank_percentile() -> None:
    assert common.median([3.0, 1.0, 2.0]) == 2.0
    assert common.median([4.0, 1.0, 3.0, 2.0]) == 2.5
    samples = [float(v) for v in range(1, 101)]  # 1..100, shuffled order must not matter
    shuffled = samples[::-1]
    assert common.percentile(shuffled, 0.99) == 100.0
    assert common.percentile(shuffled, 0.95) == 96.0
    assert common.percentile(shuffled, 0.5) == 51.0
    assert common.percentile([7.0], 0.99) == 7.0
    with pytest.raises(ValueError, match="no values"):
        common.percentile([], 0.5)


def test_ratio_is_none_when_it_cannot_be_computed() -> None:
    assert common.ratio(3.0, 2.0) == 1.5
    assert common.ratio(3.0, 0.0) is None
    assert common.ratio(None, 2.0) is None
    assert common.ratio(1.0, None) is None


def test_read_stat_of_this_process() -> None:
    found = common.read_stat(os.getpid())
    assert found is not None
    assert found[0] == os.getppid()
    assert common.read_stat(2**22 + 12345) is None  # above pid_max: never a live process


def test_process_cpu_time_grows_with_busy_work() -> None:
    before = common.process_cpu_seconds(os.getpid())
    self_before = common.self_cpu_seconds()
    busy_before = common.machine_busy_seconds()
    _burn(0.3)
    used = common.process_cpu_seconds(os.getpid()) - before
    assert 0.2 <= used <= 5.0  # /proc ticks are 10 ms
    assert common.self_cpu_seconds() - self_before >= 0.25
    assert common.machine_busy_seconds() - busy_before >= 0.2


def test_tree_includes_children_and_their_cpu() -> None:
    code = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\ntime.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 20
        while common.read_stat(child.pid) is None or common.process_cpu_seconds(child.pid) < 0.3:
            assert time.monotonic() < deadline, "the child did not burn its CPU in time"
            time.sleep(0.05)
        pids = common.tree_pids(common.scan_proc(), os.getpid())
        assert pids[0] == os.getpid() and child.pid in pids
        assert common.tree_size(os.getpid()) >= 2
        own = common.process_cpu_seconds(os.getpid())
        assert common.tree_cpu_seconds(os.getpid()) >= own + 0.3
    finally:
        child.kill()
        child.wait(timeout=10)


def test_peak_rss_reads_the_high_water_mark() -> None:
    rss = _rss_mb()
    assert common.peak_rss_mb(os.getpid()) >= rss > 0
    block = bytearray(64 * 1024 * 1024)  # zero-filled, so every page is touched
    assert common.peak_rss_mb(os.getpid()) >= rss + 60
    del block
    with pytest.raises(common.BenchError, match="gone"):
        common.peak_rss_mb(2**22 + 12345)


def test_run_child_reports_peak_rss_cpu_and_json() -> None:
    code = (
        "import json, time\nblock = bytearray(80 * 1024 * 1024)\n"
        "t = time.process_time()\nwhile time.process_time() - t < 0.2: pass\n"
        "print('noise')\nprint(json.dumps({'ok': 1}))\nprint('trailing')"
    )
    done = common.run_child([sys.executable, "-c", code], env=common.pinned_env())
    assert done.returncode == 0
    assert done.peak_rss_mb >= 80
    assert done.cpu_s >= 0.2
    assert done.last_json() == {"ok": 1}
    failed = common.run_child([sys.executable, "-c", "raise SystemExit(3)"], env=os.environ, capture=False)
    assert failed.returncode == 3 and failed.stdout == ""


def test_pinned_env_pins_blas_threads_and_adds_extras() -> None:
    env = common.pinned_env({"PATH": "/bin", "OMP_NUM_THREADS": "8"}, EXTRA="1")
    assert env == {"PATH": "/bin", **common.PINS, "EXTRA": "1"}
    assert common.pinned([sys.executable, "-V"], 1) == ["taskset", "-c", "1", sys.executable, "-V"]
    assert common.pinned([sys.executable, "-V"], None) == [sys.executable, "-V"]


def test_server_waits_until_ready_then_stops_its_process_group(tmp_path: Path) -> None:
    port = common.free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", common.HOST]
    with common.Server("static", argv, dict(os.environ), tmp_path / "s.log", port, tmp_path) as server:
        res = server.wait_ready(common.answers_200("GET", server.base_url + "/"), timeout_s=60)
        assert res.status_code == 200 and server.startup_s > 0
        pid = server.pid
        assert common.tree_size(pid) == 1
    assert common.read_stat(pid) is None or not common._group_alive(pid)
    with pytest.raises(common.BenchError, match="not running"):
        _ = server.pid


def test_server_that_exits_at_start_up_is_a_bench_error(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "print('bad config'); raise SystemExit(3)"]
    server = common.Server("broken", argv, dict(os.environ), tmp_path / "b.log", common.free_port())
    with server, pytest.raises(common.BenchError, match=r"broken exited with code 3[\s\S]*bad config"):
        server.wait_ready(common.answers_200("GET", server.base_url + "/"), timeout_s=60)


def test_missing_peer_venv_says_how_to_create_it(tmp_path: Path) -> None:
    assert common.peer_venv("feast") == common.ROOT / ".bench" / "feast-venv"
    with pytest.raises(common.BenchError, match=r"no venv at .*: make bench creates it"):
        common.require_venv(tmp_path / "nothing-venv", "make bench creates it")
    assert common.venv_package_version(tmp_path / "nothing-venv", "httpx") is None
    assert common.venv_package_version(Path(sys.prefix), "httpx") is not None
