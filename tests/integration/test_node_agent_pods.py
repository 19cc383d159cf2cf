"""The node agent runs pods as a kubelet would: failures show up in pod status, events and logs as on GKE.

Each test module run gets its own tainted Node (so nobody else's pods land on it), bound to directly by
``spec.nodeName``, and its own namespaces; everything is deleted at the end.
"""
import base64
import json
import secrets
import threading
import time
from pathlib import Path

import pytest
import requests
from kubernetes import client
from kubernetes.client.rest import ApiException

pytestmark = [pytest.mark.cluster, pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")]

SUFFIX = secrets.token_hex(3)
NODE = f"t-node-agent-{SUFFIX}"
NAMESPACE = f"t-node-agent-{SUFFIX}"
EMPTY_NAMESPACE = f"t-node-agent-empty-{SUFFIX}"
NODE_IP, KUBELET_PORT = "127.0.250.250", 10250
TAINT = {"key": "t-node-agent/test", "value": "true", "effect": "NoSchedule"}
RHAIIS = "registry.redhat.io/rhaiis/vllm-cuda-rhel9:3.0.0"
SEED_GPU_ARGS = ("python3 -m vllm.entrypoints.openai.api_server --model=/mnt/models --dtype=half "
                 "--max-model-len=2048 --gpu-memory-utilization=0.75 --enable-prefix-caching {extra} "
                 "--disable-log-requests")


@pytest.fixture(scope="module")
def core(local_cluster, k8s_api_client):
    return client.CoreV1Api(k8s_api_client)


@pytest.fixture(scope="module")
def timeout(local_cluster):
    """Generous waits: every simulated delay is multiplied by the cluster's time scale."""
    return 60 + 900 * float(local_cluster.get("LOCALCLUSTER_TIME_SCALE") or 0.02)


def _heartbeat(core, stop):
    """Keep the test node Ready for the node lifecycle controller (as the GKE simulator does for its nodes)."""
    while not stop.wait(5):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        try:
            core.patch_node_status(NODE, {"status": {"conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready",
                 "lastHeartbeatTime": stamp}]}})
        except ApiException:
            return


