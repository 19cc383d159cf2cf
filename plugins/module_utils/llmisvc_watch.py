# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Watch an LLMInferenceService and its children until it is ready or cannot become ready.

One thread per resource keeps an informer-style cache (list, then watch from the list's
resourceVersion; relist on 410 Gone; re-watch with back-off after connection drops; periodic
resync). The waiting thread wakes on every change and evaluates `llmisvc.assess()`, so it
returns as soon as the watch delivers readiness. HTTPRoutes, InferencePools, Gateways and pod
logs are read on demand, only while the router or a container is in trouble.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 - Ansible module boilerplate

import contextlib
import json
import os
import random
import threading
import time

from ansible_collections.llm_serving.gke.plugins.module_utils import llmisvc as lm
from ansible_collections.llm_serving.gke.plugins.module_utils import llmisvc_progress as lmp
from ansible_collections.llm_serving.gke.plugins.module_utils import llmisvc_rules_resource as rules_resource
from ansible_collections.llm_serving.gke.plugins.module_utils import llmisvc_status as lms

try:
    import urllib3
    from kubernetes.client.exceptions import ApiException
    from kubernetes.watch.watch import iter_resp_lines
except ImportError:  # pragma: no cover - reported by the module through AnsibleK8SModule
    ApiException = Exception
    urllib3 = None

RESYNC_PERIOD = 300
PROGRESS_INTERVAL = 10
PROGRESS_KEPT = 500
ROUTER_REFRESH_MIN = 5
POLL_INTERVAL = 10
REQUEST_TIMEOUT = 30
CONNECTION_ERRORS = (OSError, ValueError)


class Gone(Exception):
    """The watch's resourceVersion is too old (410): relist."""


class Backoff:
    def __init__(self, first=0.2, cap=5.0):
        self.first = first
        self.cap = cap
        self.delay = first

    def reset(self):
        self.delay = self.first

    def next(self):
        delay = self.delay
        self.delay = min(self.cap, self.delay * 2)
        return delay * random.uniform(0.8, 1.2)


def transport_errors():
    extra = (urllib3.exceptions.HTTPError,) if urllib3 else ()
    return CONNECTION_ERRORS + extra


def error_text(exc):
    if isinstance(exc, ApiException) and getattr(exc, "status", None):
        body = getattr(exc, "body", "") or ""
        with contextlib.suppress(ValueError, AttributeError):
            body = json.loads(body).get("message", body)
        return "{} {}: {}".format(exc.status, getattr(exc, "reason", ""), lms.one_line(body)[:300])
    return lms.one_line(f"{type(exc).__name__}: {exc}")[:300]


class ApiSession:
    """Plain requests through kubernetes.core's dynamic client, returning dicts."""

    def __init__(self, dynamic_client, request_timeout=REQUEST_TIMEOUT):
        self.client = dynamic_client
        self.request_timeout = request_timeout

    def _request(self, path, query, timeout):
        params = [(k, v) for k, v in (query or {}).items() if v is not None]
        return self.client.request("GET", path, query_params=params, _request_timeout=timeout, serialize=False)

    def get(self, path, query=None):
        resp = self._request(path, query, self.request_timeout)
        try:
            return json.loads(resp.data or b"{}")
        finally:
            resp.release_conn()

    def get_text(self, path, query=None):
        resp = self._request(path, query, self.request_timeout)
        try:
            return (resp.data or b"").decode("utf-8", "replace")
        finally:
            resp.release_conn()

    def get_or_none(self, path, query=None):
        """GET that maps 404 (object or CRD absent) to None."""
        try:
            return self.get(path, query)
        except ApiException as exc:
            if getattr(exc, "status", None) == 404:
                return None
            raise

    def open_watch(self, path, query, timeout_seconds):
        query = dict(query or {}, watch="true", allowWatchBookmarks="true", timeoutSeconds=str(timeout_seconds))
        return self._request(path, query, (self.request_timeout, timeout_seconds + 30))


