"""The simulated KServe controller writes the EPP's --config-text like ``preserveSchedulerConfig``.

kserve/kserve v0.20.0 pkg/controller/v1alpha2/llmisvc/scheduler.go: inline config wins, a config flag in the
template's args is kept, the current Deployment's flag is preserved, else ``schedulerConfigText``'s default.
"""
import json

import yaml

from localcluster.kserve_controller import DEFAULT_SCHEDULER_CONFIG, Controller

MAIN = {"name": "main", "image": "ghcr.io/llm-d/llm-d-router-endpoint-picker:v0.9.0", "command": ["/app/epp"]}


class Store:
    def __init__(self, obj=None):
        self.obj = obj

    def get(self, _namespace, _name):
        return self.obj


def _svc(scheduler):
    return {"metadata": {"name": "m", "namespace": "ns", "uid": "u"},
            "spec": {"router": {"scheduler": {"template": {"containers": [dict(MAIN)]}, **scheduler}}}}


def _main_args(svc, current=None):
    ctrl = Controller(kube=None)
    ctrl.informers = {"deployments": Store(current)}
    deployment = ctrl.expected_scheduler_deployment(svc)
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "main")["args"]


def test_default_profile_is_written_when_no_config_is_given():
    args = _main_args(_svc({}))
    assert args == ["--config-text", DEFAULT_SCHEDULER_CONFIG]
    profile = yaml.safe_load(args[1])["schedulingProfiles"][0]["plugins"]
    assert {p["pluginRef"]: p.get("weight") for p in profile} == {
        "queue-scorer": 2, "kv-cache-utilization-scorer": 2, "prefix-cache-scorer": 3, "no-hit-lru-scorer": 2,
        "max-score-picker": None}


def test_inline_config_wins():
    inline = {"kind": "EndpointPickerConfig", "plugins": [{"type": "queue-scorer"}]}
    assert _main_args(_svc({"config": {"inline": inline}})) == ["--config-text", json.dumps(inline)]


def test_config_flag_in_template_or_current_deployment_is_kept():
    svc = _svc({})
    svc["spec"]["router"]["scheduler"]["template"]["containers"][0]["args"] = ["--config-file", "/cfg.yaml"]
    assert _main_args(svc) == ["--config-file", "/cfg.yaml"]
    current = {"spec": {"template": {"spec": {"containers": [{"name": "main",
                                                              "args": ["--config-text", "old: true"]}]}}}}
    assert _main_args(_svc({}), current) == ["--config-text", "old: true"]
