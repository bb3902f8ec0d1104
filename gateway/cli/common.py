"""What every CLI module shares: the consoles and loading the configuration (exit 2 on a bad one)."""

from __future__ import annotations

import typer
from rich.console import Console

from gateway.config import ConfigError, Settings, load_settings

out = Console()
err = Console(stderr=True)


def settings_or_exit(config: str | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False)
        raise typer.Exit(2) from None
