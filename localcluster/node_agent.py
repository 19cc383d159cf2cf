"""Node agent: the kubelet of the local cluster's simulated nodes (``python -m localcluster.node_agent``).

It runs every pod bound to a node it manages (all Nodes, or those matching LOCALCLUSTER_NODE_SELECTOR)
and reports like a kubelet: pod IP (loopback 127.1.0.0/16, so each pod's server really listens on its
IP), phase, conditions, init/container statuses with waiting/running/terminated states, restart counts,
and Events from component ``kubelet``. Failures are the kubelet's: ErrImagePull/ImagePullBackOff (see
localcluster.images), CreateContainerConfigError for a missing Secret/ConfigMap/key, FailedMount for a
missing Secret/ConfigMap volume, CrashLoopBackOff with a growing back-off. vLLM containers parse their
command line like vLLM (localcluster.vllm_flags) and serve localcluster.vllm_sim on <podIP>:<port>
after a modelled start-up; probes are real HTTP calls to that server.

Container logs are kept in memory (last lines), appended to
``<LOCALCLUSTER_STATE_DIR>/logs/pods/<namespace>_<pod>_<container>.log``, and served on each node's
kubelet port (``/containerLogs/...``, HTTPS on the node's loopback InternalIP:10250) so that the API
server's ``pods/log`` (``kubectl logs``) works when it prefers InternalIP addresses (KubeletEndpoint).

Settings (environment): KUBECONFIG, LOCALCLUSTER_STATE_DIR (writes ready/node_agent once running),
LOCALCLUSTER_TIME_SCALE (factor on every simulated delay; default 0.02), LOCALCLUSTER_NODE_SELECTOR.
"""
import asyncio
import base64
import collections
import concurrent.futures
import ipaddress
import json
import logging
import os
import re
import secrets as random_secrets
import signal
import ssl
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import urllib3
from aiohttp import web
from kubernetes import client, watch
from kubernetes import config as kube_config
from kubernetes.client.rest import ApiException

from localcluster import images, vllm_flags, vllm_sim
from localcluster.config import POD_NETWORK_ENV, pod_network

LOG = logging.getLogger("node_agent")

BACKOFF_INITIAL_S = 10  # kubelet's container restart and image pull back-off: 10 s doubling to 300 s
BACKOFF_MAX_S = 300
MIN_PERIOD_S = 0.05  # floor for scaled retries, so a tiny time scale does not spin
MIN_PROBE_PERIOD_S = 1.0  # floor for scaled probe periods: dozens of pods probed 5x/s would eat the CPU
PROCESS_START_S = 5  # python + vLLM imports before argument parsing (then scaled)
IMAGE_PULL_MB_PER_S = 120  # modelled registry throughput
MODEL_DOWNLOAD_MB_PER_S = 150  # modelled Hugging Face download throughput (seed: ~35 s for Qwen2.5-3B)
MODEL_SIZES_MB = {"Qwen/Qwen2.5-3B-Instruct": 6200, "Qwen/Qwen2.5-0.5B-Instruct": 1000,
                  "Qwen/Qwen2.5-7B-Instruct": 15200, "facebook/opt-125m": 250}
DEFAULT_MODEL_MB = 5000
GATED_REPO_PREFIXES = ("meta-llama/", "google/gemma", "mistralai/")  # need an accepted licence + token
LOG_LINES_KEPT = 2000
TERMINATION_MESSAGE_LIMIT = 2048  # FallbackToLogsOnError: last 80 lines / 2048 bytes of the log
API_RETRY_S = 300  # how long API calls are retried while the API server is unreachable
API_UNAVAILABLE = (urllib3.exceptions.HTTPError, OSError)
GPU_RESOURCE, TPU_RESOURCE = "nvidia.com/gpu", "google.com/tpu"
GPU_LABEL, TPU_LABEL = "cloud.google.com/gke-accelerator", "cloud.google.com/gke-tpu-accelerator"
STORAGE_SCHEMES = ("gs://", "s3://", "hf://", "https://", "http://", "pvc://", "oci://", "/")


# The pod conditions the kubelet writes (kubernetes/kubernetes v1.20.2 pkg/kubelet/status/generate.go).
KUBELET_CONDITIONS = ("Initialized", "Ready", "ContainersReady")


def now_rfc3339():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class Settings:
    kubeconfig: str | None
    state_dir: Path
    time_scale: float
    node_selector: str = ""

    @classmethod
    def from_env(cls):
        state_dir = Path(os.environ.get("LOCALCLUSTER_STATE_DIR") or Path.cwd() / ".localcluster")
        raw_scale = os.environ.get("LOCALCLUSTER_TIME_SCALE") or "0.02"
        try:
            scale = float(raw_scale)
        except ValueError:
            raise SystemExit(f"LOCALCLUSTER_TIME_SCALE must be a positive number, got {raw_scale!r}") from None
        if scale <= 0:
            raise SystemExit(f"LOCALCLUSTER_TIME_SCALE must be a positive number, got {raw_scale!r}")
        return cls(os.environ.get("KUBECONFIG"), state_dir, scale, os.environ.get("LOCALCLUSTER_NODE_SELECTOR", ""))

    def scaled(self, seconds):
        return max(float(seconds or 0), 0.0) * self.time_scale

    def period(self, seconds):
        return max(self.scaled(seconds), MIN_PERIOD_S)


class Backoff:
    """The kubelet's exponential back-off (10 s doubling, capped at 5 min), in scaled time."""

    def __init__(self, settings):
        self.settings = settings
        self.current = BACKOFF_INITIAL_S

    def next(self):
        seconds = self.current
        self.current = min(self.current * 2, BACKOFF_MAX_S)
        return seconds, self.settings.period(seconds)


class IPAllocator:
    """Pod IPs from LOCALCLUSTER_POD_NETWORK, default 127.1.0.0/16 (localcluster/config.py; Linux routes all of
    127/8 to lo, so a server can bind any of them)."""

    def __init__(self, environ=None):
        self.network = pod_network(environ)
        self._by_uid = {}
        self._hosts = self.network.hosts()

    def reserve(self, uid, ip):
        self._by_uid[uid] = ip

    def allocate(self, uid):
        if uid in self._by_uid:
            return self._by_uid[uid]
        used = set(self._by_uid.values())
        for _ in range(self.network.num_addresses):
            try:
                candidate = str(next(self._hosts))
            except StopIteration:
                self._hosts = self.network.hosts()
                continue
            if candidate.endswith(".0") or candidate.endswith(".255") or candidate in used:
                continue
            self._by_uid[uid] = candidate
            return candidate
        raise RuntimeError(f"pod network {self.network} ({POD_NETWORK_ENV}) is exhausted")

    def release(self, uid):
        self._by_uid.pop(uid, None)


