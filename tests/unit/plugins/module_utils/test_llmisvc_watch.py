"""The watch loop against a scripted API: list+watch, 410 relist, reconnect, polling fallback, outcomes."""

import copy
import json
import os
import threading

import pytest
import urllib3
import yaml
from kubernetes.client.exceptions import ApiException

from ansible_collections.llm_serving.gke.plugins.module_utils import llmisvc_watch as lw

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "llmisvc")
NS = "llm-d-inference-scheduling"


def fixture(name):
    with open(os.path.join(FIXTURES, name + ".yaml")) as handle:
        return yaml.safe_load(handle)


class FakeResponse:
    """A watch response: scripted lines, then blocks like an idle watch until closed or `end` is set."""

    def __init__(self, events, end=True, gate=None):
        self.events = events
        self.gate = gate
        self.closed = threading.Event()
        if end:
            self.closed.set()

    def stream(self, amt=None, decode_content=False):
        if self.gate is not None:
            self.gate.wait(5)
        for event in self.events:
            yield (json.dumps(event) + "\n").encode()
        while not self.closed.wait(0.02):
            pass

    def release_conn(self):
        pass

    def close(self):
        self.closed.set()


class FakeApi:
    """Serves lists from `objects`, and per-path scripted watch responses (or exceptions)."""

    def __init__(self, objects=None, watches=None):
        self.objects = objects or {}
        self.watches = watches or {}
        self.calls = []
        self.lock = threading.Lock()

    def get(self, path, query=None):
        with self.lock:
            self.calls.append(("list", path, dict(query or {})))
            item = self.objects.get(path, [])
        if isinstance(item, Exception):
            raise item
        return {"metadata": {"resourceVersion": "100"}, "items": copy.deepcopy(item)}

    def get_or_none(self, path, query=None):
        if path not in self.objects:
            return None
        return self.get(path, query)

    def get_text(self, path, query=None):
        raise ApiException(status=500, reason="Internal Server Error")

    def open_watch(self, path, query, timeout_seconds):
        with self.lock:
            self.calls.append(("watch", path, dict(query)))
            script = self.watches.get(path) or []
            step = script.pop(0) if script else FakeResponse([], end=False)
        if isinstance(step, Exception):
            raise step
        return step

    def count(self, kind, path):
        return sum(1 for c in self.calls if c[0] == kind and c[1] == path)


POD_PATH = f"/api/v1/namespaces/{NS}/pods"


def pod(name, rv):
    return {"metadata": {"name": name, "resourceVersion": rv}, "status": {"phase": "Pending"}}


def run_watcher(api, until):
    changed = threading.Event()
    watcher = lw.ResourceWatcher(api, "pods", POD_PATH, {"labelSelector": "x=y"}, changed)
    watcher.start()
    try:
        for _unused in range(200):
            if until(watcher):
                break
            changed.wait(0.02)
            changed.clear()
        return watcher
    finally:
        watcher.stop()
        watcher.join(2)


def test_watch_starts_from_list_version_and_applies_events():
    api = FakeApi({POD_PATH: [pod("a", "90")]}, {POD_PATH: [FakeResponse([
        {"type": "ADDED", "object": pod("b", "101")},
        {"type": "MODIFIED", "object": dict(pod("a", "102"), status={"phase": "Running"})},
        {"type": "DELETED", "object": pod("b", "103")},
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "110"}}},
    ])]})
    watcher = run_watcher(api, lambda w: api.count("watch", POD_PATH) >= 2)
    assert [p["status"]["phase"] for p in watcher.items()] == ["Running"]
    watches = [c[2] for c in api.calls if c[0] == "watch"]
    assert watches[0]["resourceVersion"] == "100"
    assert watches[1]["resourceVersion"] == "110"  # resumes after the bookmark, without a relist
    assert api.count("list", POD_PATH) == 1


def test_410_gone_relists():
    api = FakeApi({POD_PATH: [pod("a", "90")]}, {POD_PATH: [FakeResponse([
        {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}},
    ])]})
    run_watcher(api, lambda w: api.count("list", POD_PATH) >= 2)
    assert api.count("list", POD_PATH) == 2


