"""The simulated KServe controller points the managed HTTPRoute at the pool group like KServe v0.20.

kserve/kserve v0.20.0 pkg/controller/v1alpha2/llmisvc/router.go (expectedHTTPRoute, "Migration logic") and
router_discovery.go (isBackendSupported): v1alpha2 first; v1 for good once the gateway accepts v1 or reports
ResolvedRefs=False/InvalidKind for v1alpha2 on every parent.
"""
import pytest

from localcluster.kserve_controller import MIGRATED_ANNOTATION, Controller

V1, V1ALPHA2 = "inference.networking.k8s.io", "inference.networking.x-k8s.io"


class Store:
    def __init__(self, obj=None):
        self.obj = obj

    def get(self, _namespace, _name):
        return self.obj


def _svc():
    return {"metadata": {"name": "m", "namespace": "ns", "uid": "u1"},
            "spec": {"router": {"scheduler": {}, "route": {"http": {"spec": {"rules": [
                {"backendRefs": [{"group": V1, "kind": "InferencePool", "name": "m-inference-pool"}]}]}}}}}}


def _current(group, *resolved, annotations=None):
    parents = [{"parentRef": {"name": f"gw{i}"}, "conditions": [{"type": "ResolvedRefs", "status": status,
                                                                  "reason": reason}]}
               for i, (status, reason) in enumerate(resolved)]
    return {"metadata": {"name": "m-kserve-route", "annotations": annotations or {}},
            "spec": {"rules": [{"backendRefs": [{"group": group, "kind": "InferencePool",
                                                 "name": "m-inference-pool"}]}]},
            "status": {"parents": parents}}


def _group(current):
    ctrl = Controller(kube=None)
    ctrl.informers = {"httproutes": Store(current)}
    route = ctrl.expected_route(_svc())
    groups = {b["group"] for r in route["spec"]["rules"] for b in r["backendRefs"]}
    assert len(groups) == 1
    return groups.pop(), (route["metadata"].get("annotations") or {}).get(MIGRATED_ANNOTATION)


@pytest.mark.parametrize(("current", "expected"), [
    (None, (V1ALPHA2, None)),                                                   # new route: v1alpha2 first
    (_current(V1ALPHA2, ("True", "ResolvedRefs")), (V1ALPHA2, None)),            # GKE accepts v1alpha2: stays
    (_current(V1ALPHA2, ("False", "BackendNotFound")), (V1ALPHA2, None)),        # not a kind problem: stays
    (_current(V1ALPHA2, ("False", "InvalidKind")), (V1, "v1")),                 # rejected: switch to v1
    (_current(V1ALPHA2, ("False", "InvalidKind"), ("True", "ResolvedRefs")), (V1ALPHA2, None)),  # one accepts
    (_current(V1, ("True", "ResolvedRefs")), (V1, "v1")),                       # v1 accepted: v1
    (_current(V1ALPHA2, annotations={MIGRATED_ANNOTATION: "v1"}), (V1, "v1")),  # one-way lock
])
def test_route_pool_group_follows_kserve(current, expected):
    assert _group(current) == expected
