#!/usr/bin/env python3
"""No-op rerun of deploy_pattern3_gpu.yml on the local cluster: wall time, CPU time, tasks and Kubernetes API
requests of the second (changed=0) run, with and without the verification, for this checkout and a baseline commit.

For each tree (the baseline commit, checked out with `git worktree add` under /tmp, and this checkout) the playbook
runs three times against inventories/local:
  1. without verification, to bring the deployment to the tree's desired state (not measured);
  2. without verification (-e deploy_verification=false): measured, must report changed=0;
  3. with verification: measured, must report changed=0.
Kubernetes API requests are counted by a counting reverse proxy in front of the API server
(tests/integration/llmisvc_wait_proxy.py), whose kubeconfig the runs get through llm_serving_kubeconfig. Task count
is the number of task headers the run printed (skipped tasks included). CPU time is that of the ansible-playbook
process tree (getrusage of the children); wall time depends on how busy the machine is, so the load average at
the start of each run is printed next to it.

A baseline without the deploy_verification switch gets it added in its throw-away worktree (one `when` on the
verification role's include in playbooks/deploy_pattern.yml); nothing in this checkout is touched.
Usage: `make cluster-up`, then `.venv/bin/python benchmarks/rerun.py [--baseline e17c2b7] [--no-baseline]`.
Not part of `make test`.
"""

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from llmisvc_wait_proxy import CountingProxy  # noqa: E402
sys.path.insert(0, str(ROOT))
from localcluster.cluster import read_env_file  # noqa: E402

ENV_FILE = ROOT / ".localcluster" / "env"

PLAYBOOK = "playbooks/deploy_pattern3_gpu.yml"
ANSIBLE_PLAYBOOK = str(ROOT / ".venv" / "bin" / "ansible-playbook")
VERIFY_INCLUDE = "        name: llm_serving.gke.verification\n      when: not ansible_check_mode\n"
VERIFY_SWITCH = ("        name: llm_serving.gke.verification\n"
                 "      when: not ansible_check_mode and deploy_verification | default(true) | bool\n")
RECAP = re.compile(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)")


def read_env():
    """The running local cluster's .localcluster/env; exits naming the file when there is none."""
    env = read_env_file(ENV_FILE)
    if not env:
        sys.exit(f"{ENV_FILE} is missing or empty: start the local cluster first (make cluster-up)")
    return env


def baseline_tree(commit, workdir):
    """A worktree of `commit` under `workdir`, with the collection link and the verification switch."""
    tree = Path(workdir) / f"baseline-{commit}"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), commit], check=True,
                   stdout=subprocess.DEVNULL)
    link = tree / ".cache" / "collections" / "ansible_collections" / "llm_serving"
    link.mkdir(parents=True, exist_ok=True)
    (link / "gke").symlink_to(tree)
    playbook = tree / "playbooks" / "deploy_pattern.yml"
    text = playbook.read_text()
    note = "has deploy_verification"
    if "deploy_verification" not in text:
        if VERIFY_INCLUDE not in text:
            raise SystemExit(f"{commit}: cannot add the deploy_verification switch to {playbook}")
        playbook.write_text(text.replace(VERIFY_INCLUDE, VERIFY_SWITCH))
        note = "deploy_verification switch added in its worktree"
    return tree, note


