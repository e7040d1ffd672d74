"""``lmforge serve``: one saved model behind an HTTP API (FastAPI + uvicorn).

One file per concept: ``loader.py`` picks and loads the artefact, ``runners.py`` turns a
batch of requests into one forward pass per task, ``batching.py`` groups concurrent requests,
``generate.py`` samples from a causal LM (left padding + KV cache), ``guard.py`` the hardening
(API key, body size, error shape), ``app.py`` the task routes, limits and timeouts,
``openai_routes.py`` the OpenAI-compatible routes, ``feedback.py`` the SQLite store
``lmforge improve`` learns from, ``metrics.py`` Prometheus, ``run.py`` the command.
Nothing here imports fastapi at package import time.
"""
