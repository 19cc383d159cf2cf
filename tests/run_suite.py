"""Run the whole test suite (`make test`) in concurrent lanes and say where the time went.

Why lanes: the static checks (lint, sanity, build, ee, unit) need no cluster, while one playbook run at a time
(a molecule scenario) leaves part of the 2 cores idle (waits on the simulated cluster: node boots, rollouts,
readiness polls); the static lane and the second molecule scenario fill them. The integration suite's parallel
workers then fill both cores by themselves.

Each stage is a `make` target; its output goes to .cache/test-logs/<stage>.log and is printed (tail, or the
whole log when the stage failed) when the stage ends. At the end the script prints the wall time of each
stage and lane with the CPU it used and how busy the machine was meanwhile (a stage on a busy machine gets
faster only with less work; one on an idle machine can have work run beside it), the CPU time of the local
cluster's processes, the ten slowest tests of all pytest stages (from their JUnit XML), and one closing line
``N passed, N failed, N skipped`` over every pytest stage. Exit status 1 when any stage failed.

    .venv/bin/python tests/run_suite.py              # what `make test` runs
    .venv/bin/python tests/run_suite.py --only unit "integration serial" integration
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOG_DIR = ROOT / ".cache" / "test-logs"
TAIL_LINES = 25


@dataclass
class Stage:
    name: str
    target: str
    junit: tuple = ()  # JUnit XML files the stage writes (relative to LOG_DIR)
    needs_cluster: bool = False
    after: tuple = ()  # stages (of other lanes) that must have ended before this one starts
    status: str = "not run"
    seconds: float = 0.0
    cpu_busy: float = None  # fraction of the machine's CPU time that was busy while the stage ran
    cpu_seconds: float = None  # CPU time of the stage's own processes (make and all it waited for)
    log: Path = field(default=None)


# The lanes. Within a lane stages run in order. A stage that needs the cluster waits until cluster-up has
# ended and is not run if cluster-up failed; a stage waits for the stages named in its `after`.
# The serial integration tests (they restart the API server or change the cluster's add-ons and subnet, so nothing
# else may use the shared cluster meanwhile) come first, right after cluster-up: they mostly wait, and the static
# lane keeps the cores busy meanwhile (at the end of the run they were 77 s with nothing beside them).
# The two molecule scenarios then run side by side: they use different patterns and node pools (default: p3-gpu on
# T4 nodes; switch: p1-tpu -> p3-tpu on TPU nodes, 16 of the simulated project's 32 TPU chips) and each tears
# down only its own patterns, while a playbook run at a time leaves part of the 2 cores idle. The parallel
# integration tests come after both: their TPU pools and the switch scenario's would together pass that quota, and
# the switch checks the quota before it runs both patterns.
LANES = {
    "static": [
        Stage("lint", "lint"),
        Stage("sanity", "sanity"),
        Stage("build+ee", "ee"),
        Stage("unit", "unit", junit=("unit.xml",)),
        # The kind scenario's attach path on a second, bare control plane with its own ports, addresses and state
        # dir (molecule/attach/molecule.yml): it needs nothing of the shared cluster and runs beside it. It starts
        # after cluster-up, which builds the control-plane binaries on a new machine (about 6 minutes; the attach
        # scenario would otherwise wait on the build's lock inside its own create step, unmeasured).
        Stage("molecule attach", "molecule-attach", after=("cluster-up",)),
    ],
    "cluster": [
        Stage("cluster-up", "cluster-up"),
        Stage("integration serial", "integration-serial", junit=("integration-serial.xml",), needs_cluster=True),
        Stage("molecule default", "molecule-default", needs_cluster=True),
        Stage("integration", "integration-parallel", junit=("integration-parallel.xml",), needs_cluster=True,
              after=("molecule switch",)),
    ],
    "switch": [
        Stage("molecule switch", "molecule-switch", needs_cluster=True, after=("integration serial",)),
    ],
}

_print_lock = threading.Lock()


def say(text):
    with _print_lock:
        print(text, flush=True)


def cpu_jiffies():
    """(busy, total) CPU jiffies of the whole machine since boot, from /proc/stat (None where it is missing).

    Busy over a stage says whether the stage was bound by the 2 cores (then only less work makes it faster) or
    by waiting (then running something beside it is free). It counts every process: the lanes overlap.
    """
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_fraction(before, after):
    if before is None or after is None or after[1] == before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def run_stage(stage, env):
    stage.log = LOG_DIR / (stage.name.replace(" ", "-").replace("+", "-") + ".log")
    for name in stage.junit:
        (LOG_DIR / name).unlink(missing_ok=True)
    say(f"==> {stage.name}: make {stage.target} (log: {stage.log.relative_to(ROOT)})")
    started, cpu_before = time.monotonic(), cpu_jiffies()
    with open(stage.log, "w") as log:
        proc = subprocess.Popen(["make", "--no-print-directory", stage.target], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        # wait4 instead of wait: the rusage of this stage's process tree alone (the other lane runs meanwhile).
        _pid, status, usage = os.wait4(proc.pid, 0)
        returncode = os.waitstatus_to_exitcode(status)
        proc.returncode = returncode
    stage.seconds = time.monotonic() - started
    stage.cpu_busy = busy_fraction(cpu_before, cpu_jiffies())
    stage.cpu_seconds = usage.ru_utime + usage.ru_stime
    stage.status = "passed" if returncode == 0 else f"FAILED (rc={returncode})"
    lines = stage.log.read_text(errors="replace").splitlines()
    shown = lines if returncode else lines[-TAIL_LINES:]
    header = "" if returncode or len(lines) <= TAIL_LINES else f" (last {TAIL_LINES} of {len(lines)} lines)"
    say(f"--- {stage.name}: {stage.status} in {fmt(stage.seconds)}{header}\n" + "\n".join(shown)
        + f"\n--- end of {stage.name}\n")
    return returncode == 0


def cluster_cpu_seconds():
    """CPU seconds of each local-cluster process so far (its own, its waited children's and its live
    descendants'), read from /proc via the pid files in .localcluster/pids; {} when none runs."""
    hertz = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue
            fields = text[text.rindex(")") + 2:].split()
            stats[int(entry.name)] = (int(fields[1]), [int(v) / hertz for v in fields[11:15]])
    children = {}
    for pid, (parent, _times) in stats.items():
        children.setdefault(parent, []).append(pid)
    result = {}
    for pid_file in sorted((ROOT / ".localcluster" / "pids").glob("*.json")):
        try:
            pid = json.loads(pid_file.read_text())["pid"]
        except (OSError, ValueError, KeyError):
            continue
        if pid not in stats:
            continue
        seconds, stack = sum(stats[pid][1]), list(children.get(pid, ()))
        while stack:
            child = stack.pop()
            seconds += sum(stats[child][1][:2])
            stack.extend(children.get(child, ()))
        result[pid_file.stem] = seconds
    return result


class ClusterState:
    """Whether cluster-up has ended, and how (shared by the lanes)."""

    def __init__(self, will_start):
        self.ended = threading.Event()
        self.ok = True
        if not will_start:  # --only without cluster-up: use the cluster as it is
            self.ended.set()


def run_lane(stages, env, results, cluster, ended):
    """Run the stages in order; `ended` maps every stage name of the run to an Event set when it has ended."""
    started = time.monotonic()
    for stage in stages:
        try:
            for name in stage.after:
                if name in ended:  # a stage left out with --only is not waited for
                    ended[name].wait()
            if stage.needs_cluster:
                cluster.ended.wait()
                if not cluster.ok:
                    stage.status = "not run (cluster-up failed)"
                    continue
            ok = run_stage(stage, env)
            if stage.target == "cluster-up":
                cluster.ok = ok
                cluster.ended.set()
        finally:
            ended[stage.name].set()
    results.append(time.monotonic() - started)


def pct(fraction):
    return "n/a" if fraction is None else f"{fraction:.0%}"


def fmt(seconds):
    return f"{int(seconds // 60)}m{seconds % 60:04.1f}s"


def junit_cases(files):
    """(seconds, nodeid, outcome, cpu_seconds) for every test case in the JUnit XML files that exist.

    cpu_seconds: the `cpu_seconds` property tests/conftest.py records (None in XML written without it)."""
    cases = []
    for path in files:
        if not path.exists():
            continue
        for case in ET.parse(path).getroot().iter("testcase"):
            outcome = "passed"
            for child in case:
                if child.tag in ("failure", "error"):
                    outcome = "failed"
                elif child.tag == "skipped" and outcome == "passed":
                    outcome = "skipped"
            nodeid = f"{case.get('classname', '')}::{case.get('name', '')}"
            cpu = [float(p.get("value")) for p in case.iter("property") if p.get("name") == "cpu_seconds"]
            cases.append((float(case.get("time") or 0), nodeid, outcome, sum(cpu) if cpu else None))
    return cases


def print_cpu_users(cases):
    """The tests and test modules that burn the most CPU (the suite's real cost on a 2-core machine)."""
    measured = [(cpu, nodeid) for _s, nodeid, _o, cpu in cases if cpu is not None]
    if not measured:
        return
    print(f"\n==> Ten most CPU-hungry tests (CPU-s of the test and the processes it ran; "
          f"{sum(cpu for cpu, _n in measured):.0f} CPU-s over {len(measured)} tests)")
    for cpu, nodeid in sorted(measured, reverse=True)[:10]:
        print(f"  {cpu:8.1f}  {nodeid}")
    modules = {}
    for cpu, nodeid in measured:
        module = nodeid.split("::", 1)[0]
        modules[module] = modules.get(module, 0.0) + cpu
    heaviest = sorted(modules.items(), key=lambda i: -i[1])[:10]
    print("  by module: " + ", ".join(f"{name.rsplit('.', 1)[-1]} {cpu:.0f}" for name, cpu in heaviest))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="stage names to run (default: all)")
    args = parser.parse_args(argv)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # Molecule's destroy step keeps the cluster for the stages after it; the lane owner stops it (.ci/run).
    env["LOCALCLUSTER_KEEP"] = "1"
    env["LLM_SERVING_TEST_LOG_DIR"] = str(LOG_DIR)

    lanes = {name: [s for s in stages if not args.only or s.name in args.only or s.target in args.only]
             for name, stages in LANES.items()}
    # Stop the cluster at the end only if this run started it (a developer's running cluster stays up).
    was_running = subprocess.run([sys.executable, "-m", "localcluster", "status"], cwd=ROOT, capture_output=True,
                                 check=False).returncode == 0
    lane_times = {}
    threads = []
    cluster = ClusterState(will_start=any(s.target == "cluster-up" for lane in lanes.values() for s in lane))
    ended = {stage.name: threading.Event() for stages in lanes.values() for stage in stages}
    started, cpu_before = time.monotonic(), cpu_jiffies()
    for name, stages in lanes.items():
        if not stages:
            continue
        lane_times[name] = []
        thread = threading.Thread(target=run_lane, args=(stages, env, lane_times[name], cluster, ended), name=name)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    total, total_busy = time.monotonic() - started, busy_fraction(cpu_before, cpu_jiffies())
    cluster_cpu = cluster_cpu_seconds()
    if not was_running and any(s.target == "cluster-up" for s in lanes["cluster"]):
        subprocess.run(["make", "--no-print-directory", "cluster-down"], cwd=ROOT, env=env, capture_output=True,
                       check=False)

    stages = [s for lane in lanes.values() for s in lane]
    cases = junit_cases(LOG_DIR / name for s in stages for name in s.junit)
    print(f"\n==> Stage wall times (the lanes run concurrently). 'machine busy': share of the {os.cpu_count()} cores"
          " in use while the stage ran (everything: both lanes, the cluster); 'CPU-s': the stage's own processes")
    for lane, lane_stages in lanes.items():
        if not lane_stages:
            continue
        print(f"  lane {lane}: {fmt(lane_times[lane][0])}")
        for stage in lane_stages:
            own = "" if stage.cpu_seconds is None else f"{stage.cpu_seconds:7.0f} CPU-s"
            print(f"    {stage.name:<18} {fmt(stage.seconds):>10}  machine busy {pct(stage.cpu_busy):>4}  "
                  f"{own}  {stage.status}")
    print(f"  total (wall): {fmt(total)}  machine busy {pct(total_busy)}")
    if cluster_cpu:
        print(f"  local cluster processes: {sum(cluster_cpu.values()):.0f} CPU-s ("
              + ", ".join(f"{name} {sec:.0f}" for name, sec in sorted(cluster_cpu.items(), key=lambda i: -i[1]))
              + ")")
    if cases:
        print("\n==> Ten slowest tests (pytest, all stages; setup and teardown included)")
        for seconds, nodeid, outcome, _cpu in sorted(cases, reverse=True)[:10]:
            print(f"  {seconds:8.1f}s  {nodeid}  [{outcome}]")
        print_cpu_users(cases)
    failed_stages = [s for s in stages if s.status != "passed"]
    counts = {k: sum(1 for c in cases if c[2] == k) for k in ("passed", "failed", "skipped")}
    if failed_stages:
        print("\n==> Failed or not run: " + ", ".join(f"{s.name} ({s.status})" for s in failed_stages))
    # One plain closing line over every pytest stage.
    print(f"\nsuite: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
    return 1 if failed_stages else 0


if __name__ == "__main__":
    sys.exit(main())