def test_connection_drop_rewatches_from_last_version_and_keeps_cache():
    api = FakeApi({POD_PATH: [pod("a", "90")]}, {POD_PATH: [
        FakeResponse([{"type": "MODIFIED", "object": pod("a", "105")}]),
        urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")),
        ConnectionRefusedError(111, "Connection refused"),
    ]})
    watcher = run_watcher(api, lambda w: api.count("watch", POD_PATH) >= 4)
    assert watcher.reconnects == 2
    assert [p["metadata"]["name"] for p in watcher.items()] == ["a"]
    versions = [c[2]["resourceVersion"] for c in api.calls if c[0] == "watch"]
    assert versions == ["100", "105", "105", "105"]
    assert api.count("list", POD_PATH) == 1


def test_forbidden_watch_falls_back_to_polling():
    api = FakeApi({POD_PATH: [pod("a", "90")]}, {POD_PATH: [ApiException(status=403, reason="Forbidden")]})
    watcher = run_watcher(api, lambda w: w.polling)
    assert watcher.polling
    assert watcher.items()


def ready_llmisvc():
    return fixture("ready")


def waiter_api(llmisvc, deployments, pods=(), events=(), llmisvc_watch=(), pod_watch=(), gate=None):
    base = f"/apis/serving.kserve.io/v1alpha2/namespaces/{NS}/llminferenceservices"
    return FakeApi(
        {base: [llmisvc] if llmisvc else [], f"/apis/apps/v1/namespaces/{NS}/deployments": list(deployments),
         POD_PATH: list(pods), f"/api/v1/namespaces/{NS}/events": list(events)},
        {base: [FakeResponse(list(llmisvc_watch), end=False, gate=gate)],
         POD_PATH: [FakeResponse(list(pod_watch), end=False)]},
    )


class GatedWaiter(lw.LlmisvcWaiter):
    """Opens `gate` (the scripted watch events) once the waiter has evaluated the listed state."""

    gate = None

    def _record_timeline(self, llmisvc, elapsed):
        super()._record_timeline(llmisvc, elapsed)
        if self.gate is not None:
            self.gate.set()


def make_waiter(api, name, gate=None, **kwargs):
    kwargs.setdefault("timeout", 20)
    waiter = GatedWaiter(api, name, NS, "v1alpha2", **kwargs)
    waiter.gate = gate
    return waiter


def becoming_ready():
    """(api, gate): the llmisvc is not Ready (MinimumReplicasUnavailable) until its watch delivers the Ready one."""
    case = ready_llmisvc()
    pending = copy.deepcopy(case["llmisvc"])
    pending["metadata"]["resourceVersion"] = "1"
    for cond in pending["status"]["conditions"]:
        if cond["type"] in ("Ready", "WorkloadsReady", "MainWorkloadReady"):
            cond.update(status="False", reason="MinimumReplicasUnavailable")
    gate = threading.Event()
    return waiter_api(pending, case["deployments"], llmisvc_watch=[{"type": "MODIFIED", "object": case["llmisvc"]}],
                      gate=gate), gate


def test_waiter_returns_ready_when_watch_delivers_readiness():
    api, gate = becoming_ready()
    result = make_waiter(api, "qwen2-3b-pattern3-gpu", gate=gate).run()
    assert result["outcome"] == "ready" and result["ready"]
    assert result["url"].endswith("/qwen2-3b-pattern3-gpu")
    ready_rows = [(t["status"], t["reason"]) for t in result["timeline"] if t["type"] == "Ready"]
    assert ready_rows == [("False", "MinimumReplicasUnavailable"), ("True", "")]
    assert {w["name"]: w["rolled_out"] for w in result["workloads"]} == {
        "qwen2-3b-pattern3-gpu-kserve": True, "qwen2-3b-pattern3-gpu-kserve-router-scheduler": True}


