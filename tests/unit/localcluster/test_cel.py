"""CEL rules of the upstream CRDs evaluated as kube-apiserver does (localcluster/cel.py), without a cluster."""
import copy

import pytest

from localcluster import cel

ROUTE = {
    "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
    "metadata": {"name": "r", "namespace": "ns"},
    "spec": {"parentRefs": [{"name": "inference-gateway", "namespace": "opendatahub"}],
             "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}],
                        "timeouts": {"request": "30s", "backendRequest": "10s"},
                        "backendRefs": [{"group": "inference.networking.k8s.io", "kind": "InferencePool",
                                         "name": "pool", "port": 8000}]}]},
}


def route(**rule_changes):
    obj = copy.deepcopy(ROUTE)
    obj["spec"]["rules"][0].update(rule_changes)
    return obj


def llmisvc(version, http_spec):
    return {"apiVersion": f"serving.kserve.io/{version}", "kind": "LLMInferenceService",
            "metadata": {"name": "m", "namespace": "ns"},
            "spec": {"model": {"uri": "hf://Qwen/Qwen2.5-3B-Instruct"},
                     "router": {"route": {"http": {"spec": http_spec}}}}}


GATEWAY = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
           "metadata": {"name": "g", "namespace": "ns"},
           "spec": {"gatewayClassName": "gke-l7-rilb",
                    "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}

POOL = {"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"selector": {"matchLabels": {"app": "m"}}, "targetPorts": [{"number": 8000}],
                 "endpointPickerRef": {"name": "epp", "port": {"number": 9002}}}}


@pytest.fixture(scope="module")
def registry():
    return cel.default_registry()


def test_every_rule_of_every_installed_crd_is_evaluated(registry):
    # Target of issue 16: nothing silently unchecked. The count is what the upstream files carry.
    assert [(r.crd, r.path, r.text, r.error) for r in registry.unevaluable] == []
    assert len(registry.rules) > 600
    assert set(registry.crds) == {
        "llminferenceservices.serving.kserve.io", "llminferenceserviceconfigs.serving.kserve.io",
        "inferencepools.inference.networking.k8s.io", "gatewayclasses.gateway.networking.k8s.io",
        "gateways.gateway.networking.k8s.io", "httproutes.gateway.networking.k8s.io"}


def test_valid_objects_are_admitted(registry):
    for obj in (ROUTE, GATEWAY, POOL, llmisvc("v1alpha1", ROUTE["spec"]), llmisvc("v1alpha2", ROUTE["spec"])):
        assert registry.validate(obj) == [], obj["kind"]


def test_path_prefix_without_slash_is_refused_in_kube_apiserver_words(registry):
    obj = route(matches=[{"path": {"type": "PathPrefix", "value": "v1"}}])
    assert registry.check(obj) == (
        'HTTPRoute.gateway.networking.k8s.io "r" is invalid: spec.rules[0].matches[0].path: Invalid value: '
        "\"object\": value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']")


def test_backend_request_timeout_longer_than_request_timeout(registry):
    errors = [str(e) for e in registry.validate(route(timeouts={"request": "10s", "backendRequest": "1m"}))]
    assert errors == ['spec.rules[0].timeouts: Invalid value: "object": '
                      "backendRequest timeout cannot be longer than request timeout"]
    # `0s` disables the request timeout: any backendRequest timeout is allowed then.
    assert registry.validate(route(timeouts={"request": "0s", "backendRequest": "1h"})) == []


def test_redirect_filter_next_to_backend_refs_and_filter_shape(registry):
    redirect = {"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}}
    assert [str(e) for e in registry.validate(route(filters=[redirect]))] == [
        'spec.rules[0]: Invalid value: "object": RequestRedirect filter must not be used together with backendRefs']
    mismatched = {"type": "RequestHeaderModifier", "requestRedirect": {"scheme": "https"}}
    messages = {e.detail for e in registry.validate(route(filters=[mismatched]))}
    assert "filter.requestHeaderModifier must be specified for RequestHeaderModifier filter.type" in messages
    assert "filter.requestRedirect must be nil if the filter.type is not RequestRedirect" in messages
    twice = {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "a", "value": "b"}]}}
    assert [e.detail for e in registry.validate(route(filters=[twice, twice]))] == [
        "RequestHeaderModifier filter cannot be repeated"]


def test_defaults_are_applied_before_the_rules_run(registry):
    # kind defaults to Service and group to "" (a default the 1.20 pre-processing drops): a port is required.
    obj = route(backendRefs=[{"name": "svc"}])
    assert [str(e) for e in registry.validate(obj)] == [
        'spec.rules[0].backendRefs[0]: Invalid value: "object": Must have port for Service reference']