class ContainerLog:
    """The last lines of one container's output, mirrored to a file under the state directory."""

    def __init__(self, path):
        self.path = path
        self.lines = collections.deque(maxlen=LOG_LINES_KEPT)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives as long as the pod

    def write(self, text):
        for line in str(text).rstrip("\n").split("\n"):
            self.lines.append(line)
            self._file.write(line + "\n")

    def tail(self, max_bytes=TERMINATION_MESSAGE_LIMIT, max_lines=80):
        text = "\n".join(list(self.lines)[-max_lines:])
        return text[-max_bytes:]

    def close(self):
        self._file.close()


class EventRecorder:
    """core/v1 Events from component kubelet, aggregated like the kubelet's recorder (count, lastTimestamp)."""

    def __init__(self, core, api):
        self.core = core
        self.api = api
        self._seen = {}

    async def record(self, pod, reason, message, event_type="Normal", field_path=None):
        meta = pod["metadata"]
        key = (meta["uid"], reason, message, field_path)
        stamp = now_rfc3339()
        try:
            if key in self._seen:
                name, count = self._seen[key]
                self._seen[key] = (name, count + 1)
                body = {"count": count + 1, "lastTimestamp": stamp}
                await self.api(self.core.patch_namespaced_event, name, meta["namespace"], body)
                return
            name = f"{meta['name']}.{random_secrets.token_hex(8)}"
            involved = {"kind": "Pod", "namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"],
                        "apiVersion": "v1", "resourceVersion": meta.get("resourceVersion")}
            if field_path:
                involved["fieldPath"] = field_path
            body = {"metadata": {"name": name, "namespace": meta["namespace"]}, "involvedObject": involved,
                    "reason": reason, "message": message, "type": event_type, "count": 1,
                    "firstTimestamp": stamp, "lastTimestamp": stamp,
                    "source": {"component": "kubelet", "host": pod["spec"].get("nodeName")}}
            await self.api(self.core.create_namespaced_event, meta["namespace"], body)
            self._seen[key] = (name, 1)
        except ApiException as err:
            if err.status not in (403, 404):  # namespace being deleted
                LOG.warning("event %s for %s/%s not recorded: %s", reason, meta["namespace"], meta["name"], err.reason)
        except API_UNAVAILABLE as err:
            LOG.warning("event %s for %s/%s not recorded: %s", reason, meta["namespace"], meta["name"], err)

    def forget(self, uid):
        for key in [k for k in self._seen if k[0] == uid]:
            del self._seen[key]


class ConfigError(Exception):
    """CreateContainerConfigError / FailedMount: the message names the missing object or key."""


class Container:
    """Runtime state of one container, rendered as a ContainerStatus."""

    def __init__(self, spec, log, waiting_reason, init=False):
        self.spec = spec
        self.init = init
        self.name = spec["name"]
        self.log = log
        self.state = {"waiting": {"reason": waiting_reason}}
        self.last_state = {}
        self.restart_count = 0
        self.ready = False
        self.started = False
        self.image_id = ""
        self.container_id = None
        self.image_info = None

    @property
    def field_path(self):
        return f"spec.{'initContainers' if self.init else 'containers'}{{{self.name}}}"

    def wait(self, reason, message=None):
        self.state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        self.ready = self.started = False

    def status(self):
        status = {"name": self.name, "image": self.spec.get("image", ""), "imageID": self.image_id,
                  "ready": self.ready, "restartCount": self.restart_count, "started": self.started,
                  "state": self.state, "lastState": self.last_state}
        if self.container_id:
            status["containerID"] = self.container_id
        return status


class PodWorker:
    """Runs one pod: volumes, init containers in order, then the containers side by side."""

    def __init__(self, agent, pod):
        self.agent = agent
        self.settings = agent.settings
        self.pod = pod
        meta, spec = pod["metadata"], pod["spec"]
        self.namespace, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        existing_ip = (pod.get("status") or {}).get("podIP")
        if existing_ip and ipaddress.ip_address(existing_ip) in agent.ips.network:
            agent.ips.reserve(self.uid, existing_ip)
        self.ip = agent.ips.allocate(self.uid)
        has_init = bool(spec.get("initContainers"))
        self.init_containers = [self._container(c, "PodInitializing", init=True)
                                for c in spec.get("initContainers") or []]
        self.containers = [self._container(c, "PodInitializing" if has_init else "ContainerCreating")
                           for c in spec["containers"]]
        self._restore_restart_counts(pod.get("status") or {})
        self.initialized = not has_init
        self.final_phase = None
        self.start_time = (pod.get("status") or {}).get("startTime") or now_rfc3339()
        self.conditions = {}
        self.stopping = asyncio.Event()
        self.terminating = False
        self.task = None
        self._last_written = None
        self._status_lock = asyncio.Lock()
        self._tmp = None

    def _container(self, spec, waiting_reason, init=False):
        path = self.settings.state_dir / "logs" / "pods" / f"{self.namespace}_{self.name}_{spec['name']}.log"
        return Container(spec, ContainerLog(path), waiting_reason, init)

    def _restore_restart_counts(self, status):
        """After an agent restart, restart counts continue from what the pod status says."""
        previous = {s["name"]: s.get("restartCount", 0)
                    for s in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or [])}
        for container in self.init_containers + self.containers:
            container.restart_count = previous.get(container.name, 0)

    # ---------------------------------------------------------------- helpers
    @property
    def node(self):
        return self.agent.nodes.get(self.pod["spec"].get("nodeName")) or {}

    async def sleep(self, seconds):
        """Sleep; True if the pod is being stopped meanwhile."""
        try:
            await asyncio.wait_for(self.stopping.wait(), timeout=max(seconds, 0))
            return True
        except TimeoutError:
            return self.stopping.is_set()

    async def event(self, reason, message, event_type="Normal", container=None):
        await self.agent.events.record(self.pod, reason, message, event_type,
                                       container.field_path if container else None)

    # ---------------------------------------------------------------- lifecycle
    def start(self):
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self):
        while not self.stopping.is_set():
            try:
                await self._run_pod()
                return
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - e.g. the API server gone for minutes: start the containers over
                LOG.exception("pod %s/%s: worker failed; restarting its containers", self.namespace, self.name)
                if await self.sleep(2):
                    return

    async def _run_pod(self):
        await self.sync_status()
        if not await self.mount_volumes():
            return
        if not self.initialized:
            if not await self.run_init_containers():
                return
            self.initialized = True
        for container in self.containers:
            container.wait("ContainerCreating")
        await self.sync_status()
        async with asyncio.TaskGroup() as group:  # one failing loop cancels its siblings (no orphan servers)
            for container in self.containers:
                group.create_task(self.run_container(container))

    async def stop(self):
        """Stop containers now (pod deleted, or node gone)."""
        self.stopping.set()
        if self.task:
            try:
                await asyncio.wait_for(asyncio.shield(self.task), timeout=10)
            except TimeoutError:
                self.task.cancel()
        for container in self.init_containers + self.containers:
            container.log.close()
        if self._tmp:
            self._tmp.cleanup()

    async def terminate(self):
        """Graceful deletion: Killing events, preStop (scaled, within the grace period), then remove the pod."""
        if self.terminating:
            return
        self.terminating = True
        meta = self.pod["metadata"]
        grace = meta.get("deletionGracePeriodSeconds")
        grace = self.pod["spec"].get("terminationGracePeriodSeconds", 30) if grace is None else grace
        running = [c for c in self.containers if "running" in c.state]
        for container in running:
            await self.event("Killing", f"Stopping container {container.name}", container=container)
        pre_stop = max((_pre_stop_seconds(c.spec) for c in running), default=0)
        await asyncio.sleep(self.settings.scaled(min(pre_stop, grace)))
        await self.stop()
        await self.agent.delete_pod(self)

    # ---------------------------------------------------------------- status
    def phase(self):
        """The kubelet's getPhase over the app containers."""
        if self.final_phase:
            return self.final_phase
        if not self.initialized:
            return "Pending"
        waiting = running = stopped = succeeded = 0
        for c in self.containers:
            if "running" in c.state:
                running += 1
            elif "terminated" in c.state:
                stopped += 1
                succeeded += c.state["terminated"].get("exitCode") == 0
            elif c.last_state.get("terminated"):
                stopped += 1
            else:
                waiting += 1
        if waiting:
            return "Pending"
        if running:
            return "Running"
        policy = self.pod["spec"].get("restartPolicy", "Always")
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        return "Running" if policy == "OnFailure" else "Failed"

    def _condition(self, kind, ok, reason=None, message=None):
        status = "True" if ok else "False"
        previous = self.conditions.get(kind)
        changed = not previous or previous["status"] != status
        condition = {"type": kind, "status": status, "lastProbeTime": None,
                     "lastTransitionTime": now_rfc3339() if changed else previous["lastTransitionTime"]}
        # None clears a reason/message left from before in the strategic merge of conditions (merged by type)
        condition.update(reason=None if ok else reason, message=None if ok else message)
        self.conditions[kind] = condition
        return condition

    def build_status(self):
        incomplete = [c.name for c in self.init_containers if "terminated" not in c.state
                      or c.state["terminated"].get("exitCode") != 0]
        unready = [c.name for c in self.containers if not c.ready]
        scheduled = next((c for c in (self.pod.get("status") or {}).get("conditions") or []
                          if c.get("type") == "PodScheduled" and c.get("status") == "True"), None) or {
            "type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": self.start_time}
        conditions = [
            self._condition("Initialized", self.initialized, "ContainersNotInitialized",
                            f"containers with incomplete status: [{' '.join(incomplete)}]"),
            self._condition("Ready", not unready, "ContainersNotReady",
                            f"containers with unready status: [{' '.join(unready)}]"),
            self._condition("ContainersReady", not unready, "ContainersNotReady",
                            f"containers with unready status: [{' '.join(unready)}]"),
            scheduled,
        ]
        host_ip = _node_ip(self.node)
        status = {"phase": self.phase(), "conditions": conditions, "hostIP": host_ip, "podIP": self.ip,
                  "podIPs": [{"ip": self.ip}], "startTime": self.start_time,
                  "containerStatuses": [c.status() for c in self.containers]}
        if self.init_containers:
            status["initContainerStatuses"] = [c.status() for c in self.init_containers]
        return status

    def status_drifted(self, pod):
        """True when the API server's pod status differs from the last one written here in the phase or in the
        status of a condition this kubelet owns (timestamps aside; conditions others add are theirs)."""
        if self._last_written is None or self.terminating:
            return False

        def essentials(status):
            owned = {c.get("type"): c.get("status") for c in status.get("conditions") or []
                     if c.get("type") in KUBELET_CONDITIONS}
            return status.get("phase"), owned

        return essentials(pod.get("status") or {}) != essentials(self._last_written)

    async def sync_status(self, force=False):
        async with self._status_lock:
            status = self.build_status()
            if (status == self._last_written and not force) or self.stopping.is_set() and self.terminating:
                return
            try:
                await self.agent.api(self.agent.core.patch_namespaced_pod_status, self.name, self.namespace,
                                     {"status": status})
                self._last_written = status
            except ApiException as err:
                if err.status != 404:
                    LOG.warning("pod %s/%s: status not written: %s", self.namespace, self.name, err.reason)
            except API_UNAVAILABLE as err:
                LOG.warning("pod %s/%s: status not written: %s", self.namespace, self.name, err)

    # ---------------------------------------------------------------- volumes, images, config
    async def mount_volumes(self):
        backoff = Backoff(self.settings)
        while True:
            problems = await self.agent.api(self.agent.missing_volume_sources, self.pod)
            if not problems:
                return True
            for volume, message in problems:
                await self.event("FailedMount", f'MountVolume.SetUp failed for volume "{volume}" : {message}',
                                 "Warning")
            if await self.sleep(backoff.next()[1]):
                return False

    async def pull_image(self, container):
        """Image of the container, pulling (with back-off) if needed; None when the pod stops meanwhile."""
        image = container.spec.get("image", "")
        policy = container.spec.get("imagePullPolicy") or ("Always" if image.endswith(":latest") or ":" not in
                                                            image.rsplit("/", 1)[-1] else "IfNotPresent")
        node_images = self.agent.pulled_images[self.pod["spec"].get("nodeName")]
        backoff = Backoff(self.settings)
        while True:
            if policy != "Always" and image in node_images:
                info = node_images[image]
                await self.event("Pulled", f'Container image "{image}" already present on machine', container=container)
                return info
            await self.event("Pulling", f'Pulling image "{image}"', container=container)
            configs, missing = await self.agent.api(self.agent.pull_secret_configs, self.pod)
            if missing:
                await self.event("FailedToRetrieveImagePullSecret", f"Unable to retrieve some image pull secrets "
                                 f"({', '.join(missing)}); attempting to pull the image may not succeed.", "Warning")
            try:
                info = images.resolve_image(image, configs)
            except images.ImagePullError as err:
                await self.event("Failed", f'Failed to pull image "{image}": {err.message}', "Warning", container)
                await self.event("Failed", "Error: ErrImagePull", "Warning", container)
                container.wait("ErrImagePull", err.message)
                await self.sync_status()
                real, wait = backoff.next()
                if await self.sleep(min(wait, self.settings.period(BACKOFF_INITIAL_S))):
                    return None
                container.wait("ImagePullBackOff", f'Back-off pulling image "{image}"')
                await self.event("BackOff", f'Back-off pulling image "{image}"', container=container)
                await self.event("Failed", "Error: ImagePullBackOff", "Warning", container)
                await self.sync_status()
                if await self.sleep(wait):
                    return None
                continue
            real = info.size_mb / IMAGE_PULL_MB_PER_S
            if await self.sleep(self.settings.scaled(real)):
                return None
            await self.event("Pulled", f'Successfully pulled image "{image}" in {real:.3f}s ({real:.3f}s including '
                                       "waiting)", container=container)
            node_images[image] = info
            return info

    async def container_env(self, container):
        """Resolved environment, retrying while a referenced Secret/ConfigMap/key is missing."""
        backoff = Backoff(self.settings)
        while True:
            try:
                return await self.agent.api(self.agent.resolve_env, self.pod, container.spec, self.ip)
            except ConfigError as err:
                container.wait("CreateContainerConfigError", str(err))
                await self.event("Failed", f"Error: {err}", "Warning", container)
                await self.sync_status()
                if await self.sleep(backoff.next()[1]):
                    return None

    # ---------------------------------------------------------------- containers
    async def run_init_containers(self):
        policy = self.pod["spec"].get("restartPolicy", "Always")
        for container in self.init_containers:
            backoff = Backoff(self.settings)
            while True:
                exit_code = await self.run_once(container)
                if exit_code is None:
                    return False
                if exit_code == 0:
                    break
                if policy == "Never":
                    self.final_phase = "Failed"
                    await self.sync_status()
                    return False
                if await self.crash_backoff(container, backoff):
                    return False
        return True

    async def run_container(self, container):
        policy = self.pod["spec"].get("restartPolicy", "Always")
        backoff = Backoff(self.settings)
        while True:
            started = time.monotonic()
            exit_code = await self.run_once(container)
            if exit_code is None or policy == "Never" or (policy == "OnFailure" and exit_code == 0):
                return
            if time.monotonic() - started > self.settings.period(2 * BACKOFF_MAX_S):
                backoff = Backoff(self.settings)  # the kubelet forgets the back-off after a long enough run
            if await self.crash_backoff(container, backoff):
                return

    async def crash_backoff(self, container, backoff):
        """CrashLoopBackOff between restarts; True if the pod stops meanwhile."""
        real, wait = backoff.next()
        container.last_state = {"terminated": container.state["terminated"]}
        container.restart_count += 1
        container.wait("CrashLoopBackOff", f"back-off {real}s restarting failed container={container.name} "
                                           f"pod={self.name}_{self.namespace}({self.uid})")
        await self.event("BackOff", "Back-off restarting failed container", "Warning", container)
        await self.sync_status()
        return await self.sleep(wait)

    async def run_once(self, container):
        """Pull, configure, create, start and run one instance; its exit code, or None if the pod stops."""
        info = await self.pull_image(container)
        if info is None:
            return None
        container.image_info, container.image_id = info, info.image_id
        env = await self.container_env(container)
        if env is None:
            return None
        container.container_id = f"containerd://{random_secrets.token_hex(32)}"
        await self.event("Created", f"Created container {container.name}", container=container)
        started_at = now_rfc3339()
        container.state = {"running": {"startedAt": started_at}}
        container.started = not container.spec.get("startupProbe")
        await self.event("Started", f"Started container {container.name}", container=container)
        await self.sync_status()
        if info.kind == images.STORAGE_INITIALIZER:
            exit_code = await self.run_storage_initializer(container, env)
        elif info.is_vllm:
            exit_code = await self.run_vllm(container, env)
        else:
            exit_code = await self.run_service(container)
        if exit_code is None:
            return None
        terminated = {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                      "startedAt": started_at, "finishedAt": now_rfc3339(), "containerID": container.container_id}
        if exit_code and container.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            terminated["message"] = container.log.tail()
        container.state = {"terminated": terminated}
        container.ready = container.started = False
        await self.sync_status()
        return exit_code

    async def run_service(self, container):
        """Any other image: runs until stopped; probes are treated as passing (we serve none of their ports)."""
        probe = container.spec.get("readinessProbe") or {}
        if await self.sleep(self.settings.scaled(probe.get("initialDelaySeconds", 0))):
            return None
        container.started = container.ready = True
        await self.sync_status()
        await self.stopping.wait()
        return None

    async def run_storage_initializer(self, container, env):
        """KServe's storage-initializer: check the URI, "download" the model (time scaled by its size)."""
        args = list(container.spec.get("args") or [])
        uri, dest = (args + ["", "/mnt/models"])[:2]
        container.log.write(f"INFO:root:Initializing, args: src_uri [{uri}] dest_path[ [{dest}]")
        if await self.sleep(self.settings.scaled(2)):
            return None
        error = _storage_uri_error(uri) or _gated_model_error(uri, env)
        if error:
            container.log.write(f"Traceback (most recent call last):\n  File \"/storage-initializer/scripts/"
                                f"initializer-entrypoint\", line 22, in <module>\n{error}")
            return 1
        repo = uri[len("hf://"):].split(":", 1)[0] if uri.startswith("hf://") else uri
        size_mb = MODEL_SIZES_MB.get(repo, DEFAULT_MODEL_MB)
        container.log.write(f"INFO:kserve.storage:Copying contents of {uri} to local")
        if await self.sleep(self.settings.scaled(size_mb / MODEL_DOWNLOAD_MB_PER_S)):
            return None
        container.log.write(f"INFO:kserve.storage:Successfully copied {uri} to {dest}")
        return 0

    # ---------------------------------------------------------------- vLLM
    def accelerator_for(self, container, kind):
        """(accelerator profile name, devices the container got) from node labels and resource limits."""
        resources = container.spec.get("resources") or {}
        limits = {**(resources.get("requests") or {}), **(resources.get("limits") or {})}
        labels = (self.node.get("metadata") or {}).get("labels") or {}
        if kind == images.VLLM_TPU:
            return labels.get(TPU_LABEL, "tpu-v6e-slice"), int(limits.get(TPU_RESOURCE, 0) or 0)
        if kind == images.VLLM_CPU:
            return "cpu", 1
        return labels.get(GPU_LABEL, "nvidia-tesla-t4"), int(limits.get(GPU_RESOURCE, 0) or 0)

    async def run_vllm(self, container, env):
        """vLLM's process and the kubelet's probes side by side: a crash or a failed probe ends the instance."""
        resolved = vllm_flags.resolve_vllm_command(container.spec.get("command"), container.spec.get("args"), env)
        if resolved is None:  # the image runs something else (e.g. `sleep infinity`)
            return await self.run_service(container)
        process = asyncio.ensure_future(self.vllm_process(container, *resolved))
        probes = asyncio.ensure_future(self.probe(container, time.monotonic()))
        await asyncio.wait([process, probes], return_when=asyncio.FIRST_COMPLETED)
        if process.done():
            probes.cancel()
            await asyncio.gather(probes, return_exceptions=True)
            return process.result()
        failed = probes.result()
        process.cancel()
        await asyncio.gather(process, return_exceptions=True)
        if failed is None:
            return None
        container.log.write("INFO:     Shutting down")
        return 137

    async def vllm_process(self, container, prog, argv):
        """Parse args, check the platform, load (scaled start-up), then serve until stopped; the exit code."""
        if await self.sleep(self.settings.scaled(PROCESS_START_S)):
            return None
        info = container.image_info
        try:  # the flags of the image's vLLM release (collection table, via localcluster.vllm_flags)
            args = vllm_flags.parse_vllm_args(argv, prog, vllm_version=info.vllm_version or
                                              vllm_flags.DEFAULT_VLLM_VERSION)
        except vllm_flags.VllmArgumentError as err:
            container.log.write(err.output)
            return err.exit_code
        accelerator, devices = self.accelerator_for(container, info.kind)
        platform_error = _platform_error(info.kind, devices)
        if platform_error:
            container.log.write(platform_error)
            return 1
        config = vllm_sim.SimConfig.from_vllm_args(args, accelerator, devices=devices,
                                                   vllm_version=args.vllm_version)
        container.log.write(f"INFO {time.strftime('%m-%d %H:%M:%S')} [api_server.py:1090] vLLM API server version "
                            f"{config.vllm_version}")
        try:
            vllm_sim.validate_startup(config)
        except vllm_sim.EngineStartupError as err:
            if await self.sleep(self.settings.scaled(config.profile.startup_s / 3)):
                return None
            container.log.write(err.log)
            return err.exit_code
        if await self.sleep(self.settings.scaled(config.profile.startup_s)):
            return None
        return await self.serve_vllm(container, config, args)

    async def serve_vllm(self, container, config, args):
        try:
            ssl_context = await asyncio.to_thread(self.ssl_context, container, args)
        except (OSError, ssl.SSLError, ConfigError) as err:
            container.log.write(f"FileNotFoundError: [Errno 2] No such file or directory: {err}")
            return 1
        server = vllm_sim.VllmServer(config, log=container.log.write)
        try:
            await server.start(self.ip, args.port, ssl_context=ssl_context)
        except OSError as err:
            container.log.write(f"ERROR {time.strftime('%m-%d %H:%M:%S')} [launcher.py:92] [Errno {err.errno}] "
                                f"error while attempting to bind on address ('{self.ip}', {args.port}): "
                                f"{err.strerror.lower() if err.strerror else err}")
            await server.stop()
            return 1
        container.log.write("\n".join(vllm_sim.startup_log_lines(config, "0.0.0.0", args.port)[1:]))
        self.agent.servers[self.uid] = server
        try:
            await self.stopping.wait()
        finally:
            self.agent.servers.pop(self.uid, None)
            await server.stop()
        return None

    def ssl_context(self, container, args):
        """TLS when vLLM gets --ssl-certfile/--ssl-keyfile: the files come from the container's Secret volumes."""
        if not (args.ssl_certfile and args.ssl_keyfile):
            return None
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="node-agent-tls-")
        paths = [self.agent.materialize_volume_file(self.pod, container.spec, path, self._tmp.name)
                 for path in (args.ssl_certfile, args.ssl_keyfile)]
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*paths)
        return context

    # ---------------------------------------------------------------- probes
    async def probe(self, container, started):
        """Startup, then readiness and liveness probes; the name of the probe that failed, or None when stopped."""
        spec = container.spec
        if spec.get("startupProbe"):
            outcome = await self.probe_worker(container, spec["startupProbe"], "Startup", started)
            if outcome != "passed":
                return outcome
            container.started = True
            await self.sync_status()
        background, watched = [], [asyncio.ensure_future(self.stopping.wait())]
        if spec.get("readinessProbe"):
            background.append(asyncio.ensure_future(
                self.probe_worker(container, spec["readinessProbe"], "Readiness", started)))
        else:
            container.ready = True
            await self.sync_status()
        if spec.get("livenessProbe"):
            watched.append(asyncio.ensure_future(
                self.probe_worker(container, spec["livenessProbe"], "Liveness", started)))
        try:
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        finally:  # also when this task is cancelled (the container exited): child probes must not outlive it
            for task in background + watched:
                task.cancel()
            await asyncio.gather(*background, *watched, return_exceptions=True)
        return None if self.stopping.is_set() else "Liveness"

    async def probe_worker(self, container, probe, kind, started):
        """One probe's loop with Kubernetes' delay/period/threshold semantics (scaled)."""
        delay = self.settings.scaled(probe.get("initialDelaySeconds", 0)) - (time.monotonic() - started)
        if await self.sleep(delay):
            return None
        period = max(self.settings.scaled(probe.get("periodSeconds", 10)), MIN_PROBE_PERIOD_S)
        failure_threshold = probe.get("failureThreshold", 3)
        success_threshold = probe.get("successThreshold", 1)
        successes = failures = 0
        while True:
            ok, detail = await self.probe_once(container, probe)
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            if not ok:
                await self.event("Unhealthy", f"{kind} probe failed: {detail}", "Warning", container)
            if kind == "Readiness":
                ready = successes >= success_threshold if ok else container.ready and failures < failure_threshold
                if ready != container.ready:
                    container.ready = ready
                    await self.sync_status()
            elif ok and kind == "Startup":
                return "passed"
            elif failures >= failure_threshold:
                container.ready = False
                await self.event("Killing", f"Container {container.name} failed {kind.lower()} probe, will be "
                                            "restarted", container=container)
                return kind
            if await self.sleep(period):
                return None

    async def probe_once(self, container, probe):
        """(ok, failure detail) of one real probe against the pod IP."""
        if "httpGet" in probe:
            get = probe["httpGet"]
            port = _resolve_port(container.spec, get.get("port"))
            use_scheme = (get.get("scheme") or "HTTP").upper()
            url = f"{use_scheme.lower()}://{get.get('host') or self.ip}:{port}{get.get('path') or '/'}"
            timeout = aiohttp.ClientTimeout(total=max(probe.get("timeoutSeconds", 1), 1))
            try:
                async with self.agent.probe_session().get(url, ssl=False, allow_redirects=False,
                                                          timeout=timeout) as response:
                    if 200 <= response.status < 400:
                        return True, None
                    return False, f"HTTP probe failed with statuscode: {response.status}"
            except TimeoutError:
                return False, (f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting '
                               "headers)")
            except aiohttp.ClientConnectorError:
                return False, f'Get "{url}": dial tcp {self.ip}:{port}: connect: connection refused'
            except aiohttp.ClientError as err:
                return False, f'Get "{url}": {err}'
        if "tcpSocket" in probe:
            port = _resolve_port(container.spec, probe["tcpSocket"].get("port"))
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(self.ip, port), timeout=1)
                writer.close()
                return True, None
            except (OSError, TimeoutError):
                return False, f"dial tcp {self.ip}:{port}: connect: connection refused"
        return True, None  # exec/grpc: nothing to run them against; treat as passing


