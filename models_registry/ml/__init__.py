"""The pure-ML core of AutoML: targets, purged CV, model families, search, honest reports, artifacts.

Nothing here touches the database or Django models: the Celery job feeds arrays in and stores the
bytes and dicts that come out, so every piece can be tested (and benchmarked) without a database.
"""
