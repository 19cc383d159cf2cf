"""Preset selection, strategic merge and Go-template rendering of the simulated KServe controller."""
import glob
import os

import pytest
import yaml

from localcluster import crds
from localcluster import kserve_render as render


def load_presets():
    """KServe v0.20.0's presets, pinned in localcluster/crds.py (from the cache, a mirror or the download)."""
    presets = {}
    for path in glob.glob(os.path.join(crds.presets_dir(), "config-*.yaml")):
        with open(path) as handle:
            for doc in yaml.safe_load_all(handle):
                presets[doc["metadata"]["name"]] = doc
    return presets


@pytest.fixture(scope="module")
def presets():
    return load_presets()


@pytest.fixture
def seed_gpu():
    """The seed's GPU manifest (johnahull/llm-d-xks-gke, pinned in localcluster/crds.py)."""
    with open(crds.seed_manifest("llmisvc-gpu-pattern3.yaml")) as handle:
        return yaml.safe_load(handle)


def merged(svc, presets, global_config=None):
    return render.combine_spec(svc, [presets[n] for n in render.config_refs(svc)], global_config)


def test_child_name_appends_suffix_when_short():
    name = render.child_name("qwen2-3b-pattern3-gpu", "-kserve-workload-svc")
    assert name == "qwen2-3b-pattern3-gpu-kserve-workload-svc"


def test_child_name_hashes_long_names_like_knative():
    parent = "a-really-long-llm-inference-service-name-that-goes-on-and-on"
    name = render.child_name(parent, "-kserve-workload-svc")
    assert len(name) <= 63
    assert name.endswith("-kserve-workload-svc")
    assert name.startswith(parent[:31 - len("-kserve-workload-svc")])


def test_presets_chosen_from_the_spec():
    spec = {"router": {"route": {}, "scheduler": {}, "gateway": {}}}
    assert render.well_known_presets(spec) == ["kserve-config-llm-template", "kserve-config-llm-scheduler",
                                               "kserve-config-llm-router-route"]
    assert render.well_known_presets({}) == ["kserve-config-llm-template"]
    byo_route = {"router": {"route": {"http": {"refs": [{"name": "mine"}]}}}}
    assert render.well_known_presets(byo_route) == ["kserve-config-llm-template"]
    pool_ref = {"router": {"scheduler": {"pool": {"ref": {"name": "p"}}}}}
    assert "kserve-config-llm-scheduler" not in render.well_known_presets(pool_ref)


def test_base_refs_come_after_well_known_presets():
    svc = {"metadata": {"name": "m", "namespace": "ns"}, "spec": {"baseRefs": [{"name": "a"}, {"name": "b"}]}}
    assert render.config_refs(svc) == ["kserve-config-llm-template", "a", "b"]


def test_strategic_merge_merges_containers_env_and_volumes_by_name():
    base = {"containers": [{"name": "main", "image": "a", "env": [{"name": "X", "value": "1"}]},
                           {"name": "side", "image": "s"}],
            "volumes": [{"name": "v1", "emptyDir": {}}]}
    patch = {"containers": [{"name": "main", "image": "b", "env": [{"name": "Y", "value": "2"}]}],
             "volumes": [{"name": "v2", "emptyDir": {}}]}
    out = render.strategic_merge(base, patch)
    main = out["containers"][0]
    assert main["image"] == "b"
    assert [e["name"] for e in main["env"]] == ["X", "Y"]
    assert [c["name"] for c in out["containers"]] == ["main", "side"]
    assert [v["name"] for v in out["volumes"]] == ["v1", "v2"]


def test_strategic_merge_replaces_lists_without_merge_key_and_deletes_nulls():
    base = {"rules": [{"name": "a"}, {"name": "b"}], "args": ["x"], "keep": 1, "drop": 2}
    out = render.strategic_merge(base, {"rules": [{"name": "c"}], "args": ["y"], "drop": None})
    assert out == {"rules": [{"name": "c"}], "args": ["y"], "keep": 1}


def test_template_renders_fields_functions_and_conditionals():
    data = render.template_data({"metadata": {"name": "m", "namespace": "ns"},
                                 "spec": {"model": {"uri": "hf://x"}, "parallelism": {"tensor": 4}}})
    assert render.render_template("{{ ChildName .ObjectMeta.Name `-epp-service` }}", data) == "m-epp-service"
    assert render.render_template("/{{ .ObjectMeta.Namespace }}/{{ .ObjectMeta.Name }}", data) == "/ns/m"
    assert render.render_template("{{ .Spec.Model.Name }}", data) == "m"  # defaulted to metadata.name
    text = ("a \\\n  {{- if and .Spec.Parallelism .Spec.Parallelism.Tensor }}"
            " --tp {{ .Spec.Parallelism.Tensor }}{{- end }}")
    # trim markers stop at line breaks: KServe renders the JSON text, where "\n" is an escape, not white space
    assert render.render_template(text, data) == "a \\\n --tp 4"
    tls = "{{ if .GlobalConfig.EnableTLS }}HTTPS{{else}}HTTP{{- end }}"
    assert render.render_template(tls, data) == "HTTP"
    assert render.render_template(tls, render.template_data(data, {"EnableTLS": True})) == "HTTPS"


