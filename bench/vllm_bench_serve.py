"""`vllm bench serve` against real vLLM (CPU build, the tiny test model) directly and through cliffguard,
with the same settings, one run each (docs/benchmarks.md, "Protocol compatibility").

    .venv/bin/python bench/vllm_bench_serve.py [--num-prompts 200] [--concurrency 8] [--out DIR]

Starts one vLLM server as the end-to-end tests do (tests/support/vllm.py; the vLLM venv from
deploy/vllm/install_cpu.sh), then `cliffguard serve` (1 worker, embedded Redis) with the alias `bot` on it,
runs the benchmark direct then through the gateway, prints both side by side and stops everything.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._support import REPO, wait  # noqa: E402
from tests.support.servers import free_port  # noqa: E402
from tests.support.vllm import VENV, VLLMServer, ensure_models  # noqa: E402

METRICS = [("completed", "requests completed", "{:.0f}"), ("failed", "failed", "{:.0f}"),
           ("request_throughput", "requests/s", "{:.2f}"), ("output_throughput", "output tokens/s", "{:.1f}"),
           ("mean_ttft_ms", "TTFT mean ms", "{:.2f}"), ("median_ttft_ms", "TTFT median ms", "{:.2f}"),
           ("p99_ttft_ms", "TTFT p99 ms", "{:.2f}"), ("mean_tpot_ms", "TPOT mean ms", "{:.2f}"),
           ("median_itl_ms", "ITL median ms", "{:.2f}"), ("median_e2el_ms", "E2E median ms", "{:.1f}"),
           ("p99_e2el_ms", "E2E p99 ms", "{:.1f}")]


def bench(base_url: str, model: str, tokenizer: Path, args: argparse.Namespace, out: Path, label: str) -> dict:
    cmd = [str(VENV / "bin" / "python"), "-m", "vllm.entrypoints.cli.main", "bench", "serve",
           "--backend", "openai-chat", "--endpoint", "/v1/chat/completions", "--base-url", base_url,
           "--model", model, "--tokenizer", str(tokenizer), "--dataset-name", "random",
           "--random-input-len", "64", "--random-output-len", "64", "--ignore-eos", "--seed", "0",
           "--num-prompts", str(args.num_prompts), "--max-concurrency", str(args.concurrency),
           "--percentile-metrics", "ttft,tpot,itl,e2el", "--save-result", "--result-dir", str(out),
           "--result-filename", f"{label}.json", "--disable-tqdm"]
    print(f">> {label}: {' '.join(cmd)}", flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return json.loads((out / f"{label}.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--num-prompts", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="vllm-bench-")))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    models = ensure_models()
    vllm = VLLMServer(models / "base", "base", cpu=0)
    gw = None
    try:
        vllm.wait_healthy()
        port = free_port()
        cfg = {"listen": {"host": "127.0.0.1", "port": port}, "workers": 1, "data_dir": str(args.out / "gw"),
               "versions": [{"name": "base-v1", "base_url": f"{vllm.url}/v1", "model": "base"}],
               "aliases": [{"name": "bot", "stable": "base-v1"}]}
        (args.out / "cliffguard.yaml").write_text(yaml.safe_dump(cfg))
        gw = subprocess.Popen([str(REPO / ".venv/bin/cliffguard"), "serve", "--log-level", "warning", "--config",
                               str(args.out / "cliffguard.yaml")], start_new_session=True)
        wait(f"http://127.0.0.1:{port}/healthz", tries=1200)
        direct = bench(vllm.url, "base", models / "base", args, args.out, "direct")
        through = bench(f"http://127.0.0.1:{port}", "bot", models / "base", args, args.out, "cliffguard")
    finally:
        if gw is not None:
            os.killpg(gw.pid, signal.SIGTERM)
            gw.wait(timeout=30)
        vllm.stop()
    print(f"\n{args.num_prompts} prompts, random 64 in / 64 out (ignore_eos), concurrency {args.concurrency}; "
          f"results in {args.out}\n")
    print("| metric | vLLM direct | through cliffguard |\n|---|---|---|")
    for key, name, fmt in METRICS:
        print(f"| {name} | {fmt.format(direct[key])} | {fmt.format(through[key])} |")


if __name__ == "__main__":
    main()
