"""CPU time the gateway spends per request, on realistic traffic: robust where wall-clock throughput is not.

Starts the shared harness's fake upstream and `cliffguard serve` (bench/cliffguard-realistic.yaml by
default), warms up, then sends N requests with the shared load generator (distinct prompts from many
users) and reads the CPU time (user + system, from /proc) of every gateway process before and after.
CPU microseconds per request do not depend on what else the machine is doing (much), so optimisations
can be compared on a shared 2-core machine where req/s cannot. Optionally runs the gateway under
py-spy (`--profile FILE`: folded stacks of every gateway process).

    .venv/bin/python bench/cpu_per_request.py [--mode plain|stream] [-n 20000] [--config FILE]
                                              [--no-classifier] [--feedback] [--profile out.txt]
                                              [--server uvicorn|granian] [--tree DIR]

`--no-classifier` and `--feedback` run the same config with the classifier off or user feedback on.
`--tree DIR` runs the gateway from another checkout (a `git worktree` of an older commit) with this
interpreter: `python -m` puts the working directory first on the path, so the gateway is started there.
`--server granian` runs the same app under granian instead of `cliffguard serve` (pip install granian).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
HARNESS = Path(os.environ.get("BENCH_HARNESS", REPO.parent / "shared" / "bench"))
BENCH_PY = os.environ.get("BENCH_PY", "/tmp/bench-venvs/bench/bin/python")
PROMPTS = Path("/tmp/cliffguard-bench-prompts.jsonl")
TICK = os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        p, pp = (int(x) for x in line.split())
        children.setdefault(pp, []).append(p)
    found, todo = [pid], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            found.append(c)
            todo.append(c)
    return found


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """utime + stime of each live process, in seconds."""
    result = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        result[pid] = (int(fields[11]) + int(fields[12])) / TICK
    return result


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:80]
    except FileNotFoundError:
        return "?"


def memory_mb(pid: int) -> tuple[float, float]:
    """RSS and PSS (pages shared with other processes, such as the memory-mapped token table, count
    once per process in RSS and as a share in PSS)."""
    found = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            found[key] = int(rest.split()[0]) / 1024
    return found.get("Rss", 0.0), found.get("Pss", 0.0)


def load(url: str, mode: str, n: int, concurrency: int, users: int) -> dict:
    cmd = [BENCH_PY, str(HARNESS / "load.py"), "--url", url, "--model", "fake-model", "--mode", mode,
           "-c", str(concurrency), "-n", str(n), "-d", "600", "--prompts", str(PROMPTS),
           "--users", str(users), "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def layers(url: str) -> dict[str, float]:
    """Requests labelled so far, by the classifier layer that decided, and the model's batches (`batches`,
    `batched`: their count and the prompts in them), from the gateway's /metrics."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if family.name == "cliffguard_classifications" and s.name.endswith("_total"):
                out[s.labels["layer"]] = out.get(s.labels["layer"], 0.0) + s.value
            elif s.name == "cliffguard_classifier_batch_size_count":
                out["batches"] = out.get("batches", 0.0) + s.value
            elif s.name == "cliffguard_classifier_batch_size_sum":
                out["batched"] = out.get("batched", 0.0) + s.value
    return out


def profile_summary(path: Path, top: int = 25) -> None:
    """Share of the workers' py-spy samples under each function (inclusive), from the raw folded stacks."""
    import collections
    import re

    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if len(frames) < 2 or "spawn_main" not in frames[1]:  # the workers (uvicorn's spawned processes)
            continue
        total += int(count)
        for name in {re.sub(r":\d+\)$", ")", f) for f in frames[3:]}:  # after process, thread and module
            inclusive[name] += int(count)
    print(f"profile: {total} samples of the workers; share under each function (inclusive):")
    for name, n in inclusive.most_common(top):
        print(f"  {n / max(total, 1):6.1%}  {name[:120]}")


