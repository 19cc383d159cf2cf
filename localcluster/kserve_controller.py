"""Simulated KServe v0.20 LLMInferenceService controller (``python -m localcluster.kserve_controller``).

An ordinary Kubernetes client: it watches LLMInferenceServices (through v1alpha2 when served), the
LLMInferenceServiceConfig presets and its children, and creates what KServe v0.20 creates, with KServe's
names, labels, ownerReferences, events and status conditions (knative condition semantics). Deletion is
left to the garbage collector of the real kube-controller-manager through the ownerReferences.
"""
import copy
import datetime
import json
import logging
import os
import queue
import threading
import time

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.watch.watch import iter_resp_lines

from localcluster import kserve_render as render

LOG = logging.getLogger("kserve_controller")
GROUP = "serving.kserve.io"
FINALIZER = "serving.kserve.io/llmisvc-finalizer"
PART_OF = {"app.kubernetes.io/part-of": "llminferenceservice"}
COMPONENT_WORKLOAD = "llminferenceservice-workload"
COMPONENT_SCHEDULER = "llminferenceservice-router-scheduler"
COMPONENT_ROUTER = "llminferenceservice-router"
POOL_V1 = ("inference.networking.k8s.io", "v1")
POOL_V1ALPHA2 = ("inference.networking.x-k8s.io", "v1alpha2")
GATEWAY_API = ("gateway.networking.k8s.io", "v1")
STORAGE_INITIALIZER_IMAGE = "kserve/storage-initializer:v0.20.0"
# storageSecretNameAnnotation of KServe's default credentials config (kserve/kserve v0.20.0
# config/configmap/inferenceservice.yaml).
STORAGE_SECRET_ANNOTATION = "serving.kserve.io/storageSecretName"
MODEL_MOUNT = "/mnt/models"
MIGRATED_ANNOTATION = "serving.kserve.io/inference-pool-migrated"
SYSTEM_NAMESPACE = os.environ.get("POD_NAMESPACE", "kserve")
STOP_ANNOTATION = "serving.kserve.io/stop"
# The API server defaults a Deployment's progressDeadlineSeconds to 600 (kubernetes/kubernetes
# pkg/apis/apps/v1/defaults.go, SetDefaults_Deployment); KServe v0.20 sets none on the workload or the scheduler
# Deployment (kserve/kserve v0.20.0 pkg/controller/v1alpha2/llmisvc/workload_single_node.go,
# expectedSingleNodeMainDeployment; scheduler.go, expectedSchedulerDeployment). The local cluster's real
# kube-controller-manager enforces whatever the spec says, so the simulation writes the default scaled by
# LOCALCLUSTER_TIME_SCALE like every simulated delay: a slow simulated start then really reaches
# Progressing=False/ProgressDeadlineExceeded, as a TPU start does on GKE.
REAL_PROGRESS_DEADLINE_SECONDS = 600


def progress_deadline_seconds(time_scale=None):
    """max(1, round(600 x LOCALCLUSTER_TIME_SCALE)): the scaled Kubernetes default."""
    if time_scale is None:
        time_scale = float(os.environ.get("LOCALCLUSTER_TIME_SCALE") or "0.02")
    return max(1, round(REAL_PROGRESS_DEADLINE_SECONDS * float(time_scale)))


def now_rfc3339():
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def go_quote(text):
    """Go's %q for the strings KServe embeds in condition messages."""
    return json.dumps(text, ensure_ascii=False)


# ============================================================== Kubernetes access

class Kube:
    """Thin JSON client over the kubernetes ApiClient (auth and TLS from the kubeconfig)."""

    def __init__(self, kubeconfig=None):
        cfg = client.Configuration()
        config.load_kube_config(config_file=kubeconfig or os.environ.get("KUBECONFIG"), client_configuration=cfg)
        self.api = client.ApiClient(cfg)

    def _send(self, method, path, body=None, query=None, content_type="application/json", timeout=30):
        headers = {"Accept": "application/json", "Content-Type": content_type}
        method, url, headers, body, _ = self.api.param_serialize(
            method=method, resource_path=path, query_params=list((query or {}).items()), header_params=headers,
            body=body, auth_settings=["BearerToken"])
        resp = self.api.call_api(method, url, header_params=headers, body=body, _request_timeout=timeout)
        if not 200 <= resp.status < 300:
            data = resp.read()
            exc = ApiException(status=resp.status, reason=resp.reason)
            exc.body = data.decode("utf-8", "replace") if data else ""
            raise exc
        return resp

    def request(self, method, path, body=None, query=None, content_type="application/json", timeout=30):
        data = self._send(method, path, body, query, content_type, timeout).read()
        return json.loads(data) if data else None

    def get(self, path):
        try:
            return self.request("GET", path)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, path, body):
        return self.request("POST", path, body)

    def replace(self, path, body):
        return self.request("PUT", path, body)

    def merge_patch(self, path, body):
        return self.request("PATCH", path, body, content_type="application/merge-patch+json")

    def delete(self, path):
        try:
            return self.request("DELETE", path)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return None

    def watch(self, path, resource_version, query=None, timeout_seconds=60):
        params = dict(query or {}, watch="true", resourceVersion=resource_version, allowWatchBookmarks="true",
                      timeoutSeconds=str(timeout_seconds))
        resp = self._send("GET", path, query=params, timeout=(10, timeout_seconds + 30)).response
        try:
            for line in iter_resp_lines(resp):
                if line:
                    yield json.loads(line)
        finally:
            resp.release_conn()


def resource_path(group, version, plural, namespace=None, name=None, subresource=None):
    base = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    if namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    if name:
        base += f"/{name}"
    if subresource:
        base += f"/{subresource}"
    return base


class Gone(Exception):
    """The watch's resourceVersion is too old (HTTP 410): relist."""


class Informer:
    """List+watch cache of one resource type; relists on 410 and reconnects after API server restarts."""

    def __init__(self, kube, group, version, plural, on_change, label_selector=None, name=None):
        self.kube = kube
        self.path = resource_path(group, version, plural)
        self.query = {"labelSelector": label_selector} if label_selector else {}
        self.on_change = on_change
        self.name = name or plural
        self.store = {}
        self.lock = threading.Lock()
        self.synced = threading.Event()
        self.available = False
        self._stop = threading.Event()

    def start(self):
        threading.Thread(target=self._run, name=f"informer-{self.name}", daemon=True).start()
        return self

    def stop(self):
        self._stop.set()

    def get(self, namespace, name):
        with self.lock:
            return self.store.get((namespace, name))

    def items(self):
        with self.lock:
            return list(self.store.values())

    def _run(self):
        while not self._stop.is_set():
            try:
                resource_version = self._relist()
                while not self._stop.is_set():
                    resource_version = self._watch(resource_version)
            except Gone:
                LOG.info("%s: resourceVersion expired, relisting", self.name)
            except ApiException as exc:
                if exc.status == 404:  # CRD not installed (yet): the type simply has no objects
                    self.available = False
                    self._replace_all([])
                    self.synced.set()
                    self._stop.wait(5)
                else:
                    LOG.warning("%s: API error %s, retrying", self.name, exc.status)
                    self._stop.wait(1)
            except Exception as exc:  # connection refused while the API server restarts, timeouts
                LOG.debug("%s: watch interrupted (%s), reconnecting", self.name, exc)
                self._stop.wait(1)

    def _relist(self):
        data = self.kube.request("GET", self.path, query=self.query)
        self.available = True
        self._replace_all(data.get("items") or [], data.get("apiVersion"), data.get("kind", "")[:-4])
        self.synced.set()
        return data["metadata"]["resourceVersion"]

    def _replace_all(self, items, api_version=None, kind=None):
        fresh = {}
        for item in items:
            if api_version:
                item.setdefault("apiVersion", api_version)
                item.setdefault("kind", kind)
            fresh[(item["metadata"].get("namespace"), item["metadata"]["name"])] = item
        with self.lock:
            old = self.store
            self.store = fresh
        for key, item in fresh.items():
            prev = old.get(key)
            if prev is None or prev["metadata"].get("resourceVersion") != item["metadata"].get("resourceVersion"):
                self._notify("MODIFIED" if prev else "ADDED", item)
        for key, item in old.items():
            if key not in fresh:
                self._notify("DELETED", item)

    def _watch(self, resource_version):
        for event in self.kube.watch(self.path, resource_version, self.query):
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise Gone()
                raise RuntimeError(obj.get("message", "watch error"))
            resource_version = obj["metadata"]["resourceVersion"]
            if kind == "BOOKMARK":
                continue
            key = (obj["metadata"].get("namespace"), obj["metadata"]["name"])
            with self.lock:
                if kind == "DELETED":
                    self.store.pop(key, None)
                else:
                    self.store[key] = obj
            self._notify(kind, obj)
        return resource_version

    def _notify(self, kind, obj):
        try:
            self.on_change(kind, obj)
        except Exception:  # a handler bug must not kill the watch
            LOG.exception("%s: event handler failed", self.name)