class ResourceWatcher(threading.Thread):
    """Informer-style cache of one list (path + selectors), kept current by a watch."""

    def __init__(self, api, kind, path, query, changed, resync_period=RESYNC_PERIOD, poll_interval=POLL_INTERVAL):
        super().__init__(name=f"watch-{kind}")
        self.daemon = True
        self.api = api
        self.kind = kind
        self.path = path
        self.query = query or {}
        self.changed = changed
        self.resync_period = resync_period
        self.poll_interval = poll_interval
        self.objects = {}
        self.lock = threading.Lock()
        self.synced = threading.Event()
        self.stopping = threading.Event()
        self.error = None
        self.missing = False
        self.polling = False
        self.reconnects = 0
        self.lists = 0

    def items(self):
        with self.lock:
            return list(self.objects.values())

    def stop(self):
        # The thread is a daemon blocked in a socket read: flag it and let the process exit. Closing the
        # response from this thread would race with the read in the watcher thread.
        self.stopping.set()

    def run(self):
        backoff = Backoff()
        version = None
        listed_at = 0.0
        while not self.stopping.is_set():
            try:
                if version is None or time.monotonic() - listed_at >= self.resync_period:
                    version = self._list()
                    listed_at = time.monotonic()
                    backoff.reset()
                if self.polling or self.missing:
                    self.stopping.wait(self.poll_interval)
                    version = None
                    continue
                version = self._watch(version, listed_at)
                backoff.reset()
            except Gone:
                version = None
            except ApiException as exc:
                self._api_error(exc, version)
                self.stopping.wait(backoff.next())
            except transport_errors() as exc:
                # API server restart or dropped connection: keep the cache, re-watch from the last version.
                self.error = error_text(exc)
                self.reconnects += 1
                self.stopping.wait(backoff.next())

    def _api_error(self, exc, version):
        self.error = error_text(exc)
        status = getattr(exc, "status", None)
        if status in (403, 405) and version is not None:
            self.polling = True  # may list but not watch: poll instead
        elif status == 404:
            self.missing = True
            self._replace({})
            self.synced.set()

    def _list(self):
        body = self.api.get(self.path, self.query)
        self.lists += 1
        self.missing = False
        self._replace({lms.meta(o, "name"): o for o in body.get("items") or []})
        self.error = None
        self.synced.set()
        return lms.meta(body, "resourceVersion")

    def _replace(self, objects):
        with self.lock:
            changed = objects != self.objects
            self.objects = objects
        if changed:
            self.changed.set()

    def _watch(self, version, listed_at):
        remaining = self.resync_period - (time.monotonic() - listed_at)
        timeout = int(max(1, min(remaining, random.uniform(240, 300))))
        query = dict(self.query, resourceVersion=version)
        resp = self.api.open_watch(self.path, query, timeout)
        self.error = None  # connected again: earlier errors are history
        try:
            for line in iter_resp_lines(resp):
                if self.stopping.is_set():
                    break
                if line:
                    version = self._apply(json.loads(line), version)
        finally:
            resp.release_conn()
        return version

    def _apply(self, event, version):
        etype = event.get("type")
        obj = event.get("object") or {}
        if etype == "ERROR":
            if obj.get("code") == 410:
                raise Gone()
            raise ApiException(status=obj.get("code"), reason=obj.get("reason") or obj.get("message"))
        name = lms.meta(obj, "name")
        if etype in ("ADDED", "MODIFIED"):
            with self.lock:
                self.objects[name] = obj
            self.changed.set()
        elif etype == "DELETED":
            with self.lock:
                self.objects.pop(name, None)
            self.changed.set()
        return lms.meta(obj, "resourceVersion") or version


def discover_version(api, deadline, clock=time.monotonic):
    """Newest served LLMInferenceService version; retries connection errors until the deadline."""
    backoff = Backoff(0.5, 5.0)
    while True:
        try:
            group = api.get_or_none(f"/apis/{lms.GROUP}")
            version = lms.pick_served_version(group)
            if version is None:
                raise WaitError(
                    "the LLMInferenceService CRD ({} {}) is not served by the API server; install KServe's llmisvc "
                    "CRDs".format(lms.GROUP, "/".join(lms.SUPPORTED_VERSIONS))
                )
            return version
        except transport_errors():
            if clock() + 1 >= deadline:
                raise
            time.sleep(backoff.next())


