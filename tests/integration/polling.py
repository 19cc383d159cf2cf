"""Polling helper shared by the integration tests."""
import time


def wait_for(predicate, timeout=60, interval=0.5, what="condition"):
    """Call predicate until it returns something truthy and return that; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
