"""Load benchmark for todo-api: the service against a lean "limit" app on the same database.

`python -m bench.run` drives both with wrk; see bench/README.md.
"""
