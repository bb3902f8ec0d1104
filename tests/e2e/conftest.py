from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.vllm import VENV, VLLMServer, ensure_models


@pytest.fixture(scope="session")
def vllm_pair() -> Iterator[tuple[VLLMServer, VLLMServer]]:
    """Two real vLLM CPU servers: `base` with the LoRA adapter `ft`, and a perturbed copy `perturbed`."""
    if not (VENV / "bin" / "python").exists():
        pytest.fail(f"vLLM CPU build not installed in {VENV}: run deploy/vllm/install_cpu.sh")
    models = ensure_models()
    a = VLLMServer(models / "base", "base", cpu=0, lora={"ft": models / "lora"})
    b = VLLMServer(models / "perturbed", "perturbed", cpu=1)
    try:
        a.wait_healthy()
        b.wait_healthy()
        yield a, b
    finally:
        a.stop()
        b.stop()
