"""llmisvc_wait on the local cluster, run through ansible-playbook as users run it.

Each test creates its own namespace (t-wait-<random>) and LLMInferenceService, lets the simulated KServe
controller, scheduler, cluster-autoscaler and kubelet act on it, and checks what the module reports.
"""

import json
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from llmisvc_wait_proxy import CountingProxy  # noqa: E402

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
CPU_IMAGE = "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v0.10.1.1"
TPU_IMAGE = "registry.redhat.io/rhaiis/vllm-tpu-rhel9:3.2.2"
MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
LLMISVC = {"group": "serving.kserve.io", "version": "v1alpha2", "plural": "llminferenceservices"}


# ---------------------------------------------------------------- helpers


def main_container(image=CPU_IMAGE, extra_args=(), env=None, resources=None):
    container = {
        "name": "main",
        "image": image,
        "command": ["vllm", "serve"],
        "args": ["/mnt/models", f"--served-model-name={MODEL}", "--port=8000", "--max-model-len=2048",
                 *extra_args],
    }
    if env:
        container["env"] = env
    if resources:
        container["resources"] = resources
    return container


def llmisvc(name, namespace, container=None, replicas=1, router=None, **template):
    spec = {
        "model": {"uri": f"hf://{MODEL}", "name": MODEL},
        "replicas": replicas,
        "template": dict(template, containers=[container or main_container()]),
    }
    if router is not None:
        spec["router"] = router
    return {"apiVersion": "serving.kserve.io/v1alpha2", "kind": "LLMInferenceService",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


@pytest.fixture
def custom(k8s_api_client):
    from kubernetes import client

    return client.CustomObjectsApi(k8s_api_client)


@pytest.fixture
def core(k8s_api_client):
    from kubernetes import client

    return client.CoreV1Api(k8s_api_client)


@pytest.fixture
def namespace(core):
    from kubernetes import client

    name = f"t-wait-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def create(custom, body):
    return custom.create_namespaced_custom_object(namespace=body["metadata"]["namespace"], body=body, **LLMISVC)


@pytest.fixture
def wait(run_playbook, tmp_path):
    """wait(name, namespace, **options) -> the module's result dict, run through ansible-playbook."""

    def run(name, namespace, check=False, **options):
        result_file = tmp_path / f"result-{uuid.uuid4().hex[:6]}.json"
        playbook = tmp_path / "wait.yml"
        task_args = dict({"name": name, "namespace": namespace}, **options)
        playbook.write_text(json.dumps([{
            "name": "llmisvc_wait integration", "hosts": "localhost", "gather_facts": False,
            "tasks": [
                {"name": "Wait", "llm_serving.gke.llmisvc_wait": task_args, "register": "wait_result",
                 "ignore_errors": True},
                {"name": "Save the result", "ansible.builtin.copy": {
                    "content": "{{ wait_result | to_json }}", "dest": str(result_file)}, "check_mode": False},
            ],
        }]))
        proc = run_playbook(playbook, check=check)
        assert result_file.exists(), proc.stdout + proc.stderr
        return json.loads(result_file.read_text())

    return run


# ---------------------------------------------------------------- ready path


def test_ready_path_returns_url_and_rolled_out_workloads(custom, namespace, wait):
    create(custom, llmisvc("ready-cpu", namespace, replicas=2))
    result = wait("ready-cpu", namespace, timeout=300)

    assert result["ready"] is True and result["outcome"] == "ready", result.get("msg")
    assert result["failed"] is False and result["changed"] is False
    assert result["url"] == f"http://ready-cpu-kserve-workload-svc.{namespace}.svc.cluster.local"
    assert result["observed_generation"] == result["generation"]
    workload = next(w for w in result["workloads"] if w["name"] == "ready-cpu-kserve")
    assert workload["rolled_out"] and workload["ready_replicas"] == 2
    assert {"type": "Ready", "status": "True"}.items() <= next(
        c for c in result["conditions"] if c["type"] == "Ready").items()
    assert [t for t in result["timeline"] if t["type"] == "Ready"][-1]["status"] == "True"
    assert result["diagnosis"] == {}


def test_check_mode_reports_without_waiting_or_failing(custom, namespace, wait):
    result = wait("not-created-yet", namespace, check=True)
    assert result["outcome"] == "pending" and result["ready"] is False and result["failed"] is False
    assert result["diagnosis"]["reason"] == "NotFound"


# ---------------------------------------------------------------- failures


def test_bad_image_fails_fast_naming_image_and_pull_secret(custom, namespace, wait):
    container = main_container(image="registry.example/vllm:bad")
    create(custom, llmisvc("bad-image", namespace, container=container,
                           imagePullSecrets=[{"name": "redhat-pull-secret"}]))
    result = wait("bad-image", namespace, timeout=300)

    assert result["outcome"] == "failed" and result["failed"] is True
    assert result["diagnosis"]["reason"] in ("ImagePullBackOff", "ErrImagePull")
    assert result["diagnosis"]["component"].startswith("pod bad-image-kserve-")
    assert "registry.example/vllm:bad" in result["diagnosis"]["message"]
    assert result["msg"].startswith("bad-image not ready: pod bad-image-kserve-")
    assert "(hint: check the image name and the pull secret redhat-pull-secret)" in result["msg"]
    assert "\n" not in result["msg"]
    assert any(e["kind"] == "Pod" and e["reason"] == "Failed" for e in result["events"])


def test_tpu_pattern_without_tpu_pool_reports_scheduling(custom, namespace, wait):
    container = main_container(image=TPU_IMAGE, resources={"limits": {"google.com/tpu": "4"},
                                                           "requests": {"google.com/tpu": "4"}})
    create(custom, llmisvc(
        "tpu-nopool", namespace, container=container,
        # A pool name nobody creates: other tests on the shared cluster may add real TPU pools.
        nodeSelector={"cloud.google.com/gke-tpu-accelerator": "tpu-v6e-slice",
                      "cloud.google.com/gke-tpu-topology": "2x2",
                      "cloud.google.com/gke-nodepool": f"tpu-absent-{namespace}"},
        tolerations=[{"key": "google.com/tpu", "operator": "Exists", "effect": "NoSchedule"}]))
    result = wait("tpu-nopool", namespace, timeout=120, progress_deadline=15)

    assert result["outcome"] == "timeout"
    assert result["diagnosis"]["reason"] in ("NotTriggerScaleUp", "FailedScheduling")
    assert result["diagnosis"]["component"].startswith("pod tpu-nopool-kserve-")
    assert "google.com/tpu: 4" in result["diagnosis"]["hint"]
    assert f"cloud.google.com/gke-nodepool=tpu-absent-{namespace}" in result["diagnosis"]["hint"]
    assert "no progress for 15s" in result["msg"]


def test_crash_looping_vllm_args_fail_fast_with_flag_hint(custom, namespace, wait):
    container = main_container(extra_args=["--enable-prefix-caching", "--prefix-cache-block-size=16"])
    create(custom, llmisvc("bad-args", namespace, container=container))
    result = wait("bad-args", namespace, timeout=300)

    assert result["outcome"] == "failed"
    assert result["diagnosis"]["reason"] == "UnrecognizedArguments"
    assert "unrecognized arguments: --prefix-cache-block-size=16" in result["diagnosis"]["message"]
    assert "remove --prefix-cache-block-size: vLLM has no such flag (did you mean --block-size?)" in result["msg"]
    # Read through the API when it can; here the API server has no kubelet to proxy logs from, and says so.
    assert "(from the log)" in result["diagnosis"]["message"] or \
        "termination message" in result["diagnosis"]["message"]


def test_missing_hf_token_fails_after_grace(custom, namespace, wait):
    env = [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "HF_TOKEN"}}}]
    create(custom, llmisvc("no-token", namespace, container=main_container(env=env)))
    result = wait("no-token", namespace, timeout=300)

    assert result["outcome"] == "failed"
    assert result["diagnosis"]["reason"] == "SecretNotFound"
    assert 'secret "hf-token" not found' in result["diagnosis"]["message"]
    assert f"create Secret hf-token in namespace {namespace}" in result["msg"]


