"""Process entry points: `serve` (uvicorn workers around the app, embedded Redis), the judge worker and
the standalone controller."""
