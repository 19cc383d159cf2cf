#!/usr/bin/env python3
"""llmisvc_wait against kubernetes.core.k8s_info (wait: true, wait_condition Ready=True, defaults) on the local cluster.

Measures, in the same run and through the same counting proxy in front of the API server:
  (a) the delay between the llmisvc turning Ready (for its current generation, as seen by an independent
      watch in this process) and each module's result, over at least 20 rounds: mean, p50 and p95 for both
      modules and their ratio;
  (b) the API requests per minute each makes while waiting on an llmisvc that does not become ready.

Fairness to the baseline: k8s_info (wait: true, wait_condition Ready=True) polls every wait_sleep = 5 s
from the moment it starts. If the llmisvc became Ready a fixed time after both modules start, readiness
would always fall at the same phase of that polling cycle and the measured polling delay would be whatever
that phase happens to give (0.37 s in an earlier version of this script). Here, each round creates the
llmisvc after a random offset drawn uniformly from [0, --spread-seconds) (default 10 s, two polling
periods; at least one is required), so readiness falls at a random moment of the polling cycle and a
polling waiter's expected delay is half a period (2.5 s) plus one poll.

Both modules run as Ansible runs them on the target: `python -m <module> args.json`, with the
collection on PYTHONPATH. Usage: `make cluster-up`, then `.venv/bin/python benchmarks/wait_latency.py
[--rounds 20] [--spread-seconds 10] [--wait-seconds 60] [--seed N]`.
"""

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from llmisvc_wait_proxy import CountingProxy  # noqa: E402
sys.path.insert(0, str(ROOT))
from localcluster.cluster import read_env_file  # noqa: E402

ENV_FILE = ROOT / ".localcluster" / "env"

PYTHON = str(ROOT / ".venv" / "bin" / "python")
LLMISVC = {"group": "serving.kserve.io", "version": "v1alpha2", "plural": "llminferenceservices"}
CPU_IMAGE = "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v0.10.1.1"
MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
K8S_INFO_WAIT_SLEEP = 5  # kubernetes.core.k8s_info option wait_sleep, default 5 (plugins/modules/k8s_info.py)
MIN_ROUNDS = 20
MODULES = {
    "llmisvc_wait": "ansible_collections.llm_serving.gke.plugins.modules.llmisvc_wait",
    "k8s_info": "ansible_collections.kubernetes.core.plugins.modules.k8s_info",
}


def read_env():
    """The running local cluster's .localcluster/env; exits naming the file when there is none."""
    env = read_env_file(ENV_FILE)
    if not env:
        sys.exit(f"{ENV_FILE} is missing or empty: start the local cluster first (make cluster-up)")
    return env


def llmisvc_body(name, namespace, node_pool=None):
    template = {"containers": [{
        "name": "main", "image": CPU_IMAGE, "command": ["vllm", "serve"],
        "args": ["/mnt/models", f"--served-model-name={MODEL}", "--port=8000", "--max-model-len=2048"],
    }]}
    if node_pool:  # never schedulable: waits until the timeout
        template["nodeSelector"] = {"cloud.google.com/gke-nodepool": node_pool}
    return {"apiVersion": "serving.kserve.io/v1alpha2", "kind": "LLMInferenceService",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"model": {"uri": f"hf://{MODEL}", "name": MODEL}, "replicas": 1, "template": template}}


def module_args(kind, name, namespace, kubeconfig, timeout):
    if kind == "llmisvc_wait":
        args = {"name": name, "namespace": namespace, "timeout": timeout, "kubeconfig": kubeconfig}
    else:  # kubernetes.core.k8s_info at its wait defaults (wait_sleep 5), with the condition users write
        args = {"api_version": "serving.kserve.io/v1alpha2", "kind": "LLMInferenceService", "name": name,
                "namespace": namespace, "kubeconfig": kubeconfig, "wait": True,
                "wait_condition": {"type": "Ready", "status": "True"}}
        if timeout != 120:
            args["wait_timeout"] = timeout
    return {"ANSIBLE_MODULE_ARGS": args}


