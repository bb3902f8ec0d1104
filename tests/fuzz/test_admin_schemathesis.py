"""Schemathesis against the admin API's own OpenAPI document (`GET /admin/openapi.json`): every operation,
with its declared path, query and body parameters, valid and invalid, plus undeclared methods and
stateful sequences, within a bounded budget. No call may answer 5xx, and every 405 must say what is
allowed. It runs the `st` command, as anyone checking the API would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.fuzz.conftest import ADMIN

EXAMPLES = 100  # per operation and phase: about 2,500 cases, 20-30 s
SEED = 1  # fixed, so a CI failure reproduces; change it locally to explore further


def test_admin_api_answers_no_5xx(fuzz_gateway, tmp_path: Path) -> None:
    report = tmp_path / "schemathesis.json"
    st = Path(sys.executable).with_name("st")
    cmd = [str(st), "--config-file", str(Path(__file__).with_name("schemathesis.toml")), "run",
           f"{fuzz_gateway.url}/admin/openapi.json",
           "--checks", "not_a_server_error,unsupported_method,allow_header_conformance",
           "--header", f"Authorization: {ADMIN['authorization']}", "--max-examples", str(EXAMPLES),
           "--seed", str(SEED), "--workers", "1", "--request-timeout", "30",
           "--report", "json", "--report-json-path", str(report)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)  # its cache goes there
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
    result = json.loads(report.read_text())
    assert result["operations"]["tested"] == result["operations"]["total"] >= 17
    assert result["test_cases"]["generated"] >= 1000 and result["test_cases"]["with_failures"] == 0
    assert result["failures"] == [] and result["errors"] == []
    print(f"schemathesis: {result['test_cases']['generated']} cases, 0 failures")
