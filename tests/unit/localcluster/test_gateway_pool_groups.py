"""The simulated GKE gateway and the two InferencePool API groups KServe v0.20 creates.

GKE serves InferencePools of ``inference.networking.x-k8s.io/v1alpha2`` and ``inference.networking.k8s.io/v1``
side by side (https://cloud.google.com/kubernetes-engine/docs/how-to/migrate-gke-inference-gateway); the
rejecting behaviour (ResolvedRefs=False/InvalidKind, what makes KServe switch its route to v1 in
kserve/kserve v0.20.0 pkg/controller/v1alpha2/llmisvc/router.go) stays available as a setting.
"""
import pytest

from localcluster import gateway
from localcluster.gateway import POOL_GROUP, POOL_GROUP_V1ALPHA2, GatewayController

NS = "ns"
POOL = "m-inference-pool"
LABELS = {"app": "m"}


class Store:
    def __init__(self, *objs):
        self.objs = {(o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objs}

    def get(self, namespace, name):
        return self.objs.get((namespace, name))

    def items(self):
        return list(self.objs.values())


class FakeKube:
    def __init__(self):
        self.patches = []

    def merge_patch(self, path, body):
        self.patches.append((path, body))


def _pod(name, ip):
    return {"metadata": {"name": name, "namespace": NS, "labels": LABELS},
            "spec": {"containers": [{"name": "main"}]},
            "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}}


def _policy(kind, group, timeout=None, path=None):
    default = {"timeoutSec": timeout} if timeout else {
        "config": {"type": "HTTP", "httpHealthCheck": {"port": 8000, "requestPath": path}}}
    return {"metadata": {"name": f"{kind}-{group}", "namespace": NS, "generation": 1},
            "spec": {"targetRef": {"group": group, "kind": "InferencePool", "name": POOL}, "default": default}}


def _controller(mode, route_group, policies_group=POOL_GROUP):
    kube = FakeKube()
    ctrl = GatewayController(kube, "127.0.0.1", lambda snapshot: None, v1alpha2_pools=mode)
    meta = {"name": POOL, "namespace": NS, "generation": 1}
    v1 = {"metadata": dict(meta), "spec": {"selector": {"matchLabels": LABELS}, "targetPorts": [{"number": 8000}],
                                          "endpointPickerRef": {"name": "m-epp-service", "failureMode": "FailOpen"}}}
    v1alpha2 = {"metadata": dict(meta), "spec": {"selector": LABELS, "targetPortNumber": 8000,
                                                "extensionRef": {"name": "m-epp-service", "failureMode": "FailOpen"}}}
    gw = {"metadata": {"name": "gw", "namespace": NS, "generation": 1},
          "spec": {"gatewayClassName": "gke-l7-rilb", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}
    route = {"metadata": {"name": "r", "namespace": NS, "generation": 1},
             "spec": {"parentRefs": [{"name": "gw"}],
                      "rules": [{"backendRefs": [{"group": route_group, "kind": "InferencePool", "name": POOL}]}]}}
    cls = {"metadata": {"name": "gke-l7-rilb", "generation": 1}, "spec": {"controllerName": gateway.CONTROLLER_NAME}}
    ctrl.informers = {
        "classes": Store(cls), "gateways": Store(gw), "routes": Store(route), "pools": Store(v1),
        "pools_v1alpha2": Store(v1alpha2), "services": Store(), "namespaces": Store(),
        "pods": Store(_pod("m-0", "10.0.0.1"), _pod("m-1", "10.0.0.2")),
        "healthchecks": Store(_policy("hc", policies_group, path="/health")),
        "backendpolicies": Store(_policy("be", policies_group, timeout=300)),
    }
    return ctrl, kube, gw, route


def _statuses(kube, plural):
    return [(path, body["status"]) for path, body in kube.patches if f"/{plural}/" in path]


def test_v1alpha2_pool_is_accepted_like_gke_by_default():
    ctrl, kube, gw, route = _controller("accept", POOL_GROUP_V1ALPHA2, policies_group=POOL_GROUP_V1ALPHA2)
    resolved = ctrl._resolved_refs(route, gw, 1)
    assert (resolved["status"], resolved["reason"]) == ("True", "ResolvedRefs")
    backend = ctrl._backend(NS, route["spec"]["rules"][0]["backendRefs"][0])
    assert backend.kind == "InferencePool"
    assert sorted(e.ip for e in backend.endpoints) == ["10.0.0.1", "10.0.0.2"]
    assert backend.health["path"] == "/health" and backend.timeout == 300
    assert backend.fail_open and backend.epp_available is False
    ctrl.sync()
    # The v1alpha2 pool's parents are written to status.parent (its CRD's field), under the v1alpha2 path.
    pool_status = [s for path, s in _statuses(kube, "inferencepools") if "/inference.networking.x-k8s.io/" in path]
    assert pool_status and pool_status[0]["parent"][0]["parentRef"]["name"] == "gw"
    policy_status = {path: s["conditions"][0]["status"] for path, s in _statuses(kube, "healthcheckpolicies")}
    assert list(policy_status.values()) == ["True"]


def test_policy_on_the_other_group_does_not_configure_the_backend():
    # Policies target group/kind/name exactly: v1 policies leave the v1alpha2 backend on GKE's defaults
    # ("/" health check, 30 s timeout) and are reported as not attached.
    ctrl, kube, _gw, route = _controller("accept", POOL_GROUP_V1ALPHA2, policies_group=POOL_GROUP)
    backend = ctrl._backend(NS, route["spec"]["rules"][0]["backendRefs"][0])
    assert backend.health["path"] == "/" and backend.timeout == gateway.DEFAULT_TIMEOUT_SEC
    ctrl.sync()
    conds = [s["conditions"][0] for _path, s in _statuses(kube, "gcpbackendpolicies")]
    assert [(c["status"], c["reason"]) for c in conds] == [("False", "GatewayNotFound")]


def test_reject_setting_answers_invalid_kind_for_v1alpha2():
    ctrl, kube, gw, route = _controller("reject", POOL_GROUP_V1ALPHA2)
    resolved = ctrl._resolved_refs(route, gw, 1)
    assert (resolved["status"], resolved["reason"]) == ("False", "InvalidKind")
    assert ctrl._backend(NS, route["spec"]["rules"][0]["backendRefs"][0]).kind == "Unresolved"
    ctrl.sync()
    assert not [p for p, _s in _statuses(kube, "inferencepools") if "/inference.networking.x-k8s.io/" in p]


@pytest.mark.parametrize("mode", ["accept", "reject"])
def test_v1_pool_is_served_in_both_modes(mode):
    ctrl, _kube, gw, route = _controller(mode, POOL_GROUP)
    assert ctrl._resolved_refs(route, gw, 1)["status"] == "True"
    backend = ctrl._backend(NS, route["spec"]["rules"][0]["backendRefs"][0])
    assert len(backend.endpoints) == 2 and backend.health["path"] == "/health" and backend.timeout == 300


def test_setting_is_validated_naming_the_variable():
    assert gateway.v1alpha2_pool_mode({}) == "accept"
    assert gateway.v1alpha2_pool_mode({gateway.V1ALPHA2_POOLS_ENV: "Reject"}) == "reject"
    with pytest.raises(ValueError, match="GATEWAY_INFERENCEPOOL_V1ALPHA2='maybe'"):
        gateway.v1alpha2_pool_mode({gateway.V1ALPHA2_POOLS_ENV: "maybe"})


@pytest.mark.parametrize(("args", "expected"), [
    ([], gateway.KSERVE_DEFAULT_WEIGHTS),
    (["--config-text", "plugins: [{type: queue-scorer}]\nschedulingProfiles:\n- name: default\n  plugins:\n"
                       "  - {pluginRef: queue-scorer, weight: 2}\n"], {"queue-scorer": 2.0}),
])
def test_backend_uses_the_epp_pods_config_text(args, expected):
    ctrl, _kube, _gw, route = _controller("accept", POOL_GROUP)
    epp_labels = {"app": "epp"}
    ctrl.informers["services"] = Store({"metadata": {"name": "m-epp-service", "namespace": NS},
                                        "spec": {"selector": epp_labels}})
    epp = _pod("epp-0", "10.0.0.9")
    epp["metadata"]["labels"] = epp_labels
    epp["spec"]["containers"] = [{"name": "main", "args": ["--pool-name", POOL] + args}]
    ctrl.informers["pods"].objs[(NS, "epp-0")] = epp
    backend = ctrl._backend(NS, route["spec"]["rules"][0]["backendRefs"][0])
    assert backend.epp_available and backend.epp_weights == expected
    assert sorted(e.pod for e in backend.endpoints) == ["m-0", "m-1"]
