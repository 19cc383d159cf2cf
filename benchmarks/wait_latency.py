#!/usr/bin/env python3
"""llmisvc_wait against kubernetes.core.k8s_info (wait: true, wait_condition Ready=True, defaults) on the local cluster.

Measures, in the same run and through the same counting proxy in front of the API server:
  (a) the delay between the llmisvc turning Ready (for its current generation, as seen by an independent
      watch in this process) and each module's process returning;
  (b) the number of API requests each makes while waiting 60 s on an llmisvc that does not become ready.

Both modules run as Ansible runs them on the target: `python -m <module> args.json`, with the
collection on PYTHONPATH. Usage: `make cluster-up`, then `.venv/bin/python benchmarks/wait_latency.py
[--rounds 6] [--wait-seconds 60]`.
"""

import argparse
import json
import os
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

PYTHON = str(ROOT / ".venv" / "bin" / "python")
LLMISVC = {"group": "serving.kserve.io", "version": "v1alpha2", "plural": "llminferenceservices"}
CPU_IMAGE = "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v0.10.1.1"
MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
MODULES = {
    "llmisvc_wait": "ansible_collections.llm_serving.gke.plugins.modules.llmisvc_wait",
    "k8s_info": "ansible_collections.kubernetes.core.plugins.modules.k8s_info",
}


def read_env():
    env = {}
    for line in (ROOT / ".localcluster" / "env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip()
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


def latency_round(custom, namespace, kubeconfig, workdir, index):
    name = f"bench-ready-{index}"
    runs = [ModuleRun(kind, module_args(kind, name, namespace, kubeconfig, 120), workdir) for kind in MODULES]
    for run in runs:
        run.start()
    time.sleep(3)  # both modules are up and waiting (k8s_info treats "not found" as "keep waiting")
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


def fmt(value):
    return "n/a" if value is None else f"{value:.2f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--wait-seconds", type=int, default=60)
    options = parser.parse_args()

    from kubernetes import client, config

    env = read_env()
    api_client = config.new_client_from_config(config_file=env["KUBECONFIG"])
    core, custom = client.CoreV1Api(api_client), client.CustomObjectsApi(api_client)
    namespace = f"t-wait-bench-{uuid.uuid4().hex[:5]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    try:
        with CountingProxy(env["KUBECONFIG"]) as proxy, tempfile.TemporaryDirectory() as workdir:
            kubeconfig = proxy.write_kubeconfig(workdir)
            rounds = [latency_round(custom, namespace, kubeconfig, workdir, i) for i in range(options.rounds)]
            counts = requests_during_wait(custom, namespace, kubeconfig, workdir, proxy, options.wait_seconds)
    finally:
        core.delete_namespace(namespace)

    print("wait_latency: llm_serving.gke.llmisvc_wait vs kubernetes.core.k8s_info "
          "(wait: true, wait_condition Ready=True, wait_sleep 5 default)")
    print(f"(a) delay from Ready (own watch) to the module's result, seconds, {options.rounds} rounds")
    exit_median = {}
    for kind in MODULES:
        values = [r[kind] for r in rounds if r[kind] is not None]
        exits = [r[kind + " exit"] for r in rounds if r[kind + " exit"] is not None]
        exit_median[kind] = statistics.median(exits) if exits else None
        print(f"    {kind:13s} per round: {', '.join(fmt(r[kind]) for r in rounds)}   "
              f"median {fmt(statistics.median(values) if values else None)}   "
              f"(until the process exited, as Ansible sees it: median {fmt(exit_median[kind])})")
    if exit_median["llmisvc_wait"] and exit_median["k8s_info"]:
        # The result delay of llmisvc_wait is ~0, so compare what a playbook waits for: the process exit.
        print(f"    ratio k8s_info / llmisvc_wait (median delay until process exit): "
              f"{exit_median['k8s_info'] / exit_median['llmisvc_wait']:.1f}x")
    print(f"(b) API requests during a {options.wait_seconds} s wait on an llmisvc that never becomes ready")
    for kind in MODULES:
        c = counts[kind]
        print(f"    {kind:13s} {c['total']:4d} requests ({c['watch']} watch) in {c['elapsed']} s; "
              f"{c['after_10s']} of them after the first 10 s")
    if counts["llmisvc_wait"]["total"]:
        print(f"    ratio k8s_info / llmisvc_wait (requests): "
              f"{counts['k8s_info']['total'] / counts['llmisvc_wait']['total']:.1f}x")
    steady = {kind: counts[kind]["after_10s"] / max(1.0, counts[kind]["elapsed"] - 10) * 60 for kind in MODULES}
    print(f"    steady state, requests per minute after start-up: llmisvc_wait {steady['llmisvc_wait']:.1f}, "
          f"k8s_info {steady['k8s_info']:.1f}")


if __name__ == "__main__":
    main()