@pytest.fixture(scope="module")
def node(core):
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    resources = {"cpu": "4", "memory": "15Gi", "pods": "110", "nvidia.com/gpu": "1"}
    core.create_node({"metadata": {"name": NODE, "labels": {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4",
                                                            "kubernetes.io/hostname": NODE}},
                      "spec": {"taints": [TAINT]}})
    core.patch_node_status(NODE, {"status": {
        "capacity": resources, "allocatable": resources,
        "addresses": [{"type": "InternalIP", "address": NODE_IP}, {"type": "Hostname", "address": NODE}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": KUBELET_PORT}},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ready",
                        "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}]}})
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(core, stop), daemon=True)
    beat.start()
    for name in (NAMESPACE, EMPTY_NAMESPACE):
        core.create_namespace({"metadata": {"name": name}})
    core.create_namespaced_secret(NAMESPACE, {"metadata": {"name": "hf-token"}, "stringData": {"HF_TOKEN": "hf_x"}})
    auth = base64.b64encode(b"test-user:test-password").decode()
    docker_config = json.dumps({"auths": {"registry.redhat.io": {"auth": auth}}})
    core.create_namespaced_secret(NAMESPACE, {"metadata": {"name": "redhat-pull-secret"},
                                              "type": "kubernetes.io/dockerconfigjson",
                                              "stringData": {".dockerconfigjson": docker_config}})
    yield NODE
    for name in (NAMESPACE, EMPTY_NAMESPACE):
        core.delete_namespace(name)
    _wait_namespaces_gone(core, (NAMESPACE, EMPTY_NAMESPACE))  # the agent must see the pods' deletion first
    stop.set()
    beat.join(10)
    core.delete_node(NODE)


def _wait_namespaces_gone(core, names, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        remaining = [ns.metadata.name for ns in core.list_namespace().items if ns.metadata.name in names]
        if not remaining:
            return
        time.sleep(1)


def vllm_pod(name, args, image=RHAIIS, pull_secret=True, secret_name="hf-token"):
    """A pod shaped like the seed's GPU Pattern 3 replica (storage-initializer + vLLM main container)."""
    main = {
        "name": "main", "image": image, "command": ["/bin/bash", "-c"], "args": [args],
        "env": [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": secret_name, "key": "HF_TOKEN"}}}],
        "resources": {"limits": {"nvidia.com/gpu": "1"}, "requests": {"nvidia.com/gpu": "1"}},
        "ports": [{"containerPort": 8000, "protocol": "TCP"}],
        "livenessProbe": {"httpGet": {"path": "/health", "port": 8000}, "initialDelaySeconds": 180,
                          "periodSeconds": 30, "timeoutSeconds": 30, "failureThreshold": 5},
        "readinessProbe": {"httpGet": {"path": "/v1/models", "port": 8000}, "initialDelaySeconds": 180,
                           "periodSeconds": 10, "timeoutSeconds": 10},
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    spec = {"nodeName": NODE, "tolerations": [{"key": TAINT["key"], "operator": "Exists"}],
            "terminationGracePeriodSeconds": 30,
            "initContainers": [{"name": "storage-initializer", "image": "kserve/storage-initializer:v0.20.0",
                                "args": ["hf://Qwen/Qwen2.5-3B-Instruct", "/mnt/models"]}],
            "containers": [main]}
    if pull_secret:
        spec["imagePullSecrets"] = [{"name": "redhat-pull-secret"}]
    return {"metadata": {"name": name}, "spec": spec}


def wait_for(core, namespace, name, predicate, timeout, what):
    deadline = time.monotonic() + timeout
    pod = None
    while time.monotonic() < deadline:
        pod = core.read_namespaced_pod(name, namespace)
        if predicate(pod):
            return pod
        time.sleep(0.5)
    raise AssertionError(f"pod {namespace}/{name} never became {what}; last status: {pod.status if pod else None}")


def main_status(pod):
    return next((s for s in pod.status.container_statuses or [] if s.name == "main"), None)


def waiting_reason(pod):
    status = main_status(pod)
    return status.state.waiting.reason if status and status.state.waiting else None


def event_messages(core, namespace, name):
    events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
    return [(e.reason, e.message, e.source.component) for e in events]


def test_unknown_image_ends_in_image_pull_back_off(core, node, timeout):
    core.create_namespaced_pod(NAMESPACE, vllm_pod("bad-image", SEED_GPU_ARGS.format(extra=""),
                                                   image="registry.redhat.io/rhaiis/vllm-cuda-rhel9:9.9.9"))
    pod = wait_for(core, NAMESPACE, "bad-image", lambda p: waiting_reason(p) == "ImagePullBackOff", timeout,
                   "ImagePullBackOff")
    assert pod.status.phase == "Pending"
    assert main_status(pod).state.waiting.message == \
        'Back-off pulling image "registry.redhat.io/rhaiis/vllm-cuda-rhel9:9.9.9"'
    failed = [m for reason, m, source in event_messages(core, NAMESPACE, "bad-image") if reason == "Failed"]
    assert any(m.startswith('Failed to pull image "registry.redhat.io/rhaiis/vllm-cuda-rhel9:9.9.9": rpc error: '
                            "code = NotFound") for m in failed)
    assert "Error: ImagePullBackOff" in failed


def test_red_hat_image_without_pull_secret_is_unauthorized(core, node, timeout):
    core.create_namespaced_pod(NAMESPACE, vllm_pod("no-pull-secret", SEED_GPU_ARGS.format(extra=""),
                                                   pull_secret=False))
    wait_for(core, NAMESPACE, "no-pull-secret", lambda p: waiting_reason(p) == "ImagePullBackOff", timeout,
             "ImagePullBackOff")
    messages = [m for reason, m, _unused in event_messages(core, NAMESPACE, "no-pull-secret") if reason == "Failed"]
    assert any("unauthorized: Please login to the Red Hat Registry" in m for m in messages)


def test_missing_hf_token_is_create_container_config_error(core, node, timeout):
    pod = vllm_pod("no-hf-token", SEED_GPU_ARGS.format(extra=""), image="vllm/vllm-openai:v0.10.1.1",
                   pull_secret=False)
    core.create_namespaced_pod(EMPTY_NAMESPACE, pod)
    pod = wait_for(core, EMPTY_NAMESPACE, "no-hf-token",
                   lambda p: waiting_reason(p) == "CreateContainerConfigError", timeout, "CreateContainerConfigError")
    assert main_status(pod).state.waiting.message == 'secret "hf-token" not found'
    assert ("Failed", 'Error: secret "hf-token" not found', "kubelet") in \
        event_messages(core, EMPTY_NAMESPACE, "no-hf-token")


def test_unrecognized_vllm_flag_crash_loops_with_argparse_message(core, node, local_cluster, timeout):
    core.create_namespaced_pod(NAMESPACE, vllm_pod("bad-flag", SEED_GPU_ARGS.format(
        extra="--prefix-cache-block-size=16")))
    pod = wait_for(core, NAMESPACE, "bad-flag", lambda p: waiting_reason(p) == "CrashLoopBackOff"
                   and main_status(p).restart_count >= 2, timeout, "CrashLoopBackOff")
    last = main_status(pod).last_state.terminated
    assert last.exit_code == 2 and last.reason == "Error"
    assert "api_server.py: error: unrecognized arguments: --prefix-cache-block-size=16" in last.message
    assert pod.status.phase == "Running"  # restartPolicy Always: a crash-looping pod stays Running, not Ready
    ready = next(c for c in pod.status.conditions if c.type == "Ready")
    assert ready.status == "False" and ready.message == "containers with unready status: [main]"
    log = Path(local_cluster["LOCALCLUSTER_STATE_DIR"]) / "logs" / "pods" / f"{NAMESPACE}_bad-flag_main.log"
    assert "unrecognized arguments: --prefix-cache-block-size=16" in log.read_text()


def test_good_vllm_pod_becomes_ready_and_serves_on_its_pod_ip(core, node, timeout):
    core.create_namespaced_pod(NAMESPACE, vllm_pod("good", SEED_GPU_ARGS.format(extra="")))
    pod = wait_for(core, NAMESPACE, "good", lambda p: any(c.type == "Ready" and c.status == "True"
                                                          for c in p.status.conditions or []), timeout, "Ready")
    assert pod.status.phase == "Running"
    assert pod.status.pod_ip.startswith("127.1.")
    init = pod.status.init_container_statuses[0]
    assert init.state.terminated.reason == "Completed" and init.state.terminated.exit_code == 0
    models = requests.get(f"http://{pod.status.pod_ip}:8000/v1/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == ["/mnt/models"]
    completion = requests.post(f"http://{pod.status.pod_ip}:8000/v1/completions", timeout=30,
                               json={"model": "/mnt/models", "prompt": "Hello, how are you?", "max_tokens": 5})
    assert completion.status_code == 200 and completion.json()["usage"]["completion_tokens"] <= 5
    reasons = [reason for reason, _unused, source in event_messages(core, NAMESPACE, "good") if source == "kubelet"]
    assert {"Pulled", "Created", "Started"} <= set(reasons)  # the image may already be on the node


def test_deleted_pod_is_stopped_and_removed(core, node, timeout):
    core.create_namespaced_pod(NAMESPACE, vllm_pod("to-delete", SEED_GPU_ARGS.format(extra="")))
    pod = wait_for(core, NAMESPACE, "to-delete", lambda p: any(c.type == "Ready" and c.status == "True"
                                                               for c in p.status.conditions or []), timeout, "Ready")
    core.delete_namespaced_pod("to-delete", NAMESPACE)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            core.read_namespaced_pod("to-delete", NAMESPACE)
        except ApiException as err:
            assert err.status == 404
            break
        time.sleep(0.5)
    else:
        raise AssertionError("deleted pod was never removed")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://{pod.status.pod_ip}:8000/health", timeout=5)


def ready(pod):
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


@pytest.mark.parametrize(("name", "uri", "message"), [
    ("bad-uri", "hf://Qwen", "Invalid Hugging Face URI format: hf://Qwen"),
    ("gated", "hf://meta-llama/Llama-3.2-1B-Instruct", "GatedRepoError: 401 Client Error"),  # HF_TOKEN on main only
])
def test_storage_initializer_failure_crash_loops_the_init_container(core, node, timeout, name, uri, message):
    pod = vllm_pod(name, SEED_GPU_ARGS.format(extra=""))
    pod["spec"]["initContainers"][0]["args"] = [uri, "/mnt/models"]
    pod["spec"]["initContainers"][0]["terminationMessagePolicy"] = "FallbackToLogsOnError"
    core.create_namespaced_pod(NAMESPACE, pod)

    def init_crash_looping(p):
        init = (p.status.init_container_statuses or [None])[0]
        return init and init.state.waiting and init.state.waiting.reason == "CrashLoopBackOff"

    pod = wait_for(core, NAMESPACE, name, init_crash_looping, timeout, "Init:CrashLoopBackOff")
    init = pod.status.init_container_statuses[0]
    assert message in init.last_state.terminated.message
    assert pod.status.phase == "Pending"
    assert waiting_reason(pod) == "PodInitializing"
    initialized = next(c for c in pod.status.conditions if c.type == "Initialized")
    assert initialized.status == "False" and "storage-initializer" in initialized.message


@pytest.mark.parametrize(("name", "extra", "gpus", "message"), [
    ("tp-too-large", "--tensor-parallel-size=4", "1",
     "please set tensor_parallel_size (4) to less than max local gpu count (1)"),
    ("no-gpu", "", None, "RuntimeError: Failed to infer device type"),
    ("bf16-on-t4", "--dtype=bfloat16", "1", "Bfloat16 is only supported on GPUs with compute capability"),
])
def test_vllm_start_up_errors_crash_loop(core, node, timeout, name, extra, gpus, message):
    pod = vllm_pod(name, SEED_GPU_ARGS.format(extra=extra).replace("--dtype=half ", "" if "dtype" in extra else
                                                                   "--dtype=half "))
    main = pod["spec"]["containers"][0]
    if gpus is None:
        del main["resources"]
    core.create_namespaced_pod(NAMESPACE, pod)
    pod = wait_for(core, NAMESPACE, name, lambda p: waiting_reason(p) == "CrashLoopBackOff", timeout,
                   "CrashLoopBackOff")
    last = main_status(pod).last_state.terminated
    assert last.exit_code == 1 and message in last.message


def test_missing_secret_volume_keeps_the_pod_container_creating(core, node, timeout):
    pod = vllm_pod("no-tls-secret", SEED_GPU_ARGS.format(extra=""))
    pod["spec"]["volumes"] = [{"name": "tls-certs", "secret": {"secretName": "x-kserve-self-signed-certs"}}]
    core.create_namespaced_pod(NAMESPACE, pod)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = event_messages(core, NAMESPACE, "no-tls-secret")
        if any(reason == "FailedMount" for reason, _message, _source in events):
            break
        time.sleep(0.5)
    assert ("FailedMount", 'MountVolume.SetUp failed for volume "tls-certs" : secret "x-kserve-self-signed-certs" '
            "not found", "kubelet") in events
    pod = core.read_namespaced_pod("no-tls-secret", NAMESPACE)
    assert pod.status.phase == "Pending" and not ready(pod)


def test_failing_liveness_probe_restarts_the_container(core, node, timeout):
    pod = vllm_pod("liveness", SEED_GPU_ARGS.format(extra=""))
    pod["spec"]["containers"][0]["livenessProbe"]["httpGet"]["path"] = "/no-such-path"
    core.create_namespaced_pod(NAMESPACE, pod)
    pod = wait_for(core, NAMESPACE, "liveness", lambda p: main_status(p) and main_status(p).restart_count >= 1,
                   timeout, "restarted")
    assert main_status(pod).last_state.terminated.exit_code == 137
    events = event_messages(core, NAMESPACE, "liveness")
    assert ("Killing", "Container main failed liveness probe, will be restarted", "kubelet") in events
    assert ("Unhealthy", "Liveness probe failed: HTTP probe failed with statuscode: 404", "kubelet") in events


def test_container_logs_are_served_on_the_nodes_kubelet_port(core, node, timeout):
    core.create_namespaced_pod(NAMESPACE, vllm_pod("logs", SEED_GPU_ARGS.format(extra="")))
    wait_for(core, NAMESPACE, "logs", ready, timeout, "Ready")
    url = f"https://{NODE_IP}:{KUBELET_PORT}/containerLogs/{NAMESPACE}/logs/main"
    text = requests.get(url, params={"tailLines": "200"}, timeout=10, verify=False).text
    assert "Application startup complete." in text
    assert requests.get(url.replace("/main", "/nope"), timeout=10, verify=False).status_code == 404
    try:  # through the API server: needs --kubelet-preferred-address-types=InternalIP there
        via_api = core.read_namespaced_pod_log("logs", NAMESPACE, container="main")
    except ApiException as err:
        pytest.fail(f"the API server does not reach the kubelet endpoint of the node agent (it needs "
                    f"--kubelet-preferred-address-types=InternalIP): {err.reason}")
    assert "Application startup complete." in via_api


def test_vllm_with_ssl_flags_serves_https_from_its_secret_volume(core, node, timeout):
    import trustme

    cert = trustme.CA().issue_cert("tls-pod.example")
    core.create_namespaced_secret(NAMESPACE, {"metadata": {"name": "tls-pod-certs"}, "type": "kubernetes.io/tls",
                                              "stringData": {"tls.crt": cert.cert_chain_pems[0].bytes().decode(),
                                                             "tls.key": cert.private_key_pem.bytes().decode()}})
    pod = vllm_pod("tls-pod", "vllm serve /mnt/models --dtype=half --max-model-len=2048 "
                              "--ssl-certfile /var/run/kserve/tls/tls.crt --ssl-keyfile /var/run/kserve/tls/tls.key")
    main = pod["spec"]["containers"][0]
    main["volumeMounts"] = [{"name": "tls-certs", "mountPath": "/var/run/kserve/tls", "readOnly": True}]
    for probe in ("livenessProbe", "readinessProbe"):
        main[probe]["httpGet"]["scheme"] = "HTTPS"
    pod["spec"]["volumes"] = [{"name": "tls-certs", "secret": {"secretName": "tls-pod-certs"}}]
    core.create_namespaced_pod(NAMESPACE, pod)
    pod = wait_for(core, NAMESPACE, "tls-pod", ready, timeout, "Ready")
    assert requests.get(f"https://{pod.status.pod_ip}:8000/health", timeout=10, verify=False).status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://{pod.status.pod_ip}:8000/health", timeout=10)