def test_llmisvc_embedded_route_rules_at_their_schema_path(registry):
    for version in ("v1alpha1", "v1alpha2"):
        bad = copy.deepcopy(ROUTE["spec"])
        bad["rules"][0]["timeouts"] = {"request": "5s", "backendRequest": "10s"}
        bad["rules"][0]["matches"] = [{"path": {"type": "Exact", "value": "/a//b"}}]
        text = registry.check(llmisvc(version, bad))
        assert text.startswith('LLMInferenceService.serving.kserve.io "m" is invalid: [')
        assert ('spec.router.route.http.spec.rules[0].timeouts: Invalid value: "object": backendRequest timeout '
                "cannot be longer than request timeout") in text
        assert ("spec.router.route.http.spec.rules[0].matches[0].path: Invalid value: \"object\": "
                "must not contain '//' when type one of ['Exact', 'PathPrefix']") in text


def test_gateway_listeners(registry):
    gw = copy.deepcopy(GATEWAY)
    gw["spec"]["listeners"].append({"name": "http", "port": 8080, "protocol": "HTTP"})
    gw["spec"]["listeners"].append({"name": "tcp", "port": 9000, "protocol": "TCP", "hostname": "a.example.com"})
    details = sorted(e.detail for e in registry.validate(gw))
    assert details == ["Listener name must be unique within the Gateway",
                       "hostname must not be specified for protocols ['TCP', 'UDP']"]
    https = copy.deepcopy(GATEWAY)
    https["spec"]["listeners"] = [{"name": "https", "port": 443, "protocol": "HTTPS",
                                   "tls": {"mode": "Terminate", "certificateRefs": [{"name": "cert"}]}}]
    assert registry.validate(https) == []


def test_inference_pool(registry):
    pool = copy.deepcopy(POOL)
    pool["spec"]["targetPorts"] = [{"number": 8000}, {"number": 8000}]
    del pool["spec"]["endpointPickerRef"]["port"]
    assert sorted(str(e) for e in registry.validate(pool)) == [
        "spec.endpointPickerRef: Invalid value: \"object\": port is required when kind is 'Service' or "
        "unspecified (defaults to 'Service')",
        'spec.targetPorts: Invalid value: "array": port number must be unique']


def test_transition_rule_on_update_only(registry):
    gc = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "c"},
          "spec": {"controllerName": "networking.gke.io/gateway"}}
    changed = copy.deepcopy(gc)
    changed["spec"]["controllerName"] = "example.com/other"
    assert registry.validate(changed) == []  # create: no oldSelf, the rule is not evaluated
    assert registry.validate(gc, gc) == []
    assert [str(e) for e in registry.validate(changed, gc)] == [
        'spec.controllerName: Invalid value: "string": Value is immutable']


def test_ratcheting_keeps_an_unchanged_invalid_value_but_not_a_changed_one(registry):
    old = route(matches=[{"path": {"type": "PathPrefix", "value": "v1"}}])
    relabelled = copy.deepcopy(old)
    relabelled["metadata"]["labels"] = {"a": "b"}
    assert registry.validate(relabelled, old) == []
    worse = copy.deepcopy(old)
    worse["spec"]["rules"][0]["timeouts"] = {"request": "1s", "backendRequest": "2s"}
    # rules is an atomic list: its items correlate with nothing, so they ratchet only while the whole list is
    # unchanged (validation.go ratchetingOptions); here it changed, so the old path error counts again.
    assert sorted(e.field for e in registry.validate(worse, old)) == ["spec.rules[0].matches[0].path",
                                                                      "spec.rules[0].timeouts"]
    labels = copy.deepcopy(GATEWAY)
    labels["spec"]["infrastructure"] = {"labels": {"-bad": "x"}}
    relabelled_gw = copy.deepcopy(labels)
    relabelled_gw["spec"]["listeners"][0]["port"] = 8080  # infrastructure (an object) is unchanged: ratcheted
    assert registry.validate(relabelled_gw, labels) == []
    assert [e.field for e in registry.validate(labels)] == ["spec.infrastructure.labels"]


def test_escaped_property_names(registry):
    obj = copy.deepcopy(ROUTE)
    obj["spec"]["parentRefs"] = [{"name": "gw", "namespace": "a", "sectionName": "http"},
                                 {"name": "gw", "namespace": "a"}]
    assert [e.detail for e in registry.validate(obj)] == [
        "sectionName must be specified when parentRefs includes 2 or more references to the same parent"]
    obj["spec"]["parentRefs"][1]["namespace"] = "b"  # `namespace` is `__namespace__` in CEL
    assert registry.validate(obj) == []


def _crd(rules, prop_schema=None):
    schema = {"type": "object", "properties": {"spec": {
        "type": "object", "x-kubernetes-validations": rules,
        "properties": prop_schema or {"a": {"type": "string"}, "n": {"type": "integer"},
                                       "items": {"type": "array", "items": {"type": "integer"}},
                                       "mem": {"type": "string"}, "url": {"type": "string"}}}}}
    return {"metadata": {"name": "things.example.com"},
            "spec": {"group": "example.com", "names": {"kind": "Thing", "plural": "things"},
                     "versions": [{"name": "v1", "schema": {"openAPIV3Schema": schema}}]}}