def served_version(kube, group, preferred):
    """The first of ``preferred`` versions the API server serves for ``group`` (None if the group is absent)."""
    data = kube.get(f"/apis/{group}")
    served = [v["version"] for v in (data or {}).get("versions", [])]
    return next((v for v in preferred if v in served), None)


# ============================================================== knative conditions

class Conditions:
    """knative ``LivingConditionSet`` semantics over a status dict (KServe v0.20: Ready = Workloads ∧ Router)."""

    HAPPY = "Ready"
    DEPENDENTS = ("WorkloadsReady", "RouterReady")

    def __init__(self, status):
        self.status = status
        status.setdefault("conditions", [])

    def get(self, ctype):
        return next((c for c in self.status["conditions"] if c["type"] == ctype), None)

    def _severity(self, ctype):
        return "" if ctype == self.HAPPY or ctype in self.DEPENDENTS else "Info"

    def set(self, ctype, status, reason="", message=""):
        cond = {"type": ctype, "status": status}
        if reason:
            cond["reason"] = reason
        if message:
            cond["message"] = message
        if self._severity(ctype):
            cond["severity"] = self._severity(ctype)
        existing = self.get(ctype)
        if existing is not None:
            same = {k: v for k, v in existing.items() if k != "lastTransitionTime"}
            if same == cond:
                return
        cond["lastTransitionTime"] = now_rfc3339()
        others = [c for c in self.status["conditions"] if c["type"] != ctype]
        self.status["conditions"] = sorted(others + [cond], key=lambda c: c["type"])

    def clear(self, ctype):
        self.status["conditions"] = [c for c in self.status["conditions"] if c["type"] != ctype]

    def initialize(self):
        happy = self.get(self.HAPPY)
        if happy is None:
            self.set(self.HAPPY, "Unknown")
            happy = self.get(self.HAPPY)
        for dep in self.DEPENDENTS:
            if self.get(dep) is None:
                self.set(dep, "True" if happy["status"] == "True" else "Unknown")

    def mark_true(self, ctype):
        self.set(ctype, "True")
        if all((self.get(d) or {}).get("status") == "True" for d in self.DEPENDENTS):
            self.set(self.HAPPY, "True")

    def mark_false(self, ctype, reason, message=""):
        """The happy condition copies a False dependent; the last one marked wins (knative MarkFalse)."""
        self.set(ctype, "False", reason, message)
        if ctype in self.DEPENDENTS:
            self.set(self.HAPPY, "False", reason, message)

    def mark_unknown(self, ctype, reason, message=""):
        self.set(ctype, "Unknown", reason, message)
        if any((self.get(d) or {}).get("status") == "False" for d in self.DEPENDENTS):
            # False trumps Unknown (knative makes sure the happy condition is False too)
            if (self.get(self.HAPPY) or {}).get("status") != "False":
                self.set(self.HAPPY, "False", reason, message)
            return
        if ctype in self.DEPENDENTS:
            self.set(self.HAPPY, "Unknown", reason, message)

    def roll_up(self, target, subs):
        """``DetermineWorkloadReadiness`` / ``DetermineRouterReadiness``: first False sub-condition wins."""
        for sub in subs:
            cond = self.get(sub)
            if cond is not None and cond["status"] == "False":
                self.mark_false(target, cond.get("reason", ""), cond.get("message", ""))
                return
        self.mark_true(target)


# ============================================================== the controller

