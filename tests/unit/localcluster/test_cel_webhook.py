"""localcluster.cel_webhook without a cluster: AdmissionReviews over HTTPS, the registration it writes, the summary."""
import base64
import json
import ssl
import threading
import urllib.request

import pytest

from localcluster import cel, cel_webhook

ROUTE = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
         "metadata": {"name": "r", "namespace": "ns"},
         "spec": {"rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}]}]}}
KIND = {"group": "gateway.networking.k8s.io", "version": "v1", "kind": "HTTPRoute"}


def review(obj, operation="CREATE", old=None):
    request = {"uid": "u-1", "kind": KIND, "operation": operation, "object": obj}
    if old is not None:
        request["oldObject"] = old
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def bad_route():
    obj = json.loads(json.dumps(ROUTE))
    obj["spec"]["rules"][0]["matches"][0]["path"]["value"] = "v1"
    return obj


@pytest.fixture(scope="module")
def registry():
    return cel.default_registry()


@pytest.fixture(scope="module")
def server(registry):
    context, ca_pem = cel_webhook.tls_material()
    srv = cel_webhook.serve(registry, 0, context)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    client = ssl.create_default_context(cadata=ca_pem.decode())
    yield f"https://127.0.0.1:{srv.server_address[1]}/validate", client
    srv.shutdown()


def post(server, body):
    url, context = server
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=context, timeout=30) as resp:  # noqa: S310 - loopback test server
        return json.loads(resp.read())


def test_https_admission_review_allowed_and_denied(server):
    allowed = post(server, review(ROUTE))
    assert allowed == {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                       "response": {"uid": "u-1", "allowed": True}}
    denied = post(server, review(bad_route()))["response"]
    assert denied["allowed"] is False and denied["uid"] == "u-1"
    status = denied["status"]
    message = ("spec.rules[0].matches[0].path: Invalid value: \"object\": value must be an absolute path and start "
               "with '/' when type one of ['Exact', 'PathPrefix']")
    assert status["code"] == 422 and status["reason"] == "Invalid" and status["status"] == "Failure"
    assert status["message"] == f'HTTPRoute.gateway.networking.k8s.io "r" is invalid: {message}'
    assert status["details"] == {"name": "r", "group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "causes": [
        {"reason": "FieldValueInvalid", "field": "spec.rules[0].matches[0].path",
         "message": message.split(": ", 1)[1]}]}


def test_update_uses_old_object_only_for_updates(registry):
    gc = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "c"},
          "spec": {"controllerName": "a.example.com/x"}}
    new = json.loads(json.dumps(gc))
    new["spec"]["controllerName"] = "b.example.com/y"
    gc_kind = {**KIND, "kind": "GatewayClass"}
    update = review(new, "UPDATE", gc)
    update["request"]["kind"] = gc_kind
    answer = cel_webhook.review_response(registry, update)["response"]
    assert answer["allowed"] is False
    assert answer["status"]["message"].endswith('spec.controllerName: Invalid value: "string": Value is immutable')
    create = review(new, "CREATE", gc)  # an oldObject on CREATE is ignored
    create["request"]["kind"] = gc_kind
    assert cel_webhook.review_response(registry, create)["response"]["allowed"] is True


def test_registration_covers_every_crd_with_rules_fail_closed(registry):
    vwc = cel_webhook.webhook_configuration(registry, 16444, b"PEM")
    (hook,) = vwc["webhooks"]
    assert vwc["apiVersion"] == "admissionregistration.k8s.io/v1"
    assert hook["failurePolicy"] == "Fail" and hook["sideEffects"] == "None"
    assert hook["timeoutSeconds"] == cel_webhook.TIMEOUT_SECONDS == 10
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["clientConfig"] == {"url": "https://127.0.0.1:16444/validate",
                                    "caBundle": base64.b64encode(b"PEM").decode()}
    resources = {(r["apiGroups"][0], tuple(r["apiVersions"]), tuple(r["resources"])) for r in hook["rules"]}
    assert ("gateway.networking.k8s.io", ("v1", "v1beta1"), ("httproutes", "httproutes/status")) in resources
    assert ("serving.kserve.io", ("v1alpha1", "v1alpha2"),
            ("llminferenceservices", "llminferenceservices/status")) in resources
    assert ("inference.networking.k8s.io", ("v1",), ("inferencepools", "inferencepools/status")) in resources
    assert len(hook["rules"]) == len(registry.crds) == 6
    assert all(r["operations"] == ["CREATE", "UPDATE"] for r in hook["rules"])


def test_summary_lists_unevaluable_rules_by_crd_path_and_rule(tmp_path):
    crd = {"metadata": {"name": "things.example.com"},
           "spec": {"group": "example.com", "names": {"kind": "Thing", "plural": "things"},
                    "versions": [{"name": "v1", "schema": {"openAPIV3Schema": {
                        "type": "object", "properties": {"spec": {
                            "type": "object", "x-kubernetes-validations": [
                                {"rule": "self.a.ip().isLoopback()", "message": "m"}, {"rule": "true"}],
                            "properties": {"a": {"type": "string"}}}}}}}]}}
    summary = cel_webhook.write_summary(tmp_path, cel.Registry([crd]), registered=True)
    assert summary == {"rules": 2, "evaluated": 1, "unevaluable": 1, "crds": ["things.example.com"],
                       "registered": True, "unevaluable_file": str(tmp_path / "cel" / "unevaluable.txt")}
    lines = (tmp_path / "cel" / "unevaluable.txt").read_text().splitlines()
    assert lines[1].split("\t")[:4] == ["things.example.com", "v1", "spec", "self.a.ip().isLoopback()"]
    assert lines[1].split("\t")[4] == "function(s) ip, isLoopback not implemented by the local evaluator"
    assert cel_webhook.read_summary(tmp_path) == summary


