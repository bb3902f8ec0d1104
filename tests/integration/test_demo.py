"""`cliffguard demo`, the newcomer's first command, runs to its automatic rollback."""

import os
import subprocess
import sys


def test_demo_rolls_back_the_regressing_candidate(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIFFGUARD_")}
    r = subprocess.run([sys.executable, "-m", "gateway.cli", "demo", "--rps", "120", "--max-seconds", "150"],
                       capture_output=True, text=True, timeout=240, env={**env, "COLUMNS": "160"}, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "rolled back" in r.stdout and "reasoning" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr
