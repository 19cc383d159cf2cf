"""Make `ansible_collections.llm_serving.gke` importable for pytest from a checkout."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, ".cache", "collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "llm_serving", "gke")

if not os.path.islink(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    os.symlink(os.path.relpath(ROOT, os.path.dirname(LINK)), LINK)
for path in (COLLECTIONS, ROOT):
    if path not in sys.path:
        sys.path.insert(0, path)


# ---------------------------------------------------------------- skips under CI

# Under CI (CI=true, as .ci/run runs) a skipped test is a failed test: a skip there means something the
# test needs is broken, and a green run must not hide it. The only skips allowed are listed here with
# their reason (test node id prefix -> why it cannot run in CI).
ALLOWED_CI_SKIPS = {}


def _in_ci():
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI a skip fails (see above); every test's teardown report carries its CPU-seconds (see below)."""
    report = yield
    if report.when == "teardown" and _CPU_AT_SETUP in item.stash:
        report.user_properties.append(("cpu_seconds", f"{_cpu_seconds() - item.stash[_CPU_AT_SETUP]:.1f}"))
    if not (_in_ci() and report.skipped and not hasattr(report, "wasxfail")):
        return report
    if any(report.nodeid.startswith(prefix) for prefix in ALLOWED_CI_SKIPS):
        return report
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = (f"skipped under CI, which counts as a failure (tests/conftest.py ALLOWED_CI_SKIPS): "
                       f"{reason}")
    return report


# ---------------------------------------------------------------- CPU time per test

# The suite is CPU-bound on the 2-core CI machine, so a test's cost is the CPU it burns (its own process plus the
# ansible-playbook, molecule and ansible-runner processes it waited for), not its wall time under load. Each
# test's CPU-seconds (setup to teardown) go into the JUnit XML as the property `cpu_seconds`; tests/run_suite.py
# lists the tests that use the most.
_CPU_AT_SETUP = pytest.StashKey[float]()


def _cpu_seconds():
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    item.stash[_CPU_AT_SETUP] = _cpu_seconds()