def owner_reference(llmisvc):
    return {"apiVersion": f"{GROUP}/v1alpha2", "kind": "LLMInferenceService", "name": llmisvc["metadata"]["name"],
            "uid": llmisvc["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def component_labels(name, component):
    return {"app.kubernetes.io/component": component, "app.kubernetes.io/name": name, **PART_OF}


def is_subset(expected, current):
    """``equality.Semantic.DeepDerivative``: every field set in ``expected`` equals the one in ``current``."""
    if expected in (None, "", [], {}):
        return True
    if isinstance(expected, dict):
        return isinstance(current, dict) and all(
            is_subset(v, current.get(k)) for k, v in expected.items() if v not in (None, "", [], {}))
    if isinstance(expected, list):
        return isinstance(current, list) and len(expected) == len(current) and all(
            is_subset(e, c) for e, c in zip(expected, current, strict=False))
    if isinstance(expected, (int, float)) and isinstance(current, str):
        return str(expected) == current
    return expected == current


class ReconcileError(Exception):
    """A reconcile step failed; KServe emits Warning ``Error`` "Reconciliation failed: ..."."""


class Controller:
    def __init__(self, kube, state_dir=None):
        self.kube = kube
        self.state_dir = state_dir
        self.queue = queue.Queue()
        self.pending = set()
        self.pending_lock = threading.Lock()
        self.failures = {}
        self.version = None
        self.server_minor = 99
        self.informers = {}
        self.recent_events = {}
        self.global_config = {}

    # ---------------------------------------------------------------- wiring

    def start(self):
        while self.version is None:
            try:
                self.version = served_version(self.kube, GROUP, ("v1alpha2", "v1alpha1"))
            except Exception as exc:  # API server not up yet
                LOG.info("waiting for the API server: %s", exc)
            if self.version is None:
                time.sleep(2)
        LOG.info("reading and writing LLMInferenceServices through %s/%s", GROUP, self.version)
        minor = self.kube.request("GET", "/version")["minor"]
        self.server_minor = int("".join(ch for ch in minor if ch.isdigit()) or 99)
        selector = "app.kubernetes.io/part-of=llminferenceservice"
        specs = {
            "llmisvc": (GROUP, self.version, "llminferenceservices", self._on_llmisvc, None),
            "configs": (GROUP, self.version, "llminferenceserviceconfigs", self._on_global, None),
            "deployments": ("apps", "v1", "deployments", self._on_child, selector),
            "services": ("", "v1", "services", self._on_child, selector),
            "httproutes": (*GATEWAY_API, "httproutes", self._on_child, None),
            "gateways": (*GATEWAY_API, "gateways", self._on_global, None),
            "pools": (*POOL_V1, "inferencepools", self._on_child, None),
            "pools_v1alpha2": (*POOL_V1ALPHA2, "inferencepools", self._on_child, None),
        }
        for key, (group, version, plural, handler, sel) in specs.items():
            self.informers[key] = Informer(self.kube, group, version, plural, handler, sel, name=key).start()
        for informer in self.informers.values():
            informer.synced.wait()
        threading.Thread(target=self._resync_loop, daemon=True).start()
        if self.state_dir:
            os.makedirs(os.path.join(self.state_dir, "ready"), exist_ok=True)
            with open(os.path.join(self.state_dir, "ready", "kserve_controller"), "w") as handle:
                handle.write(str(os.getpid()))
        LOG.info("caches synced, serving")

    def run_forever(self):
        while True:
            key = self.queue.get()
            with self.pending_lock:
                self.pending.discard(key)
            self._process(key)

    def enqueue(self, namespace, name, delay=0):
        if delay:
            threading.Timer(delay, self.enqueue, args=(namespace, name)).start()
            return
        with self.pending_lock:
            if (namespace, name) in self.pending:
                return
            self.pending.add((namespace, name))
        self.queue.put((namespace, name))

    def _on_llmisvc(self, _kind, obj):
        self.enqueue(obj["metadata"]["namespace"], obj["metadata"]["name"])

    def _on_global(self, _kind, _obj):
        for svc in self.informers.get("llmisvc").items() if "llmisvc" in self.informers else []:
            self._on_llmisvc("MODIFIED", svc)

    def _on_child(self, _kind, obj):
        meta = obj["metadata"]
        for ref in meta.get("ownerReferences") or []:
            if ref.get("kind") == "LLMInferenceService":
                self.enqueue(meta["namespace"], ref["name"])

    def _resync_loop(self):
        while True:
            time.sleep(10)
            self._on_global("RESYNC", None)

    def _process(self, key):
        try:
            self.reconcile(*key)
            self.failures.pop(key, None)
        except Exception as exc:
            count = self.failures.get(key, 0) + 1
            self.failures[key] = count
            LOG.warning("reconcile %s/%s failed (%s), retry #%d", key[0], key[1], exc, count)
            self.enqueue(*key, delay=min(2 ** count * 0.25, 30))

    # ---------------------------------------------------------------- paths and writes

    def llmisvc_path(self, namespace, name=None, subresource=None):
        return resource_path(GROUP, self.version, "llminferenceservices", namespace, name, subresource)

    def event(self, llmisvc, event_type, reason, message):
        """Record an Event on the llmisvc; repeats within 10 minutes bump ``count`` as client-go does."""
        meta = llmisvc["metadata"]
        stamp = now_rfc3339()
        key = (meta["uid"], event_type, reason, message)
        previous = self.recent_events.get(key)
        events = resource_path("", "v1", "events", meta["namespace"])
        try:
            if previous and time.monotonic() - previous[2] < 600:
                name, count = previous[0], previous[1] + 1
                self.kube.merge_patch(f"{events}/{name}", {"count": count, "lastTimestamp": stamp})
                self.recent_events[key] = (name, count, previous[2])
                return
            name = f"{meta['name']}.{time.time_ns():x}"
            body = {
                "apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": meta["namespace"]},
                "involvedObject": {"apiVersion": f"{GROUP}/v1alpha2", "kind": "LLMInferenceService",
                                   "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
                                   "resourceVersion": meta.get("resourceVersion")},
                "reason": reason, "message": message, "type": event_type, "count": 1,
                "firstTimestamp": stamp, "lastTimestamp": stamp,
                "source": {"component": "LLMInferenceServiceController"},
            }
            self.kube.create(events, body)
            self.recent_events[key] = (name, 1, time.monotonic())
        except Exception as exc:  # events are best effort, as in client-go's recorder
            self.recent_events.pop(key, None)
            LOG.debug("event not recorded: %s", exc)

    def apply_child(self, llmisvc, group, version, plural, expected, type_name, preserve_replicas=False):
        """KServe's ``Reconcile``: create when missing, update when the expected fields differ."""
        meta = expected["metadata"]
        path = resource_path(group, version, plural, meta["namespace"])
        current = self.kube.get(f"{path}/{meta['name']}")
        label = f"{type_name} {meta['namespace']}/{meta['name']}"
        if current is None:
            created = self.kube.create(path, expected)
            self.event(llmisvc, "Normal", "Created", f"Created {label}")
            return created
        owners = current["metadata"].get("ownerReferences") or []
        if not any(o.get("controller") and o.get("uid") == llmisvc["metadata"]["uid"] for o in owners):
            raise ReconcileError(f"failed to reconcile {label}: it exists and is not owned by "
                                 f"LLMInferenceService {llmisvc['metadata']['name']}")
        desired = copy.deepcopy(expected)
        if preserve_replicas and desired["spec"].get("replicas") is None:
            desired["spec"]["replicas"] = current["spec"].get("replicas")
        if is_subset(desired.get("spec"), current.get("spec")) and is_subset(
                meta.get("labels"), current["metadata"].get("labels")) and is_subset(
                meta.get("annotations"), current["metadata"].get("annotations")):
            return current
        updated = copy.deepcopy(current)
        updated["spec"] = desired["spec"]
        updated["metadata"]["labels"] = {**(current["metadata"].get("labels") or {}), **(meta.get("labels") or {})}
        if meta.get("annotations"):
            updated["metadata"]["annotations"] = {**(current["metadata"].get("annotations") or {}),
                                                  **meta["annotations"]}
        result = self.kube.replace(f"{path}/{meta['name']}", updated)
        self.event(llmisvc, "Normal", "Updated", f"Updated {label}")
        return result

    def delete_child(self, llmisvc, group, version, plural, namespace, name, type_name):
        path = resource_path(group, version, plural, namespace, name)
        current = self.kube.get(path)
        if current is None:
            return
        owners = current["metadata"].get("ownerReferences") or []
        if any(o.get("uid") == llmisvc["metadata"]["uid"] for o in owners):
            self.kube.delete(path)
            self.event(llmisvc, "Normal", "Deleted", f"Deleted {type_name} {namespace}/{name}")

    # ---------------------------------------------------------------- reconcile

    def reconcile(self, namespace, name):
        original = self.kube.get(self.llmisvc_path(namespace, name))
        if original is None:
            return
        meta = original["metadata"]
        if meta.get("deletionTimestamp"):
            if FINALIZER in (meta.get("finalizers") or []):
                finalizers = [f for f in meta["finalizers"] if f != FINALIZER]
                self.kube.merge_patch(self.llmisvc_path(namespace, name),
                                      {"metadata": {"finalizers": finalizers,
                                                    "resourceVersion": meta["resourceVersion"]}})
            return
        if FINALIZER not in (meta.get("finalizers") or []):
            original = self.kube.merge_patch(self.llmisvc_path(namespace, name), {"metadata": {
                "finalizers": (meta.get("finalizers") or []) + [FINALIZER],
                "resourceVersion": meta["resourceVersion"]}})
        svc = copy.deepcopy(original)
        status = svc.setdefault("status", {})
        conds = Conditions(status)
        conds.initialize()
        if status.get("observedGeneration") != svc["metadata"].get("generation"):
            conds.set("Ready", "Unknown", "NewObservedGenFailure", "unsuccessfully observed a new generation")
        error = None
        try:
            self._reconcile(svc, conds)
        except ApiException as exc:
            error = f"{exc.status} {exc.reason}: {_api_message(exc)}"
        except ReconcileError as exc:
            error = str(exc)
        status["observedGeneration"] = svc["metadata"].get("generation")
        _restore_transition_times(status, original.get("status"))
        if error:
            self.event(original, "Warning", "Error", f"Reconciliation failed: {error}")
        self.update_status(original, status)
        if error:
            raise ReconcileError(error)

    def update_status(self, original, status):
        path = self.llmisvc_path(original["metadata"]["namespace"], original["metadata"]["name"], "status")
        latest = original
        for _attempt in range(5):
            was_ready = _ready_status(latest.get("status")) == "True"
            if latest.get("status") == status:
                return
            body = copy.deepcopy(latest)
            body["status"] = status
            try:
                self.kube.replace(path, body)
            except ApiException as exc:
                if exc.status == 409:
                    latest = self.kube.get(self.llmisvc_path(original["metadata"]["namespace"],
                                                             original["metadata"]["name"]))
                    if latest is None:
                        return
                    continue
                self.event(original, "Warning", "UpdateFailed",
                           f"Failed to update status for LLMInferenceService {go_quote(original['metadata']['name'])}:"
                           f" {exc.reason}")
                raise
            now_ready = _ready_status(status)
            name = original["metadata"]["name"]
            if was_ready and now_ready == "False":
                failing = ", ".join(c["type"] for c in status["conditions"]
                                    if c["type"] != "Ready" and c["status"] == "False")
                self.event(original, "Warning", "LLMInferenceServiceNotReady",
                           f"LLMInferenceService [{name}] is no longer Ready because of: {failing}")
            elif not was_ready and now_ready == "True":
                self.event(original, "Normal", "LLMInferenceServiceReady", f"LLMInferenceService [{name}] is Ready")
            return

    def _reconcile(self, svc, conds):
        configs, missing = self._lookup_configs(svc)
        status = svc["status"]
        status["annotations"] = {f"serving.kserve.io/{n[len(render.PRESET_PREFIX):]}": n
                                 for n in render.well_known_presets(svc.get("spec") or {})}
        if missing:
            conds.mark_false("PresetsCombined", "ConfigNotFound",
                             f"failed to get LLMInferenceServiceConfig {go_quote(missing)} from namespaces "
                             f"[{svc['metadata']['namespace']} {SYSTEM_NAMESPACE}]: "
                             f"LLMInferenceServiceConfig.{GROUP} {go_quote(missing)} not found")
            return
        try:
            self.global_config = self._global_config()
            spec = render.combine_spec(svc, [c for c, _ in configs], self.global_config)
        except render.RenderError as exc:
            conds.mark_false("PresetsCombined", "CombineBaseError", str(exc))
            raise ReconcileError(f"failed to combine base configurations: {exc}") from exc
        conds.mark_true("PresetsCombined")
        if self.version == "v1alpha2":
            status["appliedConfigs"] = [
                {"name": c["metadata"]["name"], "namespace": c["metadata"]["namespace"],
                 "source": "UserRef" if source == "ref" else "Preset"} for c, source in configs]
        merged = copy.deepcopy(svc)
        merged["spec"] = spec
        merged["status"] = status  # children and routing status are written onto the live status
        if (svc["metadata"].get("annotations") or {}).get(STOP_ANNOTATION) == "true":
            self.stop(merged, conds)
            return
        try:
            self.reconcile_workload(merged, conds)
        finally:
            conds.roll_up("WorkloadsReady", ("MainWorkloadReady", "WorkerWorkloadReady", "PrefillWorkloadReady",
                                             "PrefillWorkerWorkloadReady", "ScalingReady", "PrefillScalingReady"))
        try:
            self.reconcile_router(merged, conds)
        finally:
            conds.roll_up("RouterReady", ("GatewaysReady", "HTTPRoutesReady", "InferencePoolReady",
                                          "SchedulerWorkloadReady", "TokenizerReady"))
        self._observe_workloads(merged, status)

    def stop(self, svc, conds):
        """``serving.kserve.io/stop: "true"``: delete workloads and routes, every sub-condition ``Stopped``."""
        name, namespace = svc["metadata"]["name"], svc["metadata"]["namespace"]
        for group, version, plural, suffix, type_name in (
                ("apps", "v1", "deployments", "-kserve", "v1.Deployment"),
                ("apps", "v1", "deployments", "-kserve-router-scheduler", "v1.Deployment"),
                (*GATEWAY_API, "httproutes", "-kserve-route", "v1.HTTPRoute")):
            self.delete_child(svc, group, version, plural, namespace, render.child_name(name, suffix), type_name)
        router = svc["spec"].get("router") or {}
        stopped = ["MainWorkloadReady", "HTTPRoutesReady"]
        if ((router.get("gateway") or {}).get("refs")):
            stopped.append("GatewaysReady")
        if router.get("scheduler") is not None:
            stopped += ["InferencePoolReady", "SchedulerWorkloadReady"]
        for ctype in stopped:
            conds.mark_false(ctype, "Stopped", "Service is stopped")
        svc["status"].pop("url", None)
        svc["status"].pop("addresses", None)
        conds.roll_up("WorkloadsReady", ("MainWorkloadReady",))
        conds.roll_up("RouterReady", ("GatewaysReady", "HTTPRoutesReady", "InferencePoolReady",
                                      "SchedulerWorkloadReady"))

    def _lookup_configs(self, svc):
        namespace = svc["metadata"]["namespace"]
        well_known = set(render.well_known_presets(svc.get("spec") or {}))
        found = []
        for name in render.config_refs(svc):
            cfg = self.informers["configs"].get(namespace, name) or self.informers["configs"].get(
                SYSTEM_NAMESPACE, name)
            if cfg is None:
                return found, name
            found.append((cfg, "preset" if name in well_known else "ref"))
        return found, None

    def _global_config(self):
        cm = self.kube.get(resource_path("", "v1", "configmaps", SYSTEM_NAMESPACE, "inferenceservice-config"))
        out = {}
        try:
            ingress = json.loads(((cm or {}).get("data") or {}).get("ingress") or "{}")
        except ValueError:
            ingress = {}
        gateway = ingress.get("kserveIngressGateway", "")
        if "/" in gateway:
            out["IngressGatewayNamespace"], out["IngressGatewayName"] = gateway.split("/", 1)
        if "enableLLMInferenceServiceTLS" in ingress:
            out["EnableTLS"] = bool(ingress["enableLLMInferenceServiceTLS"])
        return out

    # ---------------------------------------------------------------- workload

    def reconcile_workload(self, svc, conds):
        name, namespace = svc["metadata"]["name"], svc["metadata"]["namespace"]
        spec = svc["spec"]
        if _mounts_secret(spec, render.child_name(name, "-kserve-self-signed-certs")):
            try:
                self._reconcile_certs(svc)
            except ApiException as exc:
                conds.mark_false("MainWorkloadReady", "ReconcileCertsError", _api_message(exc))
                raise
        conds.clear("WorkerWorkloadReady")
        conds.clear("PrefillWorkloadReady")
        conds.clear("ScalingReady")
        conds.clear("PrefillScalingReady")
        if spec.get("worker") is not None:
            conds.clear("MainWorkloadReady")
            conds.mark_false("WorkerWorkloadReady", "ReconcileMultiNodeWorkloadError",
                             "no matches for kind \"LeaderWorkerSet\" in version \"leaderworkerset.x-k8s.io/v1\"")
            raise ReconcileError("failed to reconcile workload: failed to reconcile multi node workload: no matches"
                                 " for kind \"LeaderWorkerSet\" in version \"leaderworkerset.x-k8s.io/v1\"")
        try:
            deployment = self.apply_child(svc, "apps", "v1", "deployments", self.expected_main_deployment(svc),
                                          "v1.Deployment", preserve_replicas=True)
        except ApiException as exc:
            conds.mark_false("MainWorkloadReady", "ReconcileSingleNodeWorkloadError", _api_message(exc))
            raise
        self._propagate_deployment_status(deployment, conds, "MainWorkloadReady")
        try:
            self.apply_child(svc, "", "v1", "services", self.expected_workload_service(svc), "v1.Service")
        except ApiException as exc:
            conds.mark_false("MainWorkloadReady", "ReconcileWorkloadServiceError", _api_message(exc))
            raise
        LOG.debug("workload of %s/%s reconciled", namespace, name)

    def _reconcile_certs(self, svc):
        name, namespace = svc["metadata"]["name"], svc["metadata"]["namespace"]
        secret_name = render.child_name(name, "-kserve-self-signed-certs")
        path = resource_path("", "v1", "secrets", namespace)
        if self.kube.get(f"{path}/{secret_name}") is not None:
            return
        import base64

        import trustme
        authority = trustme.CA(organization_name="KServe")
        hosts = [f"{render.child_name(name, '-kserve-workload-svc')}.{namespace}.svc.cluster.local",
                 f"{render.child_name(name, '-epp-service')}.{namespace}.svc.cluster.local", "localhost"]
        leaf = authority.issue_cert(*hosts)
        body = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": secret_name, "namespace": namespace,
                             "labels": component_labels(name, COMPONENT_WORKLOAD),
                             "ownerReferences": [owner_reference(svc)]},
                "data": {"tls.crt": base64.b64encode(leaf.cert_chain_pems[0].bytes()).decode(),
                         "tls.key": base64.b64encode(leaf.private_key_pem.bytes()).decode()}}
        self.kube.create(path, body)
        self.event(svc, "Normal", "Created", f"Created v1.Secret {namespace}/{secret_name}")

    def workload_labels(self, svc):
        name = svc["metadata"]["name"]
        role = "decode" if svc["spec"].get("prefill") else "both"
        return {**component_labels(name, COMPONENT_WORKLOAD), "kserve.io/component": "workload",
                "llm-d.ai/role": role}

    def expected_main_deployment(self, svc):
        name, namespace = svc["metadata"]["name"], svc["metadata"]["namespace"]
        spec = svc["spec"]
        labels = self.workload_labels(svc)
        pod_labels = {**labels, **(spec.get("labels") or {})}
        annotations = {k: v for k, v in (svc["metadata"].get("annotations") or {}).items()
                       if k.startswith("prometheus.io/")}
        annotations.update(spec.get("annotations") or {})
        pod_spec = copy.deepcopy(spec.get("template") or {"containers": []})
        attach_model_artifacts(pod_spec, spec, self.storage_credential_envs(svc))
        return {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": render.child_name(name, "-kserve"), "namespace": namespace, "labels": labels,
                         "ownerReferences": [owner_reference(svc)]},
            "spec": {"replicas": spec.get("replicas"), "selector": {"matchLabels": dict(labels)},
                     "progressDeadlineSeconds": progress_deadline_seconds(),
                     "template": {"metadata": {"labels": pod_labels, "annotations": annotations},
                                  "spec": pod_spec}},
        }

    def storage_credential_envs(self, svc):
        """Env the storage initializer gets from Secrets, like KServe v0.20 for hf:// (and other) URIs.

        kserve/kserve v0.20.0 pkg/credentials/service_account_credentials.go,
        CreateSecretVolumeAndEnvFromServiceAccount: the Secret named by the llmisvc annotation
        ``serving.kserve.io/storageSecretName`` (the default storageSecretNameAnnotation) takes precedence;
        otherwise every Secret in ``secrets`` of the ServiceAccount (``template.serviceAccountName``, else
        ``default``; workload_single_node.go / workload_storage.go). A Secret with key ``HF_TOKEN`` gives
        ``HF_TOKEN`` from a secretKeyRef (pkg/credentials/hf/hf_secret.go). A missing annotated Secret fails the
        reconcile like KServe's (``secrets "<name>" not found``).
        """
        if self.kube is None:  # rendering without an API server (unit tests): no Secret to read
            return []
        namespace = svc["metadata"]["namespace"]
        names = []
        annotated = (svc["metadata"].get("annotations") or {}).get(STORAGE_SECRET_ANNOTATION)
        if annotated:
            names = [annotated]
        else:
            sa_name = (svc["spec"].get("template") or {}).get("serviceAccountName") or "default"
            account = self.kube.get(resource_path("", "v1", "serviceaccounts", namespace, sa_name)) or {}
            names = [ref.get("name") for ref in account.get("secrets") or [] if ref.get("name")]
        envs = []
        for secret_name in names:
            secret = self.kube.get(resource_path("", "v1", "secrets", namespace, secret_name))
            if secret is None:
                exc = ApiException(status=404, reason="Not Found")
                exc.body = json.dumps({"message": f"failed to attach model artifacts to main deployment: secrets "
                                                  f"\"{secret_name}\" not found"})
                raise exc
            if "HF_TOKEN" in (secret.get("data") or {}):
                envs.append({"name": "HF_TOKEN",
                             "valueFrom": {"secretKeyRef": {"name": secret_name, "key": "HF_TOKEN"}}})
        return envs

    def expected_workload_service(self, svc):
        name, namespace = svc["metadata"]["name"], svc["metadata"]["namespace"]
        tls = self.global_config.get("EnableTLS", False)
        scheme = "https" if tls else "http"
        return {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": render.child_name(name, "-kserve-workload-svc"), "namespace": namespace,
                         "labels": component_labels(name, COMPONENT_WORKLOAD),
                         "ownerReferences": [owner_reference(svc)]},
            "spec": {"type": "ClusterIP", "selector": render.workload_selector(name),
                     "ports": [{"name": scheme, "port": 8000, "targetPort": 8000, "protocol": "TCP",
                                "appProtocol": scheme}]},
        }

    @staticmethod
    def _propagate_deployment_status(deployment, conds, ctype):
        """``propagateWorkloadDeploymentStatus``: the Deployment's Available condition, verbatim."""
        for cond in (deployment.get("status") or {}).get("conditions") or []:
            if cond["type"] == "Progressing" and cond["status"] == "False":
                conds.mark_false(ctype, cond.get("reason", ""), cond.get("message", ""))
            if cond["type"] == "Available":
                if cond["status"] == "True":
                    conds.mark_true(ctype)
                else:
                    conds.mark_false(ctype, cond.get("reason", ""), cond.get("message", ""))
                return
        conds.mark_false(ctype, "Progressing", "")

    # ---------------------------------------------------------------- router

    def reconcile_router(self, svc, conds):
        router = svc["spec"].get("router") or {}
        if not self._validate_gateway_refs(svc, conds):
            return
        self.reconcile_scheduler(svc, conds)
        routes = self.reconcile_route(svc, conds)
        self._evaluate_pool(svc, conds, routes)
        self._evaluate_gateways(svc, conds)
        self._evaluate_route(svc, conds, routes)
        if router.get("route") is None:
            workload = render.child_name(svc["metadata"]["name"], "-kserve-workload-svc")
            url = f"http://{workload}.{svc['metadata']['namespace']}.svc.cluster.local"
            svc["status"]["addresses"] = [{"url": url}]
            svc["status"]["url"] = url

    def _validate_gateway_refs(self, svc, conds):
        """``validateRouterReferences``: referenced Gateways must exist (``RefsInvalid`` otherwise)."""
        router = svc["spec"].get("router") or {}
        for ref in (router.get("gateway") or {}).get("refs") or []:
            namespace = ref.get("namespace") or svc["metadata"]["namespace"]
            if self.informers["gateways"].get(namespace, ref["name"]) is None:
                conds.mark_false("GatewaysReady", "RefsInvalid", f"Gateway {namespace}/{ref['name']} does not exist")
                return False
        route_spec = ((router.get("route") or {}).get("http") or {}).get("spec") or {}
        for parent in route_spec.get("parentRefs") or []:
            namespace = parent.get("namespace") or svc["metadata"]["namespace"]
            if parent.get("kind", "Gateway") == "Gateway" and self.informers["gateways"].get(
                    namespace, parent["name"]) is None:
                conds.mark_false("HTTPRoutesReady", "RefsInvalid",
                                 f"Managed HTTPRoute references non-existent Gateway {namespace}/{parent['name']}")
                return False
        return True

    def reconcile_scheduler(self, svc, conds):
        name, namespace = svc["metadata"]["name"], svc["metadata"]["namespace"]
        scheduler = (svc["spec"].get("router") or {}).get("scheduler")
        if scheduler is None:
            conds.clear("SchedulerWorkloadReady")
            conds.clear("InferencePoolReady")
            for group, version in (POOL_V1, POOL_V1ALPHA2):
                self.delete_child(svc, group, version, "inferencepools", namespace,
                                  render.child_name(name, "-inference-pool"), f"{version}.InferencePool")
            self.delete_child(svc, "apps", "v1", "deployments", namespace,
                              render.child_name(name, "-kserve-router-scheduler"), "v1.Deployment")
            self.delete_child(svc, "", "v1", "services", namespace, render.child_name(name, "-epp-service"),
                              "v1.Service")
            return
        if ((scheduler.get("pool") or {}).get("ref") or {}).get("name"):
            conds.clear("SchedulerWorkloadReady")
            return
        try:
            self.apply_child(svc, "", "v1", "serviceaccounts", self.expected_epp_service_account(svc),
                             "v1.ServiceAccount")
            deployment = self.apply_child(svc, "apps", "v1", "deployments", self.expected_scheduler_deployment(svc),
                                          "v1.Deployment")
            self.apply_child(svc, "", "v1", "services", self.expected_epp_service(svc), "v1.Service")
            # Both pools under one name, v1alpha2 only when its CRD is installed: kserve/kserve v0.20.0
            # pkg/controller/v1alpha2/llmisvc/scheduler.go reconcileSchedulerInferencePool / IsCrdAvailable.
            self.apply_child(svc, *POOL_V1, "inferencepools", self.expected_pool_v1(svc), "v1.InferencePool")
            if self.informers["pools_v1alpha2"].available:
                self.apply_child(svc, *POOL_V1ALPHA2, "inferencepools", self.expected_pool_v1alpha2(svc),
                                 "v1alpha2.InferencePool")
        except ApiException as exc:
            conds.mark_false("SchedulerWorkloadReady", "SchedulerReconcileError",
                             f"Failed to reconcile scheduler: {_api_message(exc)}")
            raise ReconcileError(f"failed to reconcile networking: failed to reconcile scheduler: "
                                 f"{_api_message(exc)}") from exc
        status = deployment.get("status") or {}
        if (status.get("availableReplicas") or 0) > 0:
            conds.mark_true("SchedulerWorkloadReady")
            return
        by_type = {c["type"]: c for c in status.get("conditions") or []}
        progressing, available = by_type.get("Progressing"), by_type.get("Available")
        if progressing and progressing["status"] == "False":
            conds.mark_false("SchedulerWorkloadReady", progressing.get("reason", ""), progressing.get("message", ""))
        elif available:
            conds.mark_false("SchedulerWorkloadReady", available.get("reason", ""), available.get("message", ""))
        else:
            conds.mark_false("SchedulerWorkloadReady", "Progressing", "Deployment rollout in progress")

    def scheduler_labels(self, svc):
        return component_labels(svc["metadata"]["name"], COMPONENT_SCHEDULER)

    def expected_epp_service_account(self, svc):
        name, namespace = svc["metadata"]["name"], svc["metadata"]["namespace"]
        return {"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": render.child_name(name, "-epp-sa"), "namespace": namespace,
                             "labels": self.scheduler_labels(svc), "ownerReferences": [owner_reference(svc)]}}

    def expected_scheduler_deployment(self, svc):
        name, namespace = svc["metadata"]["name"], svc["metadata"]["namespace"]
        scheduler = svc["spec"]["router"]["scheduler"]
        labels = self.scheduler_labels(svc)
        pod_spec = copy.deepcopy(scheduler.get("template") or {"containers": []})
        pod_spec.setdefault("serviceAccountName", render.child_name(name, "-epp-sa"))
        for container in pod_spec.get("containers") or []:
            if "command" in container:
                container["command"] = [c for c in container["command"] if c != ""]
            if container.get("name") == "main":
                container["args"] = list(container.get("args") or []) + self.scheduler_config_args(svc, container)
            if self.server_minor < 24:
                downgrade_grpc_probes(container)
        return {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": render.child_name(name, "-kserve-router-scheduler"), "namespace": namespace,
                         "labels": labels, "ownerReferences": [owner_reference(svc)]},
            "spec": {"replicas": scheduler.get("replicas") or 1, "selector": {"matchLabels": dict(labels)},
                     "progressDeadlineSeconds": progress_deadline_seconds(),
                     "template": {"metadata": {"labels": {**labels, **(scheduler.get("labels") or {})},
                                               "annotations": dict(scheduler.get("annotations") or {})},
                                  "spec": pod_spec}},
        }

    def scheduler_config_args(self, svc, main):
        """``preserveSchedulerConfig`` (kserve/kserve v0.20.0 pkg/controller/v1alpha2/llmisvc/scheduler.go).

        Inline ``router.scheduler.config.inline`` wins; a config flag already in the template's args is kept; the
        current Deployment's flag is preserved; else the default EndpointPickerConfig (``schedulerConfigText``).
        """
        inline = ((svc["spec"]["router"]["scheduler"].get("config") or {}).get("inline"))
        if inline is not None:
            return ["--config-text", inline if isinstance(inline, str) else json.dumps(inline)]
        if _config_flag(main.get("args")):
            return []
        current = (self.informers.get("deployments") or {}) and self.informers["deployments"].get(
            svc["metadata"]["namespace"], render.child_name(svc["metadata"]["name"], "-kserve-router-scheduler"))
        for container in ((((current or {}).get("spec") or {}).get("template") or {}).get("spec") or {}).get(
                "containers") or []:
            if container.get("name") == "main" and _config_flag(container.get("args")):
                return _config_flag(container.get("args"))
        return ["--config-text", DEFAULT_SCHEDULER_CONFIG]

    def expected_epp_service(self, svc):
        name, namespace = svc["metadata"]["name"], svc["metadata"]["namespace"]
        scheduler = svc["spec"]["router"]["scheduler"]
        ports = []
        for container in (scheduler.get("template") or {}).get("containers") or []:
            if container.get("name") != "main":
                continue
            for port in container.get("ports") or []:
                entry = {"port": port["containerPort"], "targetPort": port["containerPort"], "protocol": "TCP"}
                if port.get("name"):
                    entry["name"] = port["name"]
                ports.append(entry)
        pool_spec = (scheduler.get("pool") or {}).get("spec") or {}
        service_name = (pool_spec.get("endpointPickerRef") or {}).get("name") or render.child_name(name, "-epp-service")
        return {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": service_name, "namespace": namespace, "labels": self.scheduler_labels(svc),
                             "ownerReferences": [owner_reference(svc)]},
                "spec": {"type": "ClusterIP", "selector": self.scheduler_labels(svc),
                         "ports": ports or [{"name": "grpc", "port": 9002, "targetPort": 9002, "protocol": "TCP"}]}}

    def expected_pool_v1(self, svc):
        name, namespace = svc["metadata"]["name"], svc["metadata"]["namespace"]
        pool_spec = copy.deepcopy((svc["spec"]["router"]["scheduler"].get("pool") or {}).get("spec") or {})
        pool_spec.setdefault("selector", {"matchLabels": render.workload_selector(name)})
        pool_spec.setdefault("targetPorts", [{"number": 8000}])
        pool_spec.setdefault("endpointPickerRef", {"kind": "Service", "name": render.child_name(name, "-epp-service"),
                                                   "port": {"number": 9002}, "failureMode": "FailOpen"})
        return {"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
                "metadata": {"name": render.child_name(name, "-inference-pool"), "namespace": namespace,
                             "labels": self.scheduler_labels(svc), "ownerReferences": [owner_reference(svc)]},
                "spec": pool_spec}

    def expected_pool_v1alpha2(self, svc):
        v1 = self.expected_pool_v1(svc)
        picker = v1["spec"]["endpointPickerRef"]
        spec = {"selector": dict(v1["spec"]["selector"].get("matchLabels") or {}),
                "targetPortNumber": v1["spec"]["targetPorts"][0]["number"],
                "extensionRef": {"kind": "Service", "name": picker["name"],
                                 "portNumber": (picker.get("port") or {}).get("number", 9002),
                                 "failureMode": picker.get("failureMode", "FailOpen")}}
        return {"apiVersion": "inference.networking.x-k8s.io/v1alpha2", "kind": "InferencePool",
                "metadata": dict(v1["metadata"]), "spec": spec}

    # ---------------------------------------------------------------- HTTPRoute

    def reconcile_route(self, svc, conds):
        name, namespace = svc["metadata"]["name"], svc["metadata"]["namespace"]
        route = (svc["spec"].get("router") or {}).get("route")
        route_name = render.child_name(name, "-kserve-route")
        if route is None or (route.get("http") or {}).get("refs"):
            self.delete_child(svc, *GATEWAY_API, "httproutes", namespace, route_name, "v1.HTTPRoute")
            if route is None:
                conds.clear("HTTPRoutesReady")
                return []
            # bring-your-own routes: not modified, but their status and URLs count
            referenced = [self.informers["httproutes"].get(namespace, ref["name"]) for ref in route["http"]["refs"]]
            referenced = [r for r in referenced if r is not None]
            self._update_routing_status(svc, referenced)
            return referenced
        expected = self.expected_route(svc)
        try:
            current = self.apply_child(svc, *GATEWAY_API, "httproutes", expected, "v1.HTTPRoute")
        except ApiException as exc:
            conds.mark_false("HTTPRoutesReady", "HTTPRouteReconcileError",
                             f"Failed to reconcile HTTPRoute: {_api_message(exc)}")
            raise ReconcileError(f"failed to reconcile networking: failed to reconcile HTTP routes: "
                                 f"{_api_message(exc)}") from exc
        self._update_routing_status(svc, [current])
        return [current]

    def expected_route(self, svc):
        name, namespace = svc["metadata"]["name"], svc["metadata"]["namespace"]
        route_spec = copy.deepcopy(((svc["spec"]["router"].get("route") or {}).get("http") or {}).get("spec") or {})
        expected = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                    "metadata": {"name": render.child_name(name, "-kserve-route"), "namespace": namespace,
                                 "labels": component_labels(name, COMPONENT_ROUTER),
                                 "ownerReferences": [owner_reference(svc)]},
                    "spec": route_spec}
        scheduler = svc["spec"]["router"].get("scheduler")
        if scheduler is None or ((scheduler.get("pool") or {}).get("ref") or {}).get("name"):
            return expected
        current = self.informers["httproutes"].get(namespace, expected["metadata"]["name"])
        migrated = _route_migrated(current)
        group = POOL_V1[0] if migrated else POOL_V1ALPHA2[0]
        pool_name = render.child_name(name, "-inference-pool")
        for rule in route_spec.get("rules") or []:
            for backend in rule.get("backendRefs") or []:
                if backend.get("kind") == "InferencePool" and backend.get("name") == pool_name:
                    backend["group"] = group
        if migrated:
            expected["metadata"]["annotations"] = {MIGRATED_ANNOTATION: "v1"}
        return expected

    def _update_routing_status(self, svc, routes):
        """``updateRoutingStatus``: URLs from the parent Gateways' addresses, listener ports and route paths."""
        urls = []
        for route in routes:
            urls += self._route_urls(route)
        urls = sorted(set(urls))
        svc["status"]["url"] = urls[0] if urls else None
        svc["status"]["addresses"] = [{"name": "gateway-external", "url": url} for url in urls]
        if not urls:
            svc["status"].pop("url", None)

    def _route_urls(self, route):
        urls = []
        path = _route_base_path(route)
        for parent in (route.get("spec") or {}).get("parentRefs") or []:
            gateway = self.informers["gateways"].get(parent.get("namespace") or route["metadata"]["namespace"],
                                                     parent["name"])
            if gateway is None:
                continue
            addresses = (gateway.get("status") or {}).get("addresses") or []
            for listener in (gateway.get("spec") or {}).get("listeners") or []:
                if parent.get("sectionName") and listener["name"] != parent["sectionName"]:
                    continue
                scheme = "https" if listener.get("protocol") == "HTTPS" else "http"
                default_port = 443 if scheme == "https" else 80
                port = "" if listener.get("port") == default_port else f":{listener.get('port')}"
                for address in addresses:
                    urls.append(f"{scheme}://{address['value']}{port}{path}")
        return urls

    def _evaluate_route(self, svc, conds, routes):
        """``EvaluateHTTPRouteConditions``: every route Accepted and ResolvedRefs by every parent."""
        router = svc["spec"].get("router") or {}
        if router.get("route") is None:
            conds.clear("HTTPRoutesReady")
            return
        details = []
        for route in routes:
            problem = _route_problem(route)
            if problem is None:
                continue
            meta = route["metadata"]
            if problem is True:
                parents = (route.get("status") or {}).get("parents")
                shown = json.dumps(parents) if parents else "[]v1.RouteParentStatus(nil)"
                details.append(f"{meta['namespace']}/{meta['name']}: "
                               f"v1.HTTPRouteStatus{{RouteStatus:v1.RouteStatus{{Parents:{shown}}}}}")
            else:
                reason, message = go_quote(problem.get("reason", "")), go_quote(problem.get("message", ""))
                details.append(f"{meta['namespace']}/{meta['name']}: {go_quote(problem.get('status'))} "
                               f"(reason {reason}, message {message})")
        if details:
            conds.mark_false("HTTPRoutesReady", "HTTPRoutesNotReady",
                             f"The following HTTPRoutes are not ready: [{' '.join(details)}]")
        else:
            conds.mark_true("HTTPRoutesReady")

    def _evaluate_gateways(self, svc, conds):
        refs = ((svc["spec"].get("router") or {}).get("gateway") or {}).get("refs") or []
        if not refs:
            conds.clear("GatewaysReady")
            return
        not_ready = []
        for ref in refs:
            namespace = ref.get("namespace") or svc["metadata"]["namespace"]
            gateway = self.informers["gateways"].get(namespace, ref["name"]) or {}
            programmed = next((c for c in (gateway.get("status") or {}).get("conditions") or []
                               if c["type"] == "Programmed"), None)
            if not programmed or programmed["status"] != "True":
                not_ready.append(f"{namespace}/{ref['name']}")
        if not_ready:
            conds.mark_false("GatewaysReady", "GatewaysNotReady",
                             f"The following Gateways are not ready: [{' '.join(not_ready)}]")
        else:
            conds.mark_true("GatewaysReady")

    def _evaluate_pool(self, svc, conds, routes):
        router = svc["spec"].get("router") or {}
        scheduler = router.get("scheduler")
        if scheduler is None:
            conds.clear("InferencePoolReady")
            return
        namespace = svc["metadata"]["namespace"]
        pool_name = ((scheduler.get("pool") or {}).get("ref") or {}).get("name") or render.child_name(
            svc["metadata"]["name"], "-inference-pool")
        gateways = sorted({gateway for route in routes for gateway in _route_gateways(route)})
        v1 = self.informers["pools"].get(namespace, pool_name)
        v1alpha2 = self.informers["pools_v1alpha2"].get(namespace, pool_name)
        if (v1 and _pool_ready(v1, "parents", gateways)) or (v1alpha2 and _pool_ready(v1alpha2, "parent", gateways)):
            conds.mark_true("InferencePoolReady")
            return
        pool, parents_key = (v1, "parents") if v1 else (v1alpha2, "parent")
        if pool is None:
            conds.mark_false("InferencePoolReady", "InferencePoolFetchError",
                             f"Inference Pool {namespace}/{pool_name} not found (checked v1 and v1alpha2)")
            return
        parents = (pool.get("status") or {}).get(parents_key) or []
        if not parents:
            conds.mark_false("InferencePoolReady", "WaitingForGateway",
                             f"Inference Pool {namespace}/{pool_name} exists but no Gateway controller has accepted "
                             f"it yet")
            return
        for gateway in gateways:
            if not any(_parent_is(p, gateway) for p in parents):
                conds.mark_false("InferencePoolReady", "WaitingForGateway",
                                 f"Inference Pool {namespace}/{pool_name} is not yet accepted by gateway {gateway[0]}/"
                                 f"{gateway[1]}")
                return
        bad = next((c for p in parents for c in p.get("conditions") or [] if c["status"] != "True"), None)
        if bad:
            conds.mark_false("InferencePoolReady", "InferencePoolNotReady",
                             f"{namespace}/{pool_name}: {bad['type']}={go_quote(bad['status'])} (reason "
                             f"{go_quote(bad.get('reason', ''))}, message {go_quote(bad.get('message', ''))})")
        else:
            conds.mark_false("InferencePoolReady", "InferencePoolNotReady",
                             f"The inference pool {namespace}/{pool_name} is not ready")

    def _observe_workloads(self, svc, status):
        if self.version != "v1alpha2":
            return
        name, namespace = svc["metadata"]["name"], svc["metadata"]["namespace"]
        workloads = {}
        main = self.informers["deployments"].get(namespace, render.child_name(name, "-kserve"))
        if main is not None:
            workloads["primary"] = {"apiGroup": "apps", "kind": "Deployment", "name": main["metadata"]["name"],
                                    "readyReplicas": (main.get("status") or {}).get("readyReplicas") or 0}
            workloads["service"] = {"kind": "Service", "name": render.child_name(name, "-kserve-workload-svc")}
        sched = self.informers["deployments"].get(namespace, render.child_name(name, "-kserve-router-scheduler"))
        if sched is not None and (svc["spec"].get("router") or {}).get("scheduler") is not None:
            workloads["scheduler"] = {"apiGroup": "apps", "kind": "Deployment", "name": sched["metadata"]["name"],
                                      "readyReplicas": (sched.get("status") or {}).get("readyReplicas") or 0}
        if workloads:
            status["workloads"] = workloads
        router_status = {}
        route = (svc["spec"].get("router") or {}).get("route")
        if route is not None:
            gateways = []
            refs = ((svc["spec"]["router"].get("gateway") or {}).get("refs")) or []
            for ref in refs:
                gateways.append({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": ref["name"],
                                 "namespace": ref.get("namespace") or namespace,
                                 "httpRoutes": [{"group": GATEWAY_API[0], "kind": "HTTPRoute",
                                                 "name": render.child_name(name, "-kserve-route"),
                                                 "namespace": namespace}]})
            if gateways:
                router_status["gateways"] = gateways
        scheduler = (svc["spec"].get("router") or {}).get("scheduler")
        if scheduler is not None and not ((scheduler.get("pool") or {}).get("ref") or {}).get("name"):
            router_status["scheduler"] = {"inferencePool": {"group": POOL_V1[0], "kind": "InferencePool",
                                                            "name": render.child_name(name, "-inference-pool")}}
            if self.server_minor >= 25:  # older servers store the core group "" as null and reject it
                router_status["scheduler"]["service"] = {"group": "", "kind": "Service",
                                                         "name": render.child_name(name, "-epp-service")}
        if router_status:
            status["router"] = router_status