def wait_ready(url: str, timeout: float = 180) -> None:
    import urllib.request
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.5)
    raise SystemExit("gateway not ready")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(REPO / "bench/cliffguard-realistic.yaml"))
    ap.add_argument("--mode", choices=["plain", "stream"], default="plain")
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("-c", type=int, default=32)
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--warmup", type=int, default=4000)
    ap.add_argument("--no-classifier", action="store_true", help="the config with the classifier disabled")
    ap.add_argument("--feedback", action="store_true", help="the config with user feedback enabled")
    ap.add_argument("--profile", default="",
                    help="run the gateway under py-spy (warm-up included; raw folded stacks written here)")
    ap.add_argument("--server", choices=["uvicorn", "granian"], default="uvicorn",
                    help="granian: the same app under granian's HTTP server instead of `cliffguard serve`")
    ap.add_argument("--tree", default="", help="run the gateway from this checkout (default: this one)")
    args = ap.parse_args()
    if not PROMPTS.exists():
        PROMPTS.write_text(subprocess.run([sys.executable, str(HARNESS / "make_prompts.py"), "-n", "20000"],
                                          capture_output=True, text=True, check=True).stdout)
    url = "http://127.0.0.1:9000"
    subprocess.run(["rm", "-rf", "/tmp/cliffguard-bench-realistic", "/tmp/cliffguard-bench"])
    upstream = subprocess.Popen([BENCH_PY, str(HARNESS / "upstream.py"), "--port", "18000"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    config = Path(args.config)
    if args.no_classifier or args.feedback:  # the same config with one section changed
        extra = {"classifier": {"enabled": False}} if args.no_classifier else {}
        extra |= {"feedback": {"enabled": True}} if args.feedback else {}
        config = Path(tempfile.mkdtemp()) / "cliffguard.yaml"
        config.write_text(yaml.safe_dump({**yaml.safe_load(Path(args.config).read_text()), **extra}))
    serve = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--log-level", "warning"]
    env = dict(os.environ)
    redis = None
    if args.server == "granian":  # the same ASGI app under granian (Rust HTTP): a Redis and metrics dir of its own
        redis = subprocess.Popen(["redis-server", "--port", "16399", "--save", "", "--appendonly", "no"],
                                 stdout=subprocess.DEVNULL)
        metrics = Path(tempfile.mkdtemp())
        workers = str(yaml.safe_load(config.read_text()).get("workers", 2))
        env |= {"CLIFFGUARD_CONFIG": str(config), "CLIFFGUARD_REDIS_URL": "redis://127.0.0.1:16399/0",
                "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
        if not (Path(sys.executable).parent / "granian").exists():
            raise SystemExit("--server granian needs granian in this environment: pip install granian")
        serve = [str(Path(sys.executable).parent / "granian"), "--interface", "asgi", "--factory", "--loop", "uvloop",
                 "--workers", workers, "--runtime-mode", "st", "--no-log", "--host", "127.0.0.1", "--port", "9000",
                 "gateway.app:create_app"]
    if args.profile:  # py-spy starts the gateway: attaching needs ptrace rights a container may not give
        serve = [str(REPO / ".venv/bin/py-spy"), "record", "--subprocesses", "-f", "raw", "-r", "250",
                 "-o", args.profile, "--", *serve]
    tree = Path(args.tree).resolve() if args.tree else REPO
    env["PYTHONPATH"] = str(tree)
    gateway = subprocess.Popen(serve, start_new_session=True, env=env, cwd=tree,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(url)
        load(url, args.mode, args.warmup, args.c, args.users)  # classifier memo, connections, JIT-free warm
        time.sleep(2)
        pids = descendants(gateway.pid)
        labelled = layers(url)
        before = cpu_seconds(pids)
        started = time.perf_counter()
        result = load(url, args.mode, args.n, args.c, args.users)
        wall = time.perf_counter() - started
        after = cpu_seconds(pids)
        time.sleep(3)  # the last labels arrive after their responses
        by_layer = {k: v - labelled.get(k, 0.0) for k, v in layers(url).items()}
        rows = []
        for pid in pids:
            if pid in before and pid in after:
                rows.append((pid, cmdline(pid), after[pid] - before[pid], *memory_mb(pid)))
        total = sum(r[2] for r in rows)
        n = result.get("requests") or args.n
        print(f"mode={args.mode} n={n} c={args.c} errors={result.get('errors')} req/s={result.get('rps')} "
              f"p50={result.get('p50_ms')} ms p99={result.get('p99_ms')} ms "
              f"wall={wall:.1f}s")
        for pid, cmd, cpu, rss, pss in rows:
            if cpu > 0.05:
                print(f"  pid {pid:>7}  cpu {cpu:7.2f} s  {1e6 * cpu / n:8.1f} us/req  rss {rss:6.1f} MB  "
                      f"pss {pss:6.1f} MB  {cmd}")
        batches, batched = by_layer.pop("batches", 0.0), by_layer.pop("batched", 0.0)
        counted = sum(by_layer.values()) or 1.0
        print("labelled by: " + ", ".join(f"{k} {v / counted:.1%}" for k, v in sorted(by_layer.items()))
              + "  (unclassified: shed by the classifier's bounded queue, or late)")
        if batches:
            print(f"classifier: {batched:,.0f} prompts in {batches:,.0f} model batches "
                  f"({batched / batches:.1f} per batch)")
        print(f"gateway CPU per request: {1e6 * total / n:.1f} us "
              f"(the 2-core ceiling this implies: {2 * n / total:,.0f} req/s)")
    finally:
        os.killpg(gateway.pid, 2)
        try:
            gateway.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(gateway.pid, 9)
        upstream.terminate()
        if args.profile:
            profile_summary(Path(args.profile))
        if redis is not None:
            redis.terminate()


if __name__ == "__main__":
    main()
