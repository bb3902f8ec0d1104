"""The HTTP surface and process wiring: the OpenAI-compatible proxy, admin API, console, CLI, `serve`."""