# ============================================================== helpers

def attach_model_artifacts(pod_spec, spec, credential_envs=()):
    """Storage-initializer init container (hf://, s3://, gs://, http(s)://) or a PVC mount for pvc://.

    ``credential_envs``: what ``Controller.storage_credential_envs`` found for the storage initializer.
    """
    uri = (spec.get("model") or {}).get("uri") or ""
    main = next((c for c in pod_spec.get("containers") or [] if c.get("name") == "main"), None)
    if main is None or not uri:
        return
    volumes = pod_spec.setdefault("volumes", [])
    mounts = main.setdefault("volumeMounts", [])
    if uri.startswith("pvc://"):
        claim, _, sub_path = uri[len("pvc://"):].partition("/")
        volumes.append({"name": "kserve-pvc-source", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
        mounts.append({"name": "kserve-pvc-source", "mountPath": MODEL_MOUNT, "subPath": sub_path, "readOnly": True})
        return
    enabled = (spec.get("storageInitializer") or {}).get("enabled")
    if enabled is False or uri.split("://", 1)[0] not in ("hf", "s3", "gs", "http", "https"):
        return
    if any(c.get("name") == "storage-initializer" for c in pod_spec.get("initContainers") or []):
        return
    volumes.append({"name": "kserve-provision-location", "emptyDir": {}})
    mounts.append({"name": "kserve-provision-location", "mountPath": MODEL_MOUNT, "readOnly": True})
    pod_spec.setdefault("initContainers", []).append({
        "name": "storage-initializer", "image": STORAGE_INITIALIZER_IMAGE, "args": [uri, MODEL_MOUNT],
        **({"env": list(credential_envs)} if credential_envs else {}),
        "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "100Mi"}},
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": "kserve-provision-location", "mountPath": MODEL_MOUNT}],
    })


def _restore_transition_times(status, old_status):
    """knative ``PostProcessReconcile``: a condition equal to the stored one keeps its lastTransitionTime."""
    old = {c["type"]: c for c in (old_status or {}).get("conditions") or []}
    for cond in status.get("conditions") or []:
        prev = old.get(cond["type"])
        if prev is None:
            continue
        same = {k: v for k, v in cond.items() if k != "lastTransitionTime"} == {
            k: v for k, v in prev.items() if k != "lastTransitionTime"}
        if same and "lastTransitionTime" in prev:
            cond["lastTransitionTime"] = prev["lastTransitionTime"]


def _mounts_secret(spec, secret_name):
    """Whether the main or scheduler pod template mounts ``secret_name`` (the self-signed TLS certs)."""
    templates = [spec.get("template") or {}, ((spec.get("router") or {}).get("scheduler") or {}).get("template") or {}]
    return any((v.get("secret") or {}).get("secretName") == secret_name
               for template in templates for v in template.get("volumes") or [])


def downgrade_grpc_probes(container):
    """API servers before 1.24 drop ``grpc`` probes (then reject the probe): probe the same port over TCP."""
    for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = container.get(probe_name)
        if probe and "grpc" in probe:
            probe["tcpSocket"] = {"port": probe.pop("grpc").get("port")}


def _api_message(exc):
    try:
        return json.loads(exc.body).get("message") or exc.reason
    except (TypeError, ValueError):
        return str(exc.reason)


def _ready_status(status):
    return next((c["status"] for c in (status or {}).get("conditions") or [] if c["type"] == "Ready"), None)


# kserve/kserve v0.20.0 pkg/controller/v1alpha2/llmisvc/scheduler.go, schedulerConfigText: the single-profile
# default for an llmisvc without prefill and without LoRA adapters.
DEFAULT_SCHEDULER_CONFIG = """
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: single-profile-handler
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: prefix-cache-scorer
- type: no-hit-lru-scorer
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
    weight: 2
  - pluginRef: kv-cache-utilization-scorer
    weight: 2
  - pluginRef: prefix-cache-scorer
    weight: 3
  - pluginRef: no-hit-lru-scorer
    weight: 2
  - pluginRef: max-score-picker
"""
SCHEDULER_CONFIG_FLAGS = ("--config-text", "-config-text", "--configText", "-configText",
                          "--config-file", "-config-file", "--configFile", "-configFile")


def _config_flag(args):
    """[flag, value] of the first scheduler config flag in ``args`` (``configFlagFromContainers``), else []."""
    args = list(args or [])
    for index in range(len(args) - 1):
        if args[index] in SCHEDULER_CONFIG_FLAGS:
            return [args[index], args[index + 1]]
    return []


def _route_migrated(route):
    """KServe's one-way switch of the managed route from the v1alpha2 to the v1 InferencePool group.

    kserve/kserve v0.20.0 pkg/controller/v1alpha2/llmisvc/router.go (expectedHTTPRoute, "Migration logic"):
    switch when the migration annotation is set, or IsInferencePoolV1Supported is True, or
    IsInferencePoolV1Alpha2Supported is False; router_discovery.go isBackendSupported: False only when every
    parent's ResolvedRefs is False/InvalidKind, True as soon as one parent reports ResolvedRefs otherwise.
    """
    if route is None:
        return False
    if (route["metadata"].get("annotations") or {}).get(MIGRATED_ANNOTATION) == "v1":
        return True
    groups = {b.get("group") for r in route["spec"].get("rules") or [] for b in r.get("backendRefs") or []
              if b.get("kind") == "InferencePool"}
    reported = []
    for parent in (route.get("status") or {}).get("parents") or []:
        resolved = next((c for c in parent.get("conditions") or [] if c["type"] == "ResolvedRefs"), None)
        if resolved:
            reported.append(resolved["status"] == "False" and resolved.get("reason") == "InvalidKind")
    if not reported:
        return False
    supported = not all(reported)
    if POOL_V1[0] in groups and supported:
        return True
    return POOL_V1ALPHA2[0] in groups and not supported


def _route_base_path(route):
    prefixes = [m["path"]["value"] for r in route["spec"].get("rules") or [] for m in r.get("matches") or []
                if (m.get("path") or {}).get("type") == "PathPrefix" and not m.get("headers")]
    return min(prefixes, key=len) if prefixes else ""


def _route_gateways(route):
    if route is None:
        return []
    namespace = route["metadata"]["namespace"]
    return [(p.get("namespace") or namespace, p["name"]) for p in route["spec"].get("parentRefs") or []
            if p.get("kind", "Gateway") == "Gateway"]


def _route_problem(route):
    """None when every parentRef is Accepted and ResolvedRefs; else the first non-True condition (or True)."""
    parents = (route.get("status") or {}).get("parents") or []
    generation = route["metadata"].get("generation")
    namespace = route["metadata"]["namespace"]
    for ref in route["spec"].get("parentRefs") or []:
        entry = next((p for p in parents if _parent_is(p, (ref.get("namespace") or namespace, ref["name"]))), None)
        if entry is None:
            return True
        conditions = {c["type"]: c for c in entry.get("conditions") or []}
        for ctype in ("Accepted", "ResolvedRefs"):
            cond = conditions.get(ctype)
            if cond is None:
                return True
            if cond["status"] != "True" or (cond.get("observedGeneration") or generation) < generation:
                return cond
    return None


def _parent_is(parent, gateway):
    ref = parent.get("parentRef") or {}
    return (ref.get("namespace"), ref.get("name")) == gateway


def _pool_ready(pool, parents_key, gateways):
    parents = (pool.get("status") or {}).get(parents_key) or []
    if not parents:
        return False
    targets = gateways or [((p.get("parentRef") or {}).get("namespace"), (p.get("parentRef") or {}).get("name"))
                           for p in parents]
    for gateway in targets:
        entry = next((p for p in parents if _parent_is(p, gateway)), None)
        accepted = next((c for c in (entry or {}).get("conditions") or [] if c["type"] == "Accepted"), None)
        if not accepted or accepted["status"] != "True":
            return False
    return True


def main():
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    controller = Controller(Kube(), os.environ.get("LOCALCLUSTER_STATE_DIR"))
    controller.start()
    controller.run_forever()


if __name__ == "__main__":
    main()
