"""Preflight: a capability suite replayed through stable and candidate before any user sees the candidate.
`suite.py` (suite files, pure), `graders.py` (programmatic checks, pure), `runner.py` (the replay: I/O),
`store.py` (Redis layout). The verdict per category is monitoring/preflight.py."""