def test_waiter_ignores_stale_ready_until_generation_observed():
    case = ready_llmisvc()
    stale = copy.deepcopy(case["llmisvc"])
    stale["metadata"].update(generation=3, resourceVersion="2")
    caught_up = copy.deepcopy(stale)
    caught_up["metadata"]["resourceVersion"] = "3"
    caught_up["status"]["observedGeneration"] = 3
    for dep in case["deployments"]:
        dep["metadata"]["generation"] = dep["status"]["observedGeneration"]
    gate = threading.Event()
    api = waiter_api(stale, case["deployments"], llmisvc_watch=[{"type": "MODIFIED", "object": caught_up}], gate=gate)
    result = make_waiter(api, "qwen2-3b-pattern3-gpu", gate=gate).run()
    assert result["outcome"] == "ready"
    assert result["observed_generation"] == result["generation"] == 3
    generations = [t["status"] for t in result["timeline"] if t["type"] == "ObservedGeneration"]
    assert generations == ["2", "3"]


def test_waiter_fails_fast_with_one_line_diagnosis_and_log_fallback():
    case = fixture("crashloop_unrecognized_args")
    api = waiter_api(case["llmisvc"], [], pods=case["pods"], events=case["events"])
    result = make_waiter(api, "qwen2-3b-pattern3-gpu").run()
    assert result["outcome"] == "failed" and not result["ready"]
    assert result["diagnosis"]["reason"] == "UnrecognizedArguments"
    assert "logs unavailable: 500" in result["diagnosis"]["message"]
    pod = "qwen2-3b-pattern3-gpu-kserve-5f7c9d8b6-m4n5p"
    assert result["msg"].startswith(f"qwen2-3b-pattern3-gpu not ready: pod {pod}:")
    assert "did you mean --block-size?" in result["msg"]
    assert [e["reason"] for e in result["events"]] == ["BackOff"]


def test_fail_fast_off_waits_until_timeout():
    case = fixture("crashloop_unrecognized_args")
    api = waiter_api(case["llmisvc"], [], pods=case["pods"], events=case["events"])
    result = make_waiter(api, "qwen2-3b-pattern3-gpu", timeout=1, fail_fast=False).run()
    assert result["outcome"] == "timeout"
    assert result["msg"].startswith("qwen2-3b-pattern3-gpu not ready after 1s: pod ")


def test_no_progress_ends_with_progress_deadline():
    case = fixture("tpu_no_pool")
    api = waiter_api(case["llmisvc"], [], pods=case["pods"], events=case["events"])
    result = make_waiter(api, "qwen2-3b-pattern1-tpu", progress_deadline=1).run()
    assert result["outcome"] == "timeout"
    assert result["diagnosis"]["reason"] == "NotTriggerScaleUp"
    assert result["msg"].startswith("qwen2-3b-pattern1-tpu not ready: no progress for 1s: pod ")


def test_transient_state_is_not_cut_by_progress_deadline():
    case = fixture("gpu_scale_up")
    api = waiter_api(case["llmisvc"], [], pods=case["pods"], events=case["events"])
    result = make_waiter(api, "qwen2-3b-pattern3-gpu", progress_deadline=1, timeout=2).run()
    assert result["outcome"] == "timeout"
    assert "no progress" not in result["msg"]
    assert result["diagnosis"]["reason"] == "FailedScheduling"


def test_check_mode_reports_without_waiting():
    case = fixture("gpu_scale_up")
    api = waiter_api(case["llmisvc"], [], pods=case["pods"], events=case["events"])
    result = make_waiter(api, "qwen2-3b-pattern3-gpu").run(wait=False)
    assert result["outcome"] == "pending" and "msg" not in result
    assert result["diagnosis"]["reason"] == "FailedScheduling"


def test_discover_version_prefers_v1alpha2():
    api = FakeApi()
    api.get_or_none = lambda path, query=None: {"versions": [{"version": "v1alpha1"}, {"version": "v1alpha2"}]}
    assert lw.discover_version(api, deadline=0) == "v1alpha2"
    api.get_or_none = lambda path, query=None: None
    with pytest.raises(lw.WaitError, match="not served"):
        lw.discover_version(api, deadline=0)