def _thing(**spec):
    return {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"}, "spec": spec}


def test_message_expression_reason_and_field_path():
    reg = cel.Registry([_crd([
        {"rule": "self.n < 3", "messageExpression": "'n is ' + string(self.n) + ', at most 2'",
         "fieldPath": ".n"},
        {"rule": "has(self.a)", "message": "a is required", "reason": "FieldValueRequired", "fieldPath": ".a"},
        {"rule": "self.n != 4", "reason": "FieldValueForbidden", "message": "not four"},
        {"rule": "self.n != 5"}])])
    assert [str(e) for e in reg.validate(_thing(n=4))] == [
        'spec.n: Invalid value: "object": n is 4, at most 2', "spec.a: Required value: a is required",
        "spec: Forbidden: not four"]
    assert [str(e) for e in reg.validate(_thing(a="x", n=5))] == [
        'spec.n: Invalid value: "object": n is 5, at most 2',
        'spec: Invalid value: "object": failed rule: self.n != 5']


def test_kubernetes_libraries():
    reg = cel.Registry([_crd([
        {"rule": "self.a.split('/')[0] == 'x' && self.a.lowerAscii().indexOf('/') == 1", "message": "strings"},
        {"rule": "self.items.isSorted() && self.items.sum() == 6 && self.items.max() == 3 && "
                 "self.items.indexOf(2) == 1", "message": "lists"},
        {"rule": "quantity(self.mem).isGreaterThan(quantity('1Gi')) && quantity('1k').compareTo(quantity('1000'))"
                 " == 0 && isQuantity('2Mi')", "message": "quantity"},
        {"rule": "url(self.url).getHost() == 'example.com:8443' && url(self.url).getScheme() == 'https' && "
                 "isURL('/p') && !isURL('x y')", "message": "url"},
        {"rule": "self.a.find('[0-9]+') == '12' && self.a.findAll('[a-z]').size() == 2", "message": "regex"},
        {"rule": "duration('1h30m') > duration('89m')", "message": "duration"}])])
    good = _thing(a="x/Y12z", items=[1, 2, 3], mem="1536Mi", url="https://example.com:8443/p")
    assert reg.unevaluable == []
    assert reg.validate(good) == []
    bad = _thing(a="q/12", items=[3, 2, 1], mem="1Gi", url="https://other")
    assert {e.detail for e in reg.validate(bad)} == {"strings", "lists", "quantity", "url", "regex"}


def test_a_rule_the_evaluator_cannot_run_is_listed_and_refuses():
    reg = cel.Registry([_crd([{"rule": "self.a.ip().family() == 4", "message": "ipv4"},
                              {"rule": "self.a == ", "message": "broken"}])])
    listed = [(r.crd, r.version, r.path, r.text, r.error) for r in reg.unevaluable]
    assert listed[0][:4] == ("things.example.com", "v1", "spec", "self.a.ip().family() == 4")
    assert "family, ip" in listed[0][4] and "not implemented" in listed[0][4]
    assert "compilation failed" in listed[1][4]
    # As kube-apiserver does with a rule it cannot compile: the object is refused, naming the rule's problem.
    assert [e.detail.split(":")[0] for e in reg.validate(_thing(a="x"))] == ["rule compile error"] * 2


def test_runtime_error_worded_like_cel_go():
    reg = cel.Registry([_crd([{"rule": "self.a == 'x'", "message": "a must be x"}])])
    assert [str(e) for e in reg.validate(_thing(n=1))] == [
        'spec: Invalid value: "object": no such key: a evaluating rule: a must be x']


def test_offline_helper_returns_messages():
    assert cel.validate(ROUTE) == []
    assert cel.validate(route(matches=[{"path": {"type": "Exact", "value": "/a/../b"}}])) == [
        "spec.rules[0].matches[0].path: Invalid value: \"object\": must not contain '/../' when type one of "
        "['Exact', 'PathPrefix']"]


def test_rules_inside_all_of_are_listed_not_skipped():
    crd = _crd([{"rule": "true"}])
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["allOf"] = [{"x-kubernetes-validations": [{"rule": "self.n > 0", "message": "positive"}]}]
    reg = cel.Registry([crd])
    assert [(r.path, r.text, r.error) for r in reg.unevaluable] == [
        ("spec (allOf)", "self.n > 0", "rules inside allOf are not implemented by the local evaluator")]


def test_number_fields_are_doubles():
    reg = cel.Registry([_crd([{"rule": "self.x > 0.5", "message": "x"}], {"x": {"type": "number"}})])
    assert reg.validate(_thing(x=1)) == []
    assert [e.detail for e in reg.validate(_thing(x=0))] == ["x"]


def test_aggregate_message_drops_duplicates_like_kube_apiserver():
    errors = [cel.FieldError("FieldValueInvalid", "spec", "object", "m")] * 2
    assert cel.error_message(ROUTE, errors) == \
        'HTTPRoute.gateway.networking.k8s.io "r" is invalid: spec: Invalid value: "object": m'
