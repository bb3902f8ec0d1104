"""The admin API under `/admin`, used by the CLI and the web console alike (see `api.py`)."""

from gateway.admin.api import routes

__all__ = ["routes"]