def test_status_prints_the_rule_counts(capsys):
    from localcluster import cli

    report = {"mode": "local", "healthy": True, "components": [], "endpoints": {},
              "cel": {"rules": 672, "evaluated": 671, "unevaluable": 1, "registered": True,
                      "unevaluable_file": "/x/cel/unevaluable.txt"}}
    cli.print_status(report)
    assert ("CEL rules (cel_webhook): 671 of 672 evaluated, 1 not evaluable (listed in /x/cel/unevaluable.txt)"
            in capsys.readouterr().out)


class FakeKube:
    def __init__(self, existing):
        self.existing, self.calls = existing, []

    def server_minor_version(self):
        return 20

    def get(self, path):
        return {"metadata": {}} if self.existing else None

    def request(self, method, path, body=None, **_):
        self.calls.append((method, path))


def test_up_without_the_webhook_removes_its_registration(monkeypatch, tmp_path):
    from localcluster import cluster, config

    monkeypatch.setenv("LOCALCLUSTER_SIMULATORS", "gke_api")
    logs = []
    lc = cluster.Cluster(paths=config.StatePaths(tmp_path), log=logs.append)
    kube = FakeKube(existing=True)
    assert lc.start_admission({}, kube) == []
    assert kube.calls == [("DELETE", f"{cluster.CEL_VWC_COLLECTION}/localcluster-cel-validation")]
    assert "CEL rules are not enforced" in logs[0]
    kube = FakeKube(existing=False)
    assert lc.start_admission({}, kube) == [] and kube.calls == []


def test_up_starts_the_webhook_first_and_reports_a_failed_start(monkeypatch, tmp_path):
    from localcluster import cluster, config

    monkeypatch.delenv("LOCALCLUSTER_SIMULATORS", raising=False)
    assert config.SIMULATORS[0] == "cel_webhook"  # started before the simulators write custom resources
    lc = cluster.Cluster(paths=config.StatePaths(tmp_path), log=lambda *_: None)
    started = []
    monkeypatch.setattr(lc.sup, "is_running", lambda name: False)
    monkeypatch.setattr(lc, "start_simulator", lambda name, env: started.append(name))

    def not_ready(name, predicate, timeout):
        raise cluster.StartError(f"{name} exited during start-up")

    monkeypatch.setattr(lc, "_wait", not_ready)
    assert lc.start_admission({}, FakeKube(existing=False)) == ["cel_webhook exited during start-up"]
    assert started == ["cel_webhook"]


def test_up_restarts_a_running_webhook_whose_registration_was_removed(monkeypatch, tmp_path):
    from localcluster import cluster, config

    monkeypatch.delenv("LOCALCLUSTER_SIMULATORS", raising=False)
    lc = cluster.Cluster(paths=config.StatePaths(tmp_path), log=lambda *_: None)
    running = {"cel_webhook": True}
    events = []
    monkeypatch.setattr(lc.sup, "is_running", lambda name: running[name])
    monkeypatch.setattr(lc.sup, "stop", lambda name: (events.append(("stop", name)), running.update({name: False})))
    monkeypatch.setattr(lc, "start_simulator", lambda name, env: events.append(("start", name)))
    monkeypatch.setattr(lc, "_wait", lambda name, predicate, timeout: True)
    assert lc.start_admission({}, FakeKube(existing=False)) == []
    assert events == [("stop", "cel_webhook"), ("start", "cel_webhook")]
    running["cel_webhook"], events[:] = True, []
    assert lc.start_admission({}, FakeKube(existing=True)) == [] and events == []


def test_ready_only_once_the_api_server_calls_the_webhook(monkeypatch):
    monkeypatch.setattr(cel_webhook.time, "sleep", lambda _: None)

    class Refusal(Exception):
        body = ('{"message": "admission webhook \\"cel.localcluster.llm-serving-gke.io\\" denied the request: '
                "... value must be an absolute path ...\"}")

    class ProbeKube:
        def __init__(self, admitted_first):
            self.calls, self.admitted_first = 0, admitted_first

        def request(self, method, path, body=None, query_params=None):
            self.calls += 1
            assert method == "POST" and query_params == [("dryRun", "All")] and body == cel_webhook.PROBE_ROUTE
            if self.calls <= self.admitted_first:
                return {}
            raise Refusal()

    kube = ProbeKube(admitted_first=2)
    assert cel_webhook.wait_enforced(kube, timeout=5) == (True, "")
    assert kube.calls == 3
    ok, why = cel_webhook.wait_enforced(ProbeKube(admitted_first=10 ** 6), timeout=0.05)
    assert not ok and why == "the API server admitted the invalid probe HTTPRoute"