def test_rejected_route_fails_fast_with_preset_hint(custom, namespace, wait):
    router = {"route": {}, "gateway": {"refs": [{"name": "inference-gateway", "namespace": "opendatahub"}]}}
    create(custom, llmisvc("timeouts", namespace, router=router))
    result = wait("timeouts", namespace, timeout=300)

    assert result["outcome"] == "failed"
    assert result["diagnosis"]["reason"] == "RouteTimeoutsUnsupported"
    assert result["diagnosis"]["component"] == "httproute timeouts-kserve-route"
    assert "Timeouts are not supported" in result["diagnosis"]["message"]
    assert "kserve-config-llm-router-route preset without timeouts" in result["msg"]


# ---------------------------------------------------------------- generation and resilience


def test_stale_ready_from_older_generation_is_not_accepted(custom, namespace, wait):
    """While the API shows Ready=True for generation 1 after a spec patch (generation 2), the module waits."""
    create(custom, llmisvc("stale", namespace))
    assert wait("stale", namespace, timeout=300)["outcome"] == "ready"

    patched = custom.patch_namespaced_custom_object(
        namespace=namespace, name="stale", body={"spec": {"replicas": 2}}, **LLMISVC)
    generation = patched["metadata"]["generation"]
    stale_status = custom.get_namespaced_custom_object(namespace=namespace, name="stale", **LLMISVC)["status"]
    stale_status["observedGeneration"] = generation - 1  # the Ready=True of the previous generation

    stale_seen_while_waiting = 0
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(wait, "stale", namespace, timeout=300)
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and not future.done():
            # Keep putting the stale status back (the simulated controller rewrites it) while the module runs.
            custom.patch_namespaced_custom_object_status(
                namespace=namespace, name="stale", body={"status": stale_status}, **LLMISVC)
            current = custom.get_namespaced_custom_object(namespace=namespace, name="stale", **LLMISVC)
            if current["status"].get("observedGeneration") == generation - 1:
                stale_seen_while_waiting += 1
            time.sleep(0.2)
        result = future.result(timeout=400)

    assert stale_seen_while_waiting > 0
    # Whenever it returned, it was for the patched generation, never for the stale Ready=True.
    assert result["outcome"] == "ready"
    assert result["generation"] == generation and result["observed_generation"] >= generation


