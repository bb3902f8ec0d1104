"""The `cliffguard` command line: one module per group of commands, all assembled in `main.py`."""

from gateway.cli.main import app

__all__ = ["app"]