def test_template_rejects_unknown_functions():
    with pytest.raises(render.RenderError):
        render.render_template("{{ nosuchfunc .ObjectMeta.Name }}", render.template_data(
            {"metadata": {"name": "m", "namespace": "ns"}, "spec": {}}))


def test_go_json_names():
    assert render.go_json_name("KVCacheOffloading") == "kvCacheOffloading"
    assert render.go_json_name("Spec") == "spec"
    assert render.go_json_name("ObjectMeta") == "metadata"
    assert render.go_json_name("URI") == "uri"


def test_seed_gpu_pattern_merges_like_kserve(presets, seed_gpu):
    spec = merged(seed_gpu, presets, {"IngressGatewayName": "gw", "IngressGatewayNamespace": "gw-ns"})
    main = spec["template"]["containers"][0]
    assert main["name"] == "main"
    assert main["image"] == "registry.redhat.io/rhaiis/vllm-cuda-rhel9:3.0.0"  # the user's image wins
    assert main["command"][:2] == ["/bin/bash", "-c"]  # the preset's entrypoint stays
    assert '--served-model-name "Qwen/Qwen2.5-3B-Instruct"' in main["command"][2]
    assert "{{" not in main["command"][2]
    assert "\\ \\" not in main["command"][2]  # no escaped space left where an {{- if}} rendered nothing
    assert main["args"] == seed_gpu["spec"]["template"]["containers"][0]["args"]
    assert [e["name"] for e in main["env"]] == ["HOME", "VLLM_LOGGING_LEVEL", "HF_HUB_CACHE", "HF_TOKEN"]
    assert main["readinessProbe"]["httpGet"]["path"] == "/v1/models"
    assert main["readinessProbe"]["initialDelaySeconds"] == 180
    assert spec["template"]["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
    assert spec["template"]["imagePullSecrets"] == [{"name": "redhat-pull-secret"}]
    certs = next(v for v in spec["template"]["volumes"] if v["name"] == "tls-certs")
    assert certs["secret"]["secretName"] == "qwen2-3b-pattern3-gpu-kserve-self-signed-certs"


def test_route_parent_refs_come_from_gateway_refs_and_keep_timeouts(presets, seed_gpu):
    route = merged(seed_gpu, presets)["router"]["route"]["http"]["spec"]
    assert route["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                    "name": "inference-gateway", "namespace": "opendatahub"}]
    first = route["rules"][0]
    assert first["matches"][0]["path"]["value"] == "/llm-d-inference-scheduling/qwen2-3b-pattern3-gpu/v1/completions"
    assert first["backendRefs"][0]["name"] == "qwen2-3b-pattern3-gpu-inference-pool"
    assert all("timeouts" in rule for rule in route["rules"])  # upstream preset: GKE will reject these


def test_scheduler_pool_is_rendered(presets, seed_gpu):
    scheduler = merged(seed_gpu, presets)["router"]["scheduler"]
    pool = scheduler["pool"]["spec"]
    assert pool["endpointPickerRef"]["name"] == "qwen2-3b-pattern3-gpu-epp-service"
    assert pool["selector"]["matchLabels"] == {"app.kubernetes.io/name": "qwen2-3b-pattern3-gpu",
                                               "app.kubernetes.io/part-of": "llminferenceservice",
                                               "kserve.io/component": "workload"}
    assert "qwen2-3b-pattern3-gpu-inference-pool" in scheduler["template"]["containers"][0]["command"]


def test_without_scheduler_pool_backends_point_at_the_workload_service(presets, seed_gpu):
    del seed_gpu["spec"]["router"]["scheduler"]
    route = merged(seed_gpu, presets)["router"]["route"]["http"]["spec"]
    kinds = {b["kind"] for rule in route["rules"] for b in rule["backendRefs"]}
    assert kinds == {"Service"}
    assert route["rules"][0]["backendRefs"][0]["name"] == "qwen2-3b-pattern3-gpu-kserve-workload-svc"


def test_namespace_local_route_preset_without_timeouts_wins(presets, seed_gpu):
    local = yaml.safe_load(yaml.safe_dump(presets["kserve-config-llm-router-route"]))
    for rule in local["spec"]["router"]["route"]["http"]["spec"]["rules"]:
        rule.pop("timeouts")
    configs = [presets["kserve-config-llm-template"], presets["kserve-config-llm-scheduler"], local]
    route = render.combine_spec(seed_gpu, configs)["router"]["route"]["http"]["spec"]
    assert not any("timeouts" in rule for rule in route["rules"])


def test_user_rules_replace_preset_rules(presets, seed_gpu):
    seed_gpu["spec"]["router"]["route"] = {"http": {"spec": {"rules": [
        {"backendRefs": [{"kind": "Service", "name": "x", "port": 8000}]}]}}}
    route = merged(seed_gpu, presets)["router"]["route"]["http"]["spec"]
    assert route["rules"] == [{"backendRefs": [{"kind": "Service", "name": "x", "port": 8000}]}]
