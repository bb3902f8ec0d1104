"""The OpenAI-compatible proxy: the hot path from a client's request to the backend's answer, and what
is recorded after it (metrics, samples for judging)."""

from gateway.proxy.handler import ProxyHandler

__all__ = ["ProxyHandler"]
