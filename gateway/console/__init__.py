"""The web console at `/console`: static files (`static/`) served with strict security headers."""

from gateway.console.routes import routes

__all__ = ["routes"]