def _pre_stop_seconds(spec):
    """Seconds a ``preStop: exec: [sleep, N]`` hook takes (KServe's template sleeps 15 s)."""
    command = (((spec.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command") or []
    if len(command) == 2 and command[0].rsplit("/", 1)[-1] == "sleep":
        try:
            return float(command[1])
        except ValueError:
            return 0
    return 0


def _resolve_port(spec, port):
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for declared in spec.get("ports") or []:
        if declared.get("name") == port:
            return declared["containerPort"]
    return port


def _node_ip(node):
    addresses = ((node.get("status") or {}).get("addresses")) or []
    return next((a["address"] for a in addresses if a.get("type") == "InternalIP"), "127.0.0.1")


def _storage_uri_error(uri):
    """KServe storage-initializer's error for a URI it cannot download, or None."""
    if not uri.startswith(STORAGE_SCHEMES):
        return (f"Exception: Cannot recognize storage type for {uri}\n'gs://', 's3://', 'local', 'https://', "
                "'hf://' are the current available storage type.")
    if uri.startswith("hf://") and not re.fullmatch(r"hf://[\w.-]+/[\w.-]+(:[\w.-]+)?", uri):
        return f"ValueError: Invalid Hugging Face URI format: {uri}. Expected hf://<repo_owner>/<repo_name>[:<hash>]"
    return None


def _gated_model_error(uri, env):
    """Gated Hugging Face repos need HF_TOKEN in the *storage-initializer's* env (the seed sets it on main only).

    KServe's storage initializer downloads hf:// URIs with ``huggingface_hub.snapshot_download`` and no explicit
    token (kserve/kserve v0.20.0 python/storage/kserve_storage/kserve_storage.py, ``_download_hf``), so only the
    ``HF_TOKEN`` of its own environment authenticates; without it the Hub answers a gated repo with 401 and
    ``GatedRepoError`` is raised (huggingface_hub ``utils/_http.py``, ``hf_raise_for_status``). KServe puts
    HF_TOKEN there from the Secret of the ``serving.kserve.io/storageSecretName`` annotation or of the
    ServiceAccount (pkg/credentials/service_account_credentials.go), never from the main container's env.
    """
    repo = uri[len("hf://"):].split(":", 1)[0] if uri.startswith("hf://") else ""
    if repo.startswith(GATED_REPO_PREFIXES) and not env.get("HF_TOKEN"):
        return (f"huggingface_hub.errors.GatedRepoError: 401 Client Error. Cannot access gated repo for url "
                f"https://huggingface.co/api/models/{repo}/revision/main.\nAccess to model {repo} is restricted. You "
                "must have access to it and be authenticated to access it. Please log in.")
    return None


def _platform_error(kind, devices):
    """What vLLM prints when its accelerator is not there (CUDA image without a GPU, TPU image without chips)."""
    stamp = time.strftime("%m-%d %H:%M:%S")
    if kind == images.VLLM_CUDA and devices == 0:
        return (f"INFO {stamp} [__init__.py:253] No platform detected, vLLM is running on UnspecifiedPlatform\n"
                "Traceback (most recent call last):\n  File \"/opt/vllm/lib64/python3.12/site-packages/vllm/engine/"
                "arg_utils.py\", line 1004, in create_engine_config\n    device_config = DeviceConfig(device="
                "self.device)\nRuntimeError: Failed to infer device type")
    if kind == images.VLLM_TPU and devices == 0:
        return (f"INFO {stamp} [__init__.py:241] Automatically detected platform tpu.\n"
                "Traceback (most recent call last):\nRuntimeError: TPU initialization failed: No ba16c7433 device "
                "found.")
    return None


class KubeletEndpoint:
    """The kubelet's HTTPS port on a node's InternalIP, serving ``/containerLogs`` so ``kubectl logs`` works.

    The API server proxies ``pods/log`` to ``https://<node address>:<kubeletEndpoint port>``; it reaches
    this endpoint when it prefers InternalIP (``--kubelet-preferred-address-types=InternalIP``), since
    the nodes' Hostname addresses do not resolve. Certificates are self-signed (the API server does not
    verify kubelet certificates unless ``--kubelet-certificate-authority`` is set).
    """

    def __init__(self, agent):
        self.agent = agent
        self._sites = {}  # (ip, port) -> AppRunner
        self._ssl = None

    def _ssl_context(self):
        if self._ssl is None:
            import trustme  # test-infrastructure dependency (requirements-dev.txt)

            ca = trustme.CA(organization_name="llm-serving-gke local kubelet")
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
            self._ssl = context
        return self._ssl

    async def container_logs(self, request):
        namespace, pod, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        worker = next((w for w in self.agent.workers.values() if (w.namespace, w.name) == (namespace, pod)), None)
        found = worker and next((c for c in worker.init_containers + worker.containers if c.name == container),
                                None)
        if not found:
            return web.Response(status=404, text=f"container {container} is not valid for pod {pod}")
        lines = list(found.log.lines)
        tail = request.query.get("tailLines")
        if tail and tail.isdigit():
            lines = lines[-int(tail):] if int(tail) else []
        text = "".join(line + "\n" for line in lines)
        limit = request.query.get("limitBytes")
        if limit and limit.isdigit():
            text = text[:int(limit)]
        return web.Response(text=text, content_type="text/plain")

    async def sync(self, nodes):
        """Listen on every managed node's (InternalIP, kubelet port); stop listening for nodes that went away."""
        wanted = set()
        for node in nodes.values():
            port = (((node.get("status") or {}).get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
            ip = _node_ip(node)
            if port and ipaddress.ip_address(ip).is_loopback:
                wanted.add((ip, int(port)))
        for key in set(self._sites) - wanted:
            await self._sites.pop(key).cleanup()
        for ip, port in wanted - set(self._sites):
            app = web.Application()
            app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self.container_logs)
            app.router.add_get("/healthz", lambda request: web.Response(text="ok"))
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            try:
                await web.TCPSite(runner, ip, port, ssl_context=self._ssl_context(), reuse_address=True).start()
            except OSError as err:
                LOG.warning("kubelet endpoint %s:%s not served: %s", ip, port, err)
                await runner.cleanup()
                continue
            self._sites[(ip, port)] = runner

    async def close(self):
        for runner in self._sites.values():
            await runner.cleanup()
        self._sites.clear()


class NodeAgent:
    """Watches Nodes and Pods (relisting on 410 and after API server restarts) and runs PodWorkers."""

    def __init__(self, settings):
        self.settings = settings
        api = kube_config.new_client_from_config(config_file=settings.kubeconfig)
        self.core = client.CoreV1Api(api)
        self.events = EventRecorder(self.core, self.api)
        self.ips = IPAllocator()
        self.nodes = {}
        self.workers = {}
        self.unplaced = {}  # pods bound to nodes not (yet) seen
        self.servers = {}  # pod uid -> running VllmServer
        self.pulled_images = collections.defaultdict(dict)
        self.kubelet = KubeletEndpoint(self)
        self._probe_session = None
        self._queue = None
        self._loop = None
        self._synced = set()
        self._closed = threading.Event()

    def probe_session(self):
        """One HTTP client for all probes; like the kubelet, a new connection per probe."""
        if self._probe_session is None:
            self._probe_session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=0))
        return self._probe_session

    async def api(self, func, *args, **kwargs):
        """Call the Kubernetes API in a thread, retrying while the API server is away (restarts, overload)."""
        deadline, delay = time.monotonic() + API_RETRY_S, 0.5
        while True:
            try:
                return await asyncio.to_thread(func, *args, **kwargs)
            except ApiException as err:
                if err.status < 500 and err.status != 429 or time.monotonic() > deadline:
                    raise
            except API_UNAVAILABLE:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5)

    # ------------------------------------------------------------ API reads used by workers (threads)
    def _secret(self, namespace, name):
        try:
            return self.core.read_namespaced_secret(name, namespace).data or {}
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def _config_map(self, namespace, name):
        try:
            return self.core.read_namespaced_config_map(name, namespace).data or {}
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def pull_secret_configs(self, pod):
        """(docker configs of the pod's imagePullSecrets, names of those that do not exist)."""
        configs, missing = [], []
        for ref in pod["spec"].get("imagePullSecrets") or self._service_account_pull_secrets(pod):
            data = self._secret(pod["metadata"]["namespace"], ref.get("name", ""))
            if data is None:
                missing.append(ref.get("name", ""))
            else:
                configs.append(images.decode_pull_secret(data))
        return configs, missing

    def _service_account_pull_secrets(self, pod):
        """The pod's ServiceAccount imagePullSecrets.

        On a real cluster the ServiceAccount admission plugin copies them into the pod spec; the local API
        server runs with that plugin disabled, so the agent reads them here to give the same result.
        """
        name = pod["spec"].get("serviceAccountName") or pod["spec"].get("serviceAccount") or "default"
        try:
            account = self.core.read_namespaced_service_account(name, pod["metadata"]["namespace"])
        except ApiException:
            return []
        return [{"name": ref.name} for ref in account.image_pull_secrets or []]

    def missing_volume_sources(self, pod):
        namespace, problems = pod["metadata"]["namespace"], []
        for volume in pod["spec"].get("volumes") or []:
            if "secret" in volume and not volume["secret"].get("optional"):
                name = volume["secret"].get("secretName", "")
                if self._secret(namespace, name) is None:
                    problems.append((volume["name"], f'secret "{name}" not found'))
            if "configMap" in volume and not volume["configMap"].get("optional"):
                name = volume["configMap"].get("name", "")
                if self._config_map(namespace, name) is None:
                    problems.append((volume["name"], f'configmap "{name}" not found'))
        return problems

    def resolve_env(self, pod, spec, pod_ip):
        """Container environment as the kubelet builds it; ConfigError like CreateContainerConfigError."""
        namespace = pod["metadata"]["namespace"]
        env = {}
        for source in spec.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for key, ref, reader, label in (("secretRef", source.get("secretRef"), self._secret, "secret"),
                                            ("configMapRef", source.get("configMapRef"), self._config_map,
                                             "configmap")):
                if not ref:
                    continue
                data = reader(namespace, ref.get("name", ""))
                if data is None:
                    if ref.get("optional"):
                        continue
                    raise ConfigError(f'{label} "{ref.get("name", "")}" not found')
                for name, value in data.items():
                    env[prefix + name] = _decode(value) if key == "secretRef" else value
        for var in spec.get("env") or []:
            env[var["name"]] = self._env_value(pod, namespace, var, pod_ip, env)
        return {k: v for k, v in env.items() if v is not None}

    def _env_value(self, pod, namespace, var, pod_ip, env):
        if "valueFrom" not in var:
            return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)),
                          var.get("value", ""))
        source = var["valueFrom"]
        for ref_key, reader, label, kind in (("secretKeyRef", self._secret, "secret", "Secret"),
                                             ("configMapKeyRef", self._config_map, "configmap", "ConfigMap")):
            ref = source.get(ref_key)
            if not ref:
                continue
            data = reader(namespace, ref.get("name", ""))
            if data is None:
                if ref.get("optional"):
                    return None
                raise ConfigError(f'{label} "{ref.get("name", "")}" not found')
            if ref["key"] not in data:
                if ref.get("optional"):
                    return None
                raise ConfigError(f"couldn't find key {ref['key']} in {kind} {namespace}/{ref.get('name', '')}")
            return _decode(data[ref["key"]]) if kind == "Secret" else data[ref["key"]]
        field = (source.get("fieldRef") or {}).get("fieldPath")
        fields = {"metadata.name": pod["metadata"]["name"], "metadata.namespace": namespace,
                  "metadata.uid": pod["metadata"]["uid"], "spec.nodeName": pod["spec"].get("nodeName"),
                  "spec.serviceAccountName": pod["spec"].get("serviceAccountName"), "status.podIP": pod_ip,
                  "status.hostIP": _node_ip(self.nodes.get(pod["spec"].get("nodeName")) or {})}
        return fields.get(field, "")

    def materialize_volume_file(self, pod, spec, path, directory):
        """Write the Secret/ConfigMap key mounted at ``path`` to ``directory``; returns the file path."""
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        for mount in spec.get("volumeMounts") or []:
            root = mount["mountPath"].rstrip("/") + "/"
            if not path.startswith(root):
                continue
            key, volume = path[len(root):], volumes.get(mount["name"]) or {}
            namespace = pod["metadata"]["namespace"]
            if "secret" in volume:
                data = self._secret(namespace, volume["secret"].get("secretName", "")) or {}
                value = _decode(data[key]) if key in data else None
            elif "configMap" in volume:
                value = (self._config_map(namespace, volume["configMap"].get("name", "")) or {}).get(key)
            else:
                value = None
            if value is None:
                break
            target = Path(directory) / key.replace("/", "_")
            target.write_text(value)
            return str(target)
        raise ConfigError(f"'{path}'")

    # ------------------------------------------------------------ pod lifecycle (event loop)
    async def delete_pod(self, worker):
        body = client.V1DeleteOptions(grace_period_seconds=0, preconditions=client.V1Preconditions(uid=worker.uid))
        try:
            await self.api(self.core.delete_namespaced_pod, worker.name, worker.namespace, body=body)
        except ApiException as err:
            if err.status not in (404, 409):
                LOG.warning("pod %s/%s: delete failed: %s", worker.namespace, worker.name, err.reason)
        self._forget(worker.uid)

    def _forget(self, uid):
        worker = self.workers.pop(uid, None)
        self.ips.release(uid)
        self.events.forget(uid)
        return worker

    async def handle_pod(self, event_type, pod):
        uid, node = pod["metadata"]["uid"], pod["spec"].get("nodeName")
        worker = self.workers.get(uid)
        if event_type == "DELETED":
            self.unplaced.pop(uid, None)
            self.ips.release(uid)
            if worker:
                self._forget(uid)
                await worker.stop()
            return
        if node not in self.nodes:
            self.unplaced[uid] = pod
            return
        self.unplaced.pop(uid, None)
        if worker is None:
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                return
            worker = PodWorker(self, pod)
            self.workers[uid] = worker
            if pod["metadata"].get("deletionTimestamp"):
                asyncio.ensure_future(worker.terminate())
                return
            worker.start()
            return
        worker.pod = pod
        if pod["metadata"].get("deletionTimestamp") and not worker.terminating:
            asyncio.ensure_future(worker.terminate())
        elif worker.status_drifted(pod):
            # Someone else changed what this kubelet reported: the node lifecycle controller marks the pods of a node
            # whose heartbeats lapsed Ready=False (kubernetes/kubernetes v1.20.2
            # pkg/controller/nodelifecycle/node_lifecycle_controller.go, MarkPodsNotReady). The kubelet's status
            # manager writes its own status again once it differs from the API server's (v1.20.2
            # pkg/kubelet/status/status_manager.go, syncBatch / needsReconcile).
            asyncio.ensure_future(worker.sync_status(force=True))

    async def handle_node(self, event_type, node):
        name = node["metadata"]["name"]
        if event_type == "DELETED":
            self.nodes.pop(name, None)
            for uid, worker in list(self.workers.items()):
                if worker.pod["spec"].get("nodeName") == name:
                    self._forget(uid)
                    await worker.stop()
            return
        known = name in self.nodes
        self.nodes[name] = node
        if not known:
            for pod in list(self.unplaced.values()):
                if pod["spec"].get("nodeName") == name:
                    await self.handle_pod("ADDED", pod)

    async def handle_sync(self, kind, items):
        """A fresh list: anything we track that is no longer listed was deleted while we were not watching."""
        listed = {item["metadata"]["uid"] if kind == "pod" else item["metadata"]["name"]: item for item in items}
        handler = self.handle_pod if kind == "pod" else self.handle_node
        if kind == "pod":  # keep the IPs pods already have before allocating any new one
            for item in items:
                ip = (item.get("status") or {}).get("podIP")
                if ip and ipaddress.ip_address(ip) in self.ips.network and item["metadata"]["uid"] not in self.workers:
                    self.ips.reserve(item["metadata"]["uid"], ip)
        tracked = set(self.workers) | set(self.unplaced) if kind == "pod" else set(self.nodes)
        for key in tracked - set(listed):
            gone = self.workers[key].pod if kind == "pod" and key in self.workers else (
                self.unplaced.get(key) if kind == "pod" else self.nodes[key])
            await handler("DELETED", gone)
        for item in items:
            await handler("MODIFIED", item)
        self._synced.add(kind)

    # ------------------------------------------------------------ watches (threads -> event loop)
    def _post(self, item):
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def _watch_forever(self, kind, list_func, **selectors):
        """List, then watch from the list's resourceVersion; relist on 410 Gone or any connection failure."""
        while not self._closed.is_set():
            try:
                response = list_func(_preload_content=False, _request_timeout=60, **selectors)
                listing = json.loads(response.data)
                self._post(("SYNC", kind, listing["items"]))
                version = listing["metadata"]["resourceVersion"]
                stream = watch.Watch().stream(list_func, resource_version=version, timeout_seconds=240,
                                              _request_timeout=300, deserialize=False, **selectors)
                for event in stream:
                    if self._closed.is_set():
                        return
                    if event["type"] == "ERROR":
                        break  # 410 Gone (expired resourceVersion): relist
                    self._post((event["type"], kind, event.get("raw_object", event["object"])))
            except Exception as err:  # noqa: BLE001 - API server restarts, timeouts: relist after a pause
                LOG.info("%s watch interrupted (%s); relisting", kind, getattr(err, "reason", err))
                self._closed.wait(1)

    async def run(self):
        self._loop, self._queue = asyncio.get_running_loop(), asyncio.Queue()
        # API calls run in threads; asyncio's default pool (cores + 4 = 6 here) would serialise many pods
        self._loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=32))
        node_selectors = {"label_selector": self.settings.node_selector} if self.settings.node_selector else {}
        threads = [threading.Thread(target=self._watch_forever, args=("node", self.core.list_node),
                                    kwargs=node_selectors, daemon=True),
                   threading.Thread(target=self._watch_forever, args=("pod", self.core.list_pod_for_all_namespaces),
                                    kwargs={"field_selector": "spec.nodeName!="}, daemon=True)]
        for thread in threads:
            thread.start()
        ready_written = False
        while True:
            event_type, kind, obj = await self._queue.get()
            try:
                if event_type == "SYNC":
                    await self.handle_sync(kind, obj)
                elif kind == "node":
                    await self.handle_node(event_type, obj)
                else:
                    await self.handle_pod(event_type, obj)
                if kind == "node":
                    await self.kubelet.sync(self.nodes)
            except Exception:  # noqa: BLE001 - one bad object must not stop the agent
                LOG.exception("handling %s %s failed", event_type, kind)
            if not ready_written and self._synced >= {"node", "pod"}:
                self.write_ready_file()
                ready_written = True

    def write_ready_file(self):
        ready = self.settings.state_dir / "ready"
        ready.mkdir(parents=True, exist_ok=True)
        (ready / "node_agent").write_text(f"{os.getpid()}\n")
        LOG.info("node agent running: %d node(s), %d pod(s)", len(self.nodes), len(self.workers))

    async def shutdown(self):
        self._closed.set()
        await asyncio.gather(*(w.stop() for w in list(self.workers.values())), return_exceptions=True)
        await self.kubelet.close()
        if self._probe_session:
            await self._probe_session.close()


def _decode(value):
    try:
        return base64.b64decode(value).decode()
    except (ValueError, UnicodeDecodeError):
        return ""


async def _main():
    settings = Settings.from_env()
    agent = NodeAgent(settings)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = asyncio.ensure_future(agent.run())
    await stop.wait()
    runner.cancel()
    await agent.shutdown()
    (settings.state_dir / "ready" / "node_agent").unlink(missing_ok=True)


def main():
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    asyncio.run(_main())


if __name__ == "__main__":
    main()