class ModuleRun(threading.Thread):
    """One module process; records when it printed its result (returned) and when the process exited.

    The gap between the two is Python tearing down the kubernetes client (~0.6 s here, the same for both
    modules), so the result time is what measures the waiting logic.
    """

    def __init__(self, kind, args, workdir):
        super().__init__(daemon=True)
        self.kind = kind
        self.args_file = Path(workdir) / f"{kind}-{uuid.uuid4().hex[:6]}.json"
        self.args_file.write_text(json.dumps(args))
        self.started = self.returned = self.exited = None
        self.result = None

    def run(self):
        env = dict(os.environ, PYTHONPATH=str(ROOT / ".cache" / "collections"))
        self.started = time.monotonic()
        proc = subprocess.Popen([PYTHON, "-m", MODULES[self.kind], str(self.args_file)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=env)
        output = b""
        while True:
            chunk = proc.stdout.read1(65536)
            if not chunk:
                break
            if self.returned is None:
                self.returned = time.monotonic()  # modules print their result once, when they return
            output += chunk
        proc.wait()
        self.exited = time.monotonic()
        self.returned = self.returned or self.exited
        lines = [line for line in output.decode().splitlines() if line.startswith("{")]
        self.result = json.loads(lines[-1]) if lines else {"failed": True, "msg": "no result"}


def watch_ready_time(custom, namespace, name, deadline):
    """monotonic time at which this process first saw Ready=True with observedGeneration >= generation."""
    from kubernetes import watch

    stream = watch.Watch()
    for event in stream.stream(custom.list_namespaced_custom_object, namespace=namespace,
                               field_selector=f"metadata.name={name}", timeout_seconds=int(deadline), **LLMISVC):
        obj = event["object"]
        status = obj.get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        if ready and (status.get("observedGeneration") or 0) >= obj["metadata"].get("generation", 0):
            stream.stop()
            return time.monotonic()
    return None


def latency_round(custom, namespace, kubeconfig, workdir, index, offset):
    """One round; the llmisvc is created ``offset`` seconds (drawn uniformly by the caller) after the modules
    are up, so its readiness falls at a random phase of k8s_info's polling cycle."""
    name = f"bench-ready-{index}"
    runs = [ModuleRun(kind, module_args(kind, name, namespace, kubeconfig, 120), workdir) for kind in MODULES]
    for run in runs:
        run.start()
    time.sleep(3)  # both modules are up and waiting (k8s_info treats "not found" as "keep waiting")
    time.sleep(offset)
    custom.create_namespaced_custom_object(namespace=namespace, body=llmisvc_body(name, namespace), **LLMISVC)
    ready_at = watch_ready_time(custom, namespace, name, 120)
    for run in runs:
        run.join(180)
    delays = {}
    for run in runs:
        ok = run.result.get("ready") if run.kind == "llmisvc_wait" else not run.result.get("failed")
        delays[run.kind] = (run.returned - ready_at) if (ok and ready_at) else None
        delays[run.kind + " exit"] = (run.exited - ready_at) if (ok and ready_at) else None
    custom.delete_namespaced_custom_object(namespace=namespace, name=name, **LLMISVC)
    return delays


def requests_during_wait(custom, namespace, kubeconfig, workdir, proxy, seconds):
    name = "bench-never-ready"
    body = llmisvc_body(name, namespace, node_pool=f"absent-{namespace}")
    custom.create_namespaced_custom_object(namespace=namespace, body=body, **LLMISVC)
    time.sleep(3)
    counts = {}
    for kind in MODULES:
        proxy.reset()
        run = ModuleRun(kind, module_args(kind, name, namespace, kubeconfig, seconds), workdir)
        run.start()
        run.join(seconds + 60)
        requests = list(proxy.requests)
        counts[kind] = {
            "total": len(requests),
            "watch": sum(1 for r in requests if r.is_watch),
            # Start-up (discovery, first lists) is a fixed cost; what grows with the wait is the rest.
            "after_10s": sum(1 for r in requests if r.at > run.started + 10),
            "elapsed": round(run.exited - run.started, 1),
        }
    custom.delete_namespaced_custom_object(namespace=namespace, name=name, **LLMISVC)
    return counts


def readiness_offsets(rounds, spread_seconds, seed):
    """Per round, seconds between 'both modules are waiting' and creating the llmisvc: uniform over
    [0, spread_seconds), which must cover at least one k8s_info polling period."""
    if spread_seconds < K8S_INFO_WAIT_SLEEP:
        raise ValueError(f"spread_seconds must be at least one polling period ({K8S_INFO_WAIT_SLEEP} s), "
                         f"got {spread_seconds:g}")
    rng = random.Random(seed)
    return [rng.uniform(0, spread_seconds) for _ in range(rounds)]


def fmt(value):
    return "n/a" if value is None else f"{value:.2f}"


def percentile(values, fraction):
    """Linear interpolation between closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values):
    """mean, p50 and p95 of the rounds that succeeded (None when none did)."""
    if not values:
        return {"n": 0, "mean": None, "p50": None, "p95": None}
    return {"n": len(values), "mean": statistics.fmean(values), "p50": percentile(values, 0.5),
            "p95": percentile(values, 0.95)}


def ratio(numerator, denominator):
    if numerator is None or not denominator:
        return "n/a"
    return f"{numerator / denominator:.1f}x"


def delay_table(rounds, key_suffix, label):
    """Lines for one delay measure (the module's result, or its process exit), both modules and their ratio."""
    stats = {kind: summary([r[kind + key_suffix] for r in rounds if r[kind + key_suffix] is not None])
             for kind in MODULES}
    lines = [f"    {label}"]
    for kind in MODULES:
        st = stats[kind]
        lines.append(f"      {kind:13s} mean {fmt(st['mean'])}   p50 {fmt(st['p50'])}   p95 {fmt(st['p95'])}   "
                     f"({st['n']} of {len(rounds)} rounds)")
    lines.append("      ratio k8s_info / llmisvc_wait: " + ", ".join(
        f"{name} {ratio(stats['k8s_info'][name], stats['llmisvc_wait'][name])}" for name in ("mean", "p50", "p95")))
    return lines


def requests_per_minute(count):
    """All requests over the whole wait, and the steady state after the first 10 s (start-up excluded)."""
    total = count["total"] / max(count["elapsed"], 1e-9) * 60
    steady = count["after_10s"] / max(1.0, count["elapsed"] - 10) * 60
    return total, steady


def report(rounds, offsets, counts, options):
    lines = ["wait_latency: llm_serving.gke.llmisvc_wait vs kubernetes.core.k8s_info "
             f"(wait: true, wait_condition Ready=True, wait_sleep {K8S_INFO_WAIT_SLEEP} default)",
             f"(a) delay from Ready (own watch) to the module, seconds, {len(rounds)} rounds; readiness at a random "
             f"moment: llmisvc created 3 s + U(0, {options.spread_seconds:g} s) after both modules started "
             f"(offsets drawn: {min(offsets):.2f}..{max(offsets):.2f} s, seed {options.seed})"]
    lines += delay_table(rounds, "", "until the module printed its result (the waiting logic):")
    lines += delay_table(rounds, " exit", "until the module process exited (what a playbook waits for):")
    lines.append(f"(b) API requests per minute of waiting, {options.wait_seconds} s on an llmisvc that never "
                 "becomes ready")
    per_minute = {}
    for kind in MODULES:
        c = counts[kind]
        per_minute[kind] = requests_per_minute(c)
        lines.append(f"      {kind:13s} {per_minute[kind][0]:6.1f} per minute ({c['total']} requests, {c['watch']} "
                     f"watch, in {c['elapsed']} s); steady state after the first 10 s: {per_minute[kind][1]:.1f} "
                     "per minute")
    overall = ratio(per_minute["k8s_info"][0], per_minute["llmisvc_wait"][0])
    steady = ratio(per_minute["k8s_info"][1], per_minute["llmisvc_wait"][1])
    lines.append(f"      ratio k8s_info / llmisvc_wait: {overall} per minute overall, {steady} steady state")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS, help=f"at least {MIN_ROUNDS}")
    parser.add_argument("--spread-seconds", type=float, default=2 * K8S_INFO_WAIT_SLEEP,
                        help="readiness offsets are uniform over [0, this); at least one polling period (5 s)")
    parser.add_argument("--wait-seconds", type=int, default=60)
    parser.add_argument("--seed", type=int, default=None, help="random seed of the offsets (printed)")
    options = parser.parse_args()
    if options.rounds < MIN_ROUNDS:
        parser.error(f"--rounds must be at least {MIN_ROUNDS} for a p95, got {options.rounds}")
    if options.spread_seconds < K8S_INFO_WAIT_SLEEP:
        parser.error(f"--spread-seconds must cover at least one k8s_info polling period ({K8S_INFO_WAIT_SLEEP} s), "
                     f"got {options.spread_seconds:g}")
    if options.seed is None:
        options.seed = random.SystemRandom().randrange(2 ** 31)
    offsets = readiness_offsets(options.rounds, options.spread_seconds, options.seed)

    from kubernetes import client, config

    env = read_env()
    api_client = config.new_client_from_config(config_file=env["KUBECONFIG"])
    core, custom = client.CoreV1Api(api_client), client.CustomObjectsApi(api_client)
    namespace = f"t-wait-bench-{uuid.uuid4().hex[:5]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    try:
        with CountingProxy(env["KUBECONFIG"]) as proxy, tempfile.TemporaryDirectory() as workdir:
            kubeconfig = proxy.write_kubeconfig(workdir)
            rounds = [latency_round(custom, namespace, kubeconfig, workdir, i, offset)
                      for i, offset in enumerate(offsets)]
            counts = requests_during_wait(custom, namespace, kubeconfig, workdir, proxy, options.wait_seconds)
    finally:
        core.delete_namespace(namespace)

    print("\n".join(report(rounds, offsets, counts, options)))


if __name__ == "__main__":
    main()
