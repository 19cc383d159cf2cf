"""Start processes detached, remember them by PID, and stop exactly those.

A PID file holds the PID *and* the process start time from /proc, so a recycled PID is never
mistaken for ours. Each process leads its own session (process group), so stopping it also stops
whatever it spawned (e.g. the node agent's per-pod servers) and nothing else.
"""
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ProcessSpec:
    """How to start one supervised process."""

    name: str
    argv: list
    env: dict = field(default_factory=dict)
    cwd: str | None = None


class StartError(RuntimeError):
    """A process exited or did not become ready; the message names it and quotes its log."""


def _proc_stat(pid):
    """(state, start_time) of a process from /proc/<pid>/stat, or None if it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()  # the command name may contain spaces and parentheses
    return fields[0], int(fields[19])


def pid_alive(pid, start_time=None):
    stat = _proc_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    return start_time is None or stat[1] == start_time


class Supervisor:
    """Processes of one local cluster, recorded in <state>/pids/<name>.json."""

    def __init__(self, paths):
        self.paths = paths

    def pid_file(self, name):
        return self.paths.pids / f"{name}.json"

    def log_file(self, name):
        return self.paths.logs / f"{name}.log"

    def record(self, name):
        try:
            return json.loads(self.pid_file(name).read_text())
        except (OSError, ValueError):
            return None

    def is_running(self, name):
        rec = self.record(name)
        return bool(rec) and pid_alive(rec["pid"], rec.get("start_time"))

    def start(self, spec):
        """Start ``spec`` detached with output appended to its log; returns the PID."""
        self.paths.pids.mkdir(parents=True, exist_ok=True)
        self.paths.logs.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **spec.env}
        with open(self.log_file(spec.name), "ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} start: {' '.join(map(str, spec.argv))}\n".encode())
            log.flush()
            proc = subprocess.Popen(  # noqa: S603 - argv is built by this package
                [str(a) for a in spec.argv], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=spec.cwd, env=env, start_new_session=True,
            )
        stat = _proc_stat(proc.pid)
        record = {"pid": proc.pid, "start_time": stat[1] if stat else None, "argv": [str(a) for a in spec.argv],
                  "started_at": time.time()}
        self.pid_file(spec.name).write_text(json.dumps(record))
        return proc.pid

    def stop(self, name, timeout=15.0):
        """SIGTERM the process group we started, SIGKILL it after ``timeout``; True if something was stopped."""
        rec = self.record(name)
        if not rec:
            return False
        pid, start_time = rec["pid"], rec.get("start_time")
        stopped = False
        if pid_alive(pid, start_time):
            stopped = True
            _signal_group(pid, signal.SIGTERM)
            if not wait_until(lambda: not pid_alive(pid, start_time), timeout):
                print(f"{name} (pid {pid}) ignored SIGTERM for {timeout:.0f}s: SIGKILL")
                _signal_group(pid, signal.SIGKILL)
                wait_until(lambda: not pid_alive(pid, start_time), 5)
        self.pid_file(name).unlink(missing_ok=True)
        return stopped

    def log_tail(self, name, lines=15):
        try:
            content = self.log_file(name).read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(content[-lines:])

    def ensure_alive(self, name):
        """Raise StartError with the log tail if ``name`` has exited."""
        if not self.is_running(name):
            raise StartError(f"{name} exited during start-up; last lines of {self.log_file(name)}:\n"
                             f"{self.log_tail(name)}")


def _signal_group(pid, sig):
    try:
        os.killpg(pid, sig)  # our processes lead their own group (start_new_session)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def wait_until(predicate, timeout, interval=0.2):
    """Poll ``predicate`` until true or ``timeout`` seconds have passed; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(interval)


def port_listening(port, host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0
