"""Real vLLM (CPU build) servers for end-to-end tests.

The vLLM virtualenv and the tiny models are built by `deploy/vllm/install_cpu.sh` and
`deploy/vllm/build_tiny_models.py` and cached under ~/.cache/cliffguard (override with
CLIFFGUARD_VLLM_VENV / CLIFFGUARD_TINY_MODELS).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.servers import free_port

CACHE = Path.home() / ".cache" / "cliffguard"
VENV = Path(os.environ.get("CLIFFGUARD_VLLM_VENV", CACHE / "vllm-venv"))
MODELS = Path(os.environ.get("CLIFFGUARD_TINY_MODELS", CACHE / "tiny-models"))
REPO = Path(__file__).resolve().parents[2]


def ensure_models() -> Path:
    if not (MODELS / "lora" / "adapter_config.json").exists():
        subprocess.run([str(VENV / "bin" / "python"), str(REPO / "deploy/vllm/build_tiny_models.py"), str(MODELS)],
                       check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return MODELS


class VLLMServer:
    def __init__(self, model: Path, served_name: str, cpu: int, lora: dict[str, Path] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.served_name = served_name
        self.tmp = Path(tempfile.mkdtemp(prefix=f"vllm-{served_name}-"))
        args = [str(VENV / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
                "--host", "127.0.0.1", "--port", str(self.port), "--served-model-name", served_name,
                "--dtype", "float32", "--max-model-len", "2048", "--enforce-eager",
                "--kv-cache-memory-bytes", "64M",
                # tool calls as the clients people use send them (chat and Responses). The tiny model never
                # writes a <tool_call> on its own; a forced tool choice makes vLLM constrain its output, and
                # without free whitespace a strict tool's arguments end (random weights would pad forever)
                "--enable-auto-tool-choice", "--tool-call-parser", "hermes",
                "--structured-outputs-config", '{"backend": "xgrammar", "disable_any_whitespace": true}']
        if lora:
            args += ["--enable-lora", "--max-lora-rank", "8", "--max-loras", "2", "--lora-modules",
                     *(f"{k}={v}" for k, v in lora.items())]
        env = {**os.environ, "VLLM_HOST_IP": "127.0.0.1", "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
               "TMPDIR": str(self.tmp), "VLLM_CACHE_ROOT": str(self.tmp / "cache"),
               "VLLM_CPU_OMP_THREADS_BIND": str(cpu), "VLLM_LOGGING_LEVEL": "WARNING",
               # forced tool calls as plain JSON (governed by disable_any_whitespace), not hermes structural tags
               "VLLM_ENFORCE_STRICT_TOOL_CALLING": "0"}
        self.log = open(self.tmp / "server.log", "wb")  # noqa: SIM115
        # own process group: vLLM runs several processes, all must go at the end
        self.proc = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_healthy(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM exited: {(self.tmp / 'server.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise RuntimeError(f"vLLM not healthy in {timeout}s: {(self.tmp / 'server.log').read_text()[-3000:]}")

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 20  # the whole group must be gone before the port is reused
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        self.log.close()


def versions(a: VLLMServer, b: VLLMServer) -> list[dict[str, str]]:
    """The versions the end-to-end gateways register on the session's pair: base, its LoRA, the perturbed copy."""
    return [{"name": "base-v1", "base_url": f"{a.url}/v1", "model": "base"},
            {"name": "ft-lora", "base_url": f"{a.url}/v1", "model": "ft"},
            {"name": "perturbed", "base_url": f"{b.url}/v1", "model": "perturbed"}]
