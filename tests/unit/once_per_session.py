"""Run an expensive fixture (an ansible-playbook run) once per test session, also under pytest-xdist.

A module-scoped fixture runs once in every xdist worker that gets one of the module's tests: with `-n 2` the
catalog render, the cost report and the render plan each ran twice. Here the first worker to ask produces the
value under a lock in the directory all workers of the session share (the parent of each worker's basetemp, as
pytest-xdist documents for session fixtures); the other worker waits for the lock and reads the stored value.
"""
import fcntl
import json
import os


def once_per_session(tmp_path_factory, name, produce):
    """produce(directory) -> a JSON-serialisable value, computed once per session in `directory` (kept for the
    session, so the value may name files in it). A produce that raises fails every test using it, in each worker
    (each tries again: nothing is stored)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    stored = root / f"{name}.json"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stored.exists():
            return json.loads(stored.read_text())
        directory = root / name
        directory.mkdir(exist_ok=True)
        value = produce(directory)
        stored.write_text(json.dumps(value))
        return value