def run(tree, proxy, kubeconfig, report_dir, verify):
    """One playbook run from `tree`; returns its figures."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(tree / "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=str(tree / ".cache" / "collections"),
               # inventories/local reads the cluster's env file from this directory (molecule's variable).
               MOLECULE_PROJECT_DIRECTORY=str(ROOT), KUBECONFIG=kubeconfig, K8S_AUTH_KUBECONFIG=kubeconfig,
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    command = [ANSIBLE_PLAYBOOK, PLAYBOOK, "-e", f"llm_serving_kubeconfig={kubeconfig}",
               "-e", f"llm_serving_report_dir={report_dir}", "-e", f"deploy_verification={str(verify).lower()}"]
    load = os.getloadavg()[0]
    proxy.reset()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = done.stdout + done.stderr
    recap = RECAP.findall(output)
    if done.returncode != 0 or not recap:
        tail = "\n".join(output.splitlines()[-40:])
        raise SystemExit(f"{tree}: {' '.join(command)} failed (rc {done.returncode}):\n{tail}")
    ok, changed, _unreachable, failed, skipped = (int(x) for x in recap[-1])
    return {"wall": wall, "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "tasks": output.count("\nTASK ["), "ok": ok, "changed": changed, "skipped": skipped, "failed": failed,
            "requests": len(proxy.requests), "load": load}


def measure(label, tree, proxy, kubeconfig, report_dir):
    print(f"[{label}] first run (brings the deployment to this tree's state) ...", flush=True)
    first = run(tree, proxy, kubeconfig, report_dir, verify=False)
    print(f"[{label}]   changed={first['changed']} in {first['wall']:.0f} s", flush=True)
    figures = {}
    for verify in (False, True):
        name = "with verification" if verify else "without verification"
        print(f"[{label}] rerun {name} ...", flush=True)
        figures[verify] = run(tree, proxy, kubeconfig, report_dir, verify)
        f = figures[verify]
        print(f"[{label}]   {f['wall']:.1f} s wall, {f['cpu']:.1f} s CPU, {f['tasks']} tasks, {f['requests']} API "
              f"requests, changed={f['changed']}, load {f['load']:.1f}", flush=True)
        if f["changed"]:
            print(f"[{label}]   WARNING: the rerun changed {f['changed']} task(s); it is not a no-op", flush=True)
    return figures


def table(results):
    labels = list(results)
    print()
    print("No-op rerun of " + PLAYBOOK + " (second run, changed=0)")
    header = f"{'':24}" + "".join(f"{label:>26}" for label in labels)
    if len(labels) == 2:
        header += f"{'ratio new/base':>16}"
    print(header)
    for verify in (False, True):
        for key, unit in (("wall", "s"), ("cpu", "s CPU"), ("tasks", "tasks"), ("requests", "API requests")):
            name = f"{'with' if verify else 'without'} verif., {key}"
            row = f"{name:24}"
            values = [results[label][verify][key] for label in labels]
            for value in values:
                row += f"{(f'{value:.1f}' if isinstance(value, float) else str(value)) + ' ' + unit:>26}"
            if len(values) == 2 and values[0]:
                row += f"{values[1] / values[0]:>16.2f}"
            print(row)
    print("load average (1 min) at the start of each measured run: " + ", ".join(
        f"{label} {results[label][False]['load']:.1f}/{results[label][True]['load']:.1f}" for label in labels))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="e17c2b7", help="commit to compare with (default e17c2b7)")
    parser.add_argument("--no-baseline", action="store_true", help="measure this checkout only")
    options = parser.parse_args()
    env = read_env()
    results = {}
    workdir = tempfile.mkdtemp(prefix="rerun-bench-", dir="/tmp")
    tree = None
    try:
        with CountingProxy(env["KUBECONFIG"]) as proxy:
            kubeconfig = proxy.write_kubeconfig(workdir)
            report_dir = Path(workdir) / "reports"
            report_dir.mkdir()
            if not options.no_baseline:
                tree, note = baseline_tree(options.baseline, workdir)
                label = f"baseline {options.baseline}"
                print(f"{label}: {note}", flush=True)
                results[label] = measure(label, tree, proxy, kubeconfig, report_dir)
            head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                  text=True, check=True).stdout.strip()
            results[f"this checkout ({head})"] = measure("this checkout", ROOT, proxy, kubeconfig, report_dir)
    finally:
        if tree is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
        shutil.rmtree(workdir, ignore_errors=True)
    table(results)


if __name__ == "__main__":
    main()