def write_json_atomically(path, data):
    """Replace `path` with `data` as JSON (write a sibling file, then rename), so a reader never sees half."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as handle:
            json.dump(data, handle)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


class WaitError(Exception):
    """A problem that prevents waiting at all (CRD absent, access denied)."""


class LlmisvcWaiter:
    """Wait for one LLMInferenceService; `run()` returns the module's result fields."""

    def __init__(
        self,
        api,
        name,
        namespace,
        version,
        timeout=1800,
        progress_deadline=600,
        require_rollout=True,
        require_url=True,
        fail_fast=True,
        resync_period=RESYNC_PERIOD,
        clock=time.monotonic,
        wall=time.time,
        progress_file=None,
        progress_interval=PROGRESS_INTERVAL,
    ):
        self.api = api
        self.name = name
        self.namespace = namespace
        self.version = version
        self.timeout = timeout
        self.progress_deadline = progress_deadline
        self.require_rollout = require_rollout
        self.require_url = require_url
        self.fail_fast = fail_fast
        self.resync_period = resync_period
        self.clock = clock
        self.wall = wall
        self.changed = threading.Event()
        self.watchers = {}
        self.routes, self.pools, self.gateways, self.remote_events = [], [], [], []
        self.router_errors = {}
        self.router_read_at = None
        self.router_read_version = None
        self.logs = {}
        self.timeline = []
        self.first_seen = {}
        self._last_llmisvc = None
        self.progress_file = progress_file
        self.progress_interval = progress_interval
        self.progress = []
        self._progress_written_at = None
        self._progress_line = None

    # ---------------------------------------------------------- watchers

    def _start_watchers(self):
        ns = self.namespace
        selector = lms.child_selector(self.name)
        specs = {
            "llmisvc": (
                f"/apis/{lms.GROUP}/{self.version}/namespaces/{ns}/{lms.PLURAL}",
                {"fieldSelector": f"metadata.name={self.name}"},
            ),
            "deployments": (f"/apis/apps/v1/namespaces/{ns}/deployments", {"labelSelector": selector}),
            "pods": (f"/api/v1/namespaces/{ns}/pods", {"labelSelector": selector}),
            "events": (f"/api/v1/namespaces/{ns}/events", {}),
        }
        for kind, (path, query) in specs.items():
            watcher = ResourceWatcher(self.api, kind, path, query, self.changed, self.resync_period)
            self.watchers[kind] = watcher
            watcher.start()

    def _stop_watchers(self):
        for watcher in self.watchers.values():
            watcher.stop()

    def _wait_synced(self, deadline):
        watcher = self.watchers["llmisvc"]
        while not watcher.synced.wait(0.2):
            if watcher.error and watcher.error.startswith(("401", "403")):
                raise WaitError(f"cannot read {lms.KIND} {self.namespace}/{self.name}: {watcher.error}")
            if self.clock() >= deadline:
                return False
        for kind in ("deployments", "pods", "events"):
            self.watchers[kind].synced.wait(max(0.0, min(5.0, deadline - self.clock())))
        return True

    def _llmisvc(self):
        items = self.watchers["llmisvc"].items()
        return items[0] if items else None

    # ---------------------------------------------------------- on-demand reads

    def _router_due(self, llmisvc, force):
        if llmisvc is None:
            return False
        if not lm.router_unready(llmisvc):
            return False
        if self.router_read_at is None:
            return True
        since = self.clock() - self.router_read_at
        if force or since >= self.resync_period:
            return True
        return since >= ROUTER_REFRESH_MIN and lms.meta(llmisvc, "resourceVersion") != self.router_read_version

    def _read_router(self, llmisvc):
        """HTTPRoutes, InferencePools (v1 and v1alpha2), their Gateways and the Gateways' events."""
        self.router_read_at = self.clock()
        self.router_read_version = lms.meta(llmisvc, "resourceVersion")
        ns, selector = self.namespace, {"labelSelector": lms.child_selector(self.name)}
        errors = {}
        routes = self._list_or_empty(
            f"/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes", selector, errors, "httproutes"
        )
        pools = []
        for group_version in ("inference.networking.k8s.io/v1", "inference.networking.x-k8s.io/v1alpha2"):
            pools += self._list_or_empty(
                f"/apis/{group_version}/namespaces/{ns}/inferencepools", selector, errors, "inferencepools"
            )
        gateways, remote_events = [], []
        for gw_ns, gw_name in self._gateway_refs(llmisvc, routes):
            gateway = self._get_gateway(gw_ns, gw_name, errors)
            gateways.append(gateway)
            if gw_ns != ns:
                remote_events += self._list_or_empty(
                    f"/api/v1/namespaces/{gw_ns}/events",
                    {"fieldSelector": f"involvedObject.kind=Gateway,involvedObject.name={gw_name}"},
                    errors,
                    "events",
                )
        self.routes, self.pools, self.gateways, self.remote_events = routes, pools, gateways, remote_events
        self.router_errors = errors

    def _list_or_empty(self, path, query, errors, label):
        try:
            body = self.api.get_or_none(path, query)
        except ApiException as exc:
            errors[label] = error_text(exc)
            return []
        except transport_errors() as exc:
            errors[label] = error_text(exc)
            return []
        return (body or {}).get("items") or []

    def _gateway_refs(self, llmisvc, routes):
        refs = []
        for route in routes:
            for ref in (route.get("spec") or {}).get("parentRefs") or []:
                if ref.get("kind", "Gateway") == "Gateway":
                    refs.append(
                        (ref.get("namespace") or lms.meta(route, "namespace") or self.namespace, ref.get("name"))
                    )
        for gw in (((llmisvc.get("status") or {}).get("router") or {}).get("gateways")) or []:
            refs.append((gw.get("namespace") or self.namespace, gw.get("name")))
        return sorted(set(r for r in refs if r[1]))

    def _get_gateway(self, namespace, name, errors):
        path = f"/apis/gateway.networking.k8s.io/v1/namespaces/{namespace}/gateways/{name}"
        try:
            gateway = self.api.get_or_none(path)
        except (ApiException,) + transport_errors() as exc:
            errors["gateways"] = error_text(exc)
            gateway = {}
        if gateway is None:
            return {"metadata": {"name": name, "namespace": namespace}, "missing": True}
        gateway.setdefault("metadata", {}).setdefault("namespace", namespace)
        gateway["metadata"].setdefault("name", name)
        return gateway

    def _read_logs(self, pods):
        """Last lines of crashed containers, once per restart; errors are kept (no kubelet behind the API)."""
        for pod, container, restarts, _is_init in lmp.crashing_containers(pods):
            key = (pod, container)
            if self.logs.get(key, {}).get("restarts") == restarts:
                continue
            query = {"container": container, "tailLines": "20", "previous": "true" if restarts else None}
            entry = {"restarts": restarts, "text": None, "error": None}
            try:
                entry["text"] = self.api.get_text(f"/api/v1/namespaces/{self.namespace}/pods/{pod}/log", query)
            except (ApiException,) + transport_errors() as exc:
                entry["error"] = error_text(exc)
            self.logs[key] = entry

    # ---------------------------------------------------------- evaluation

    def snapshot(self, refresh_router=False):
        llmisvc = self._llmisvc()
        if self._router_due(llmisvc, refresh_router):
            self._read_router(llmisvc)
        pods = self.watchers["pods"].items()
        self._read_logs(pods)
        errors = {k: w.error for k, w in self.watchers.items() if w.error}
        errors.update(self.router_errors)
        return lms.Snapshot(
            self.name,
            self.namespace,
            llmisvc=llmisvc,
            deployments=self.watchers["deployments"].items(),
            pods=pods,
            events=self.watchers["events"].items() + self.remote_events,
            routes=self.routes,
            pools=self.pools,
            gateways=self.gateways,
            logs=self.logs,
            errors=errors,
        )

    def _record_timeline(self, llmisvc, elapsed):
        previous = self._last_llmisvc
        if llmisvc is None or (
            previous is not None and lms.meta(previous, "resourceVersion") == lms.meta(llmisvc, "resourceVersion")
        ):
            return
        before = (previous or {}).get("status", {}).get("observedGeneration") if previous else None
        after = (llmisvc.get("status") or {}).get("observedGeneration")
        if previous is None or before != after:
            self.timeline.append(
                {
                    "time": self._now_iso(),
                    "elapsed": round(elapsed, 3),
                    "type": "ObservedGeneration",
                    "status": str(after),
                    "reason": "generation {}".format(lms.meta(llmisvc, "generation")),
                    "message": "",
                }
            )
        for row in lms.condition_transitions(previous, llmisvc):
            observed_at = row["last_transition_time"] if previous is None else self._now_iso()
            self.timeline.append(
                {
                    "time": observed_at,
                    "elapsed": round(elapsed, 3),
                    "type": row["type"],
                    "status": row["status"],
                    "reason": row["reason"],
                    "message": row["message"],
                }
            )
        self._last_llmisvc = llmisvc

    def _now_iso(self):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.wall()))

    def _ages(self, findings, now):
        keys = {f.key for f in findings}
        self.first_seen = {k: v for k, v in self.first_seen.items() if k in keys}
        for key in keys:
            self.first_seen.setdefault(key, now)
        return {k: now - v for k, v in self.first_seen.items()}

    def run(self, wait=True):
        start = self.clock()
        deadline = start + self.timeout
        self._start_watchers()
        try:
            return self._loop(start, deadline, wait)
        finally:
            self._stop_watchers()

    def _loop(self, start, deadline, wait):
        self._wait_synced(deadline)
        last_signature, last_progress = None, self.clock()
        while True:
            self.changed.clear()
            now = self.clock()
            snap = self.snapshot()
            self._record_timeline(snap.llmisvc, now - start)
            assessment = self._assess(snap)
            ages = self._ages(assessment.findings, now)
            signature = lmp.progress_signature(snap)
            if signature != last_signature:
                last_signature, last_progress = signature, now
            outcome, stalled = self._decide(assessment, ages, now, deadline, last_progress, wait)
            if outcome:
                if outcome != "ready":
                    # Read the router once more so the diagnosis reflects the latest state.
                    snap = self.snapshot(refresh_router=True)
                    assessment = self._assess(snap)
                    outcome = "ready" if assessment.ready else outcome
                self._report_progress(snap, assessment, self.clock() - start, final=True)
                return self._result(outcome, snap, assessment, ages, self.clock() - start, stalled)
            self._report_progress(snap, assessment, now - start)
            self.changed.wait(max(0.05, min(1.0, deadline - self.clock())))

    def _assess(self, snap):
        # Wall-clock time: a Deployment's ProgressDeadlineExceeded is judged against the pods' API timestamps.
        return lm.assess(
            snap, self.require_rollout, self.require_url, now=self.wall(), progress_deadline=self.progress_deadline
        )

    def _report_progress(self, snap, assessment, elapsed, final=False):
        """Record where the deployment is (and write it to progress_file) on a change, or every progress_interval."""
        summary = lmp.progress_summary(snap, assessment, elapsed)
        key = summary["line"].split(": ", 1)[-1]  # the line without the elapsed time
        due = self._progress_written_at is None or elapsed - self._progress_written_at >= self.progress_interval
        if not (final or due or key != self._progress_line):
            return
        self._progress_written_at, self._progress_line = elapsed, key
        entry = {"time": self._now_iso(), "elapsed": summary["elapsed"], "line": summary["line"]}
        if not self.progress or self.progress[-1]["line"].split(": ", 1)[-1] != key:
            self.progress.append(entry)
            del self.progress[:-PROGRESS_KEPT]
        if self.progress_file:
            write_json_atomically(self.progress_file, dict(summary, time=entry["time"], final=final))

    def _decide(self, assessment, ages, now, deadline, last_progress, wait):
        if assessment.ready:
            return "ready", False
        if assessment.stopped:
            return "stopped", False
        if self.fail_fast and assessment.permanent(ages):
            return "failed", False
        if not wait:
            return "pending", False
        if not assessment.has_transient() and now - last_progress >= self.progress_deadline:
            return "timeout", True
        if now >= deadline:
            return "timeout", False
        return None, False

    def _result(self, outcome, snap, assessment, ages, elapsed, stalled):
        llmisvc = snap.llmisvc or {}
        status = llmisvc.get("status") or {}
        primary = None if assessment.ready else assessment.primary(ages)
        diagnosis = primary.as_dict() if primary else {}
        result = {
            "ready": outcome == "ready",
            "outcome": outcome,
            "api_version": f"{lms.GROUP}/{self.version}",
            "url": status.get("url") or "",
            "addresses": status.get("addresses") or [],
            "conditions": lms.condition_table(llmisvc),
            "workloads": [lms.workload_summary(d) for d in snap.deployments],
            "generation": lms.meta(llmisvc, "generation"),
            "observed_generation": status.get("observedGeneration"),
            "elapsed": round(elapsed, 3),
            "timeline": self.timeline,
            "progress": self.progress,
            "diagnosis": diagnosis,
            "events": rules_resource.warning_events(snap),
        }
        if outcome not in ("ready", "pending"):
            result["msg"] = lmp.failure_message(
                self.name, diagnosis, outcome, elapsed, self.progress_deadline if stalled else None
            )
        if snap.errors:
            result["read_errors"] = snap.errors
        return result