def _wait_through_outage(custom, core, namespace, wait, proxy, outage, tmp_path):
    """Wait (through `proxy`) on an llmisvc blocked by a missing Secret, cause `outage`, then create the Secret."""
    from kubernetes import client

    env = [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "HF_TOKEN"}}}]
    create(custom, llmisvc("outage", namespace, container=main_container(env=env)))
    kubeconfig = proxy.write_kubeconfig(str(tmp_path))
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(wait, "outage", namespace, timeout=400, fail_fast=False, kubeconfig=kubeconfig)
        while not any(r.is_watch and "llminferenceservices" in r.path for r in proxy.requests):
            assert not future.done(), future.result()
            time.sleep(0.2)  # until the module is watching
        watches_before = len([r for r in proxy.requests if r.is_watch])
        outage()
        assert not future.done()
        core.create_namespaced_secret(namespace, client.V1Secret(
            metadata=client.V1ObjectMeta(name="hf-token"), string_data={"HF_TOKEN": "hf_fake"}))
        result = future.result(timeout=450)
    rewatches = len([r for r in proxy.requests if r.is_watch]) - watches_before
    return result, rewatches


def test_survives_dropped_connections(custom, core, namespace, wait, local_cluster, tmp_path):
    with CountingProxy(local_cluster["KUBECONFIG"]) as proxy:
        def outage():
            for _unused in range(2):
                proxy.drop_connections(refuse_for=3)
                time.sleep(5)

        result, rewatches = _wait_through_outage(custom, core, namespace, wait, proxy, outage, tmp_path)

    assert result["outcome"] == "ready", result.get("msg")
    assert rewatches >= 4  # every watch was re-established after the drops


@pytest.mark.serial  # restarts the shared API server: runs after the parallel tests, alone (Makefile integration)
def test_survives_api_server_restart(custom, core, namespace, wait, local_cluster, tmp_path):
    def outage():
        proc = subprocess.run([sys.executable, "-m", "localcluster", "restart", "kube-apiserver"], cwd=ROOT,
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    with CountingProxy(local_cluster["KUBECONFIG"]) as proxy:
        result, rewatches = _wait_through_outage(custom, core, namespace, wait, proxy, outage, tmp_path)
    assert result["outcome"] == "ready", result.get("msg")
    assert rewatches >= 4
