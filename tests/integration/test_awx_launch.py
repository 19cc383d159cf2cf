"""The job templates and the workflow of awx/, launched as AWX launches them (tests/awx/harness.py), against the
local cluster.

One deployment is shared across the module, in the order a user would run the templates: bad answers (refused
before anything is written), the workflow (deploy p3-gpu -> verify -> cost report) with non-default answers on its
deploy node (2 replicas, zones typed as AWX's text answer) at verbosity 4 with the fact cache on (the secrets
checks read its outputs), every deploy template and the pre-flight with their defaults in check mode (a deploy
takes minutes on the 2-core CI machine), the switch template (p3-gpu -> p1-tpu, a real switch) and the teardown
template. Every object is named for this module (namespace ``awx-launch``,
node pools ``awx-*``), set in the test's inventory as an AWX user would set inventory variables.
"""
import base64
import json
import secrets
import sys
from pathlib import Path

import polling
import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.awx import harness  # noqa: E402

pytestmark = pytest.mark.cluster

NAMESPACE = "awx-launch"
POOLS = {"p3-gpu": "awx-t4-pool", "p1-tpu": "awx-tpu-pool", "p3-tpu": "awx-tpu-pool"}
LLMISVCS = {"p3-gpu": "awx-p3-gpu", "p1-tpu": "awx-p1-tpu", "p3-tpu": "awx-p3-tpu"}
TEMPLATES = harness.job_templates()
WORKFLOW = harness.workflows()["LLM serving - deploy, verify, cost report (pattern 3 GPU)"]
DEPLOY = {"p1-tpu": "LLM serving - deploy pattern 1 TPU", "p3-tpu": "LLM serving - deploy pattern 3 TPU",
          "p3-gpu": "LLM serving - deploy pattern 3 GPU"}
# One token and password per run, so that finding them anywhere means this run leaked them.
HF_TOKEN = "hf_awx" + secrets.token_hex(12)
REGISTRY_PASSWORD = "awx-pw-" + secrets.token_hex(12)
REGISTRY_USER = "awx-test"


def inventory_vars(cluster, report_dir):
    """Inventory "llm-serving-gke" as AWX imports it from inventories/example-gke (variables unrendered), with
    the variables a user edits in AWX to point it at the local cluster and keep this test's objects apart."""
    hostvars, group_vars = harness.scm_inventory("inventories/example-gke/hosts.yml")
    group_vars.update({
        "llm_serving_gcp_location": cluster["GKE_LOCATION"],
        "llm_serving_gke_cluster": cluster["GKE_CLUSTER"],
        "llm_serving_gke_api_endpoint": cluster["GKE_API_ENDPOINT"],
        # The simulated GKE API takes a bearer token. AWX's GCE credential injects a service-account key file
        # whose token exchange only Google performs, and google.cloud refuses that file next to an access token
        # ("Service Account File only works with Service Account-based authentication"): these launches go
        # without it, tests/unit/awx/test_awx_harness.py checks its injection offline (docs/awx.md).
        "llm_serving_gcp_project": cluster["GCP_PROJECT"],
        "llm_serving_gcp_auth_kind": "accesstoken",
        "llm_serving_gcp_access_token": cluster["GCP_ACCESS_TOKEN"],
        "llm_serving_report_dir": str(report_dir),
        "verification_check_pod_health": True,
        # The prefix-cache comparison with round robin attributes each request through the replicas' /metrics of the
        # pods Ready at discovery; on the loaded 2-core CI machine a readiness probe that times out hides a serving
        # replica and leaves its requests unattributed (a flake seen in CI). These launches test how AWX runs the
        # templates; the threshold itself is tested by test_verification_role.py.
        "verification_cache_require_beats_round_robin": False,
        "verification_measured_on": "local-simulator",
        "pattern_catalog_extra": {key: {"llmisvc_name": LLMISVCS[key], "nodepool": {"name": POOLS[key]}}
                                  for key in LLMISVCS},
    })
    group_vars["pattern_overrides"] = {**group_vars["pattern_overrides"], "namespace": NAMESPACE}
    return hostvars, group_vars


def awx_credentials(cluster):
    return [
        harness.Credential("LLM Serving - GKE kubeconfig",
                           {"kubeconfig": Path(cluster["KUBECONFIG"]).read_text()}),
        harness.Credential("LLM Serving - Hugging Face token", {"hf_token": HF_TOKEN}),
        harness.Credential("LLM Serving - Registry pull secret",
                           {"registry": "registry.redhat.io", "username": REGISTRY_USER,
                            "password": REGISTRY_PASSWORD}),
    ]


@pytest.fixture(scope="module")
def awx(local_cluster, tmp_path_factory, k8s):
    k8s_client = k8s
    workdir = tmp_path_factory.mktemp("awx-jobs")
    report_dir = workdir / "reports"
    report_dir.mkdir()
    hostvars, inventory = inventory_vars(local_cluster, report_dir)
    credentials = awx_credentials(local_cluster)
    gke = requests.Session()
    gke.headers["Authorization"] = f"Bearer {local_cluster['GCP_ACCESS_TOKEN']}"
    pools_url = (f"{local_cluster['GKE_API_ENDPOINT']}/v1/projects/{local_cluster['GCP_PROJECT']}/locations/"
                 f"{local_cluster['GKE_LOCATION']}/clusters/{local_cluster['GKE_CLUSTER']}/nodePools")

    def cleanup():
        """Remove what an earlier run of this module left (namespace, node pools), so each run starts bare."""
        namespaces = k8s_client.resources.get(api_version="v1", kind="Namespace")
        if NAMESPACE in [n.metadata.name for n in namespaces.get().items]:
            namespaces.delete(name=NAMESPACE)
        for name in set(POOLS.values()):
            # GKE runs one operation per cluster at a time: other tests' operations answer 400 FAILED_PRECONDITION.
            polling.wait_for(lambda name=name: gke.delete(f"{pools_url}/{name}", timeout=30).status_code in (
                200, 404), timeout=300, interval=2, what=f"node pool {name} deletion accepted")
        polling.wait_for(lambda: NAMESPACE not in [n.metadata.name for n in namespaces.get().items] and all(
            gke.get(f"{pools_url}/{name}", timeout=30).status_code == 404 for name in set(POOLS.values())),
            timeout=300, interval=2, what=f"namespace {NAMESPACE} and the awx-* node pools gone")

    cleanup()

    class Awx:
        jobs = []

        def launch(self, name, credentials_=None, **kwargs):
            template = TEMPLATES[name]
            creds = credentials if credentials_ is None else credentials_
            result = harness.launch(template, inventory, credentials=creds if template["credentials"] else [],
                                    workdir=workdir, hostvars=hostvars, **kwargs)
            self.jobs.append(result)
            return result

        def pool(self, name):
            response = gke.get(f"{pools_url}/{name}", timeout=30)
            return response.json() if response.status_code == 200 else None

    awx_ = Awx()
    awx_.report_dir = report_dir
    yield awx_
    cleanup()


def describe(job):
    return f"{job.status} rc={job.rc}: {job.failure_messages()}\n{job.stdout[-6000:]}"


def ready_replicas(k8s, name):
    """Ready workload pods of an llmisvc (KServe labels: component llminferenceservice-workload)."""
    pods = k8s.resources.get(api_version="v1", kind="Pod").get(
        namespace=NAMESPACE, label_selector="app.kubernetes.io/component=llminferenceservice-workload").items
    return [p.metadata.name for p in pods if p.metadata.name.startswith(f"{name}-kserve-")
            and any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))]


# ---------------------------------------------------------------- 1. refused before anything is written

def test_bad_survey_answers_refused_by_awx():
    with pytest.raises(harness.SurveyError) as replicas:
        harness.launch_extra_vars(TEMPLATES[DEPLOY["p3-gpu"]], {"pattern_replicas": "-1"})
    assert replicas.value.errors == ["'pattern_replicas' value -1 is too small (must be at least 1)."]
    with pytest.raises(harness.SurveyError) as pattern:
        harness.launch_extra_vars(TEMPLATES["LLM serving - switch pattern"],
                                  {"switch_from": "p3-gpu", "switch_to": "p9-gpu"})
    assert pattern.value.errors == ["Value p9-gpu for 'switch_to' expected to be one of ['p1-tpu', 'p3-tpu', "
                                    "'p3-gpu']."]


def test_zone_outside_the_region_refused_before_any_write(awx, k8s):
    job = awx.launch(DEPLOY["p3-gpu"], answers={"nodepool_node_locations": "europe-west4-b, us-central1-a"})
    assert job.status == "failed", describe(job)
    messages = " ".join(job.failure_messages())
    assert "nodepool_node_locations" in messages and "us-central1-a" in messages, messages
    assert awx.pool(POOLS["p3-gpu"]) is None, "the node pool was created before the zone was refused"
    namespaces = [n.metadata.name for n in k8s.resources.get(api_version="v1", kind="Namespace").get().items]
    assert NAMESPACE not in namespaces, "the namespace was created before the zone was refused"


# ---------------------------------------------------------------- 2. the workflow, with answers on its deploy node

# The survey answers a user fills into the workflow's deploy node (WorkflowJobTemplateNode.extra_data), typed as
# AWX's UI sends them; the node's job runs at verbosity 4 with the fact cache on (job template settings), so that
# the secrets checks below read the fullest outputs AWX keeps.
DEPLOY_ANSWERS = {"pattern_replicas": "2", "nodepool_node_locations": "europe-west4-a, europe-west4-b"}


@pytest.fixture(scope="module")
def workflow(awx):
    def launch_node(node, extra_data, artifacts):
        name = node["unified_job_template"]["name"]
        if node["identifier"] == "deploy":
            return awx.launch(name, answers=DEPLOY_ANSWERS, artifacts=artifacts, verbosity=4, use_fact_cache=True)
        if node["identifier"] == "verify":
            # Answers on the verify node for a shared 2-core CI machine: under that load some /metrics reads around
            # the prefix-cache requests time out (requests left unattributed) and a request in a hundred fails;
            # the thresholds themselves are tested by test_verification_role.py.
            extra_data = {**extra_data, "verification_min_success_rate": "0.95",
                          "verification_cache_require_beats_round_robin": False}
        return awx.launch(name, answers={k: v for k, v in extra_data.items() if k.startswith("verification_min")},
                          runtime_extra_vars={k: v for k, v in extra_data.items()
                                              if not k.startswith("verification_min")}, artifacts=artifacts)

    return harness.run_workflow(WORKFLOW, launch_node)


@pytest.fixture(scope="module")
def deploy_with_answers(workflow):
    return workflow[1]["deploy"]


def test_workflow_runs_in_order_and_hands_on_set_stats(workflow, awx):
    order, results = workflow
    assert order == ["deploy", "verify", "cost-report"], {k: describe(v) for k, v in results.items()}
    for identifier, job in results.items():
        assert job.status == "successful", f"{identifier}: {describe(job)}"
    handed = results["verify"].artifacts["cost_measured_throughput"]
    assert list(handed) == [LLMISVCS["p3-gpu"]], handed
    # The cost report job received the verify job's artifact as an extra var and used the measured throughput.
    assert results["cost-report"].extra_vars["cost_measured_throughput"] == handed
    rps = handed[LLMISVCS["p3-gpu"]]
    rps = rps["requests_per_second"] if isinstance(rps, dict) else rps
    report = (awx.report_dir / "cost-report.md").read_text()
    assert f"{rps:.2f} measured (handed over by verify.yml)" in report, report


# ---------------------------------------------------------------- 3. non-default answers, secrets

def test_replicas_answer_gives_two_ready_replicas(deploy_with_answers, k8s):
    job = deploy_with_answers
    assert job.status == "successful", describe(job)
    assert job.extra_vars["pattern_replicas"] == 2  # typed as AWX's UI sends an integer answer
    llmisvc = k8s.resources.get(api_version="serving.kserve.io/v1alpha1", kind="LLMInferenceService").get(
        namespace=NAMESPACE, name=LLMISVCS["p3-gpu"])
    assert llmisvc.spec.replicas == 2
    assert len(ready_replicas(k8s, LLMISVCS["p3-gpu"])) == 2


def test_zone_text_answer_is_honoured(deploy_with_answers, awx):
    assert deploy_with_answers.status == "successful", describe(deploy_with_answers)
    assert deploy_with_answers.extra_vars["nodepool_node_locations"] == "europe-west4-a, europe-west4-b"
    assert awx.pool(POOLS["p3-gpu"])["locations"] == ["europe-west4-a", "europe-west4-b"]


def test_secrets_reach_the_cluster(deploy_with_answers, k8s):
    assert deploy_with_answers.status == "successful", describe(deploy_with_answers)
    core = k8s.resources.get(api_version="v1", kind="Secret")
    hf = core.get(namespace=NAMESPACE, name="hf-token")
    assert base64.b64decode(hf.data["HF_TOKEN"]).decode() == HF_TOKEN
    pull = core.get(namespace=NAMESPACE, name="redhat-pull-secret")
    auths = json.loads(base64.b64decode(pull.data[".dockerconfigjson"]))["auths"]
    assert auths["registry.redhat.io"]["password"] == REGISTRY_PASSWORD
    assert base64.b64decode(auths["registry.redhat.io"]["auth"]).decode() == f"{REGISTRY_USER}:{REGISTRY_PASSWORD}"


def leaked_forms(secret):
    return {secret, base64.b64encode(secret.encode()).decode(),
            base64.b64encode(f"{REGISTRY_USER}:{secret}".encode()).decode()}


def test_secrets_stay_out_of_awx_outputs(deploy_with_answers, awx):
    job = deploy_with_answers
    assert job.status == "successful", describe(job)
    assert "<127.0.0.1>" in job.stdout or "ESTABLISH LOCAL CONNECTION" in job.stdout, "not verbosity 4 output"
    outputs = {"stdout": job.stdout,
               "job_events": "\n".join(p.read_text() for p in (job.artifact_dir / "job_events").glob("*.json")),
               "artifacts (set_stats)": json.dumps(job.artifacts),
               "fact cache": "\n".join(p.read_text() for p in (job.artifact_dir / "fact_cache").rglob("*")
                                       if p.is_file())}
    assert (job.artifact_dir / "fact_cache").is_dir(), "the fact cache was not on"
    for secret in (HF_TOKEN, REGISTRY_PASSWORD):
        for where, text in outputs.items():
            found = [form for form in leaked_forms(secret) if form in text]
            assert not found, f"a credential secret appears in {where}"


# ---------------------------------------------------------------- 4. the other templates, switch, teardown

@pytest.mark.parametrize("name", ["LLM serving - preflight", DEPLOY["p1-tpu"], DEPLOY["p3-tpu"], DEPLOY["p3-gpu"]])
def test_template_green_with_defaults_in_check_mode(awx, name):
    """Defaults of every deploy template (p3-gpu: 3 replicas over the deployed 2) and the pre-flight, job type check."""
    job = awx.launch(name, job_type="check")
    assert job.status == "successful", describe(job)
    assert job.cmdline[0] == "--check"


def test_switch_template_switches(awx, k8s):
    job = awx.launch("LLM serving - switch pattern", answers={"switch_from": "p3-gpu", "switch_to": "p1-tpu"})
    assert job.status == "successful", describe(job)
    assert job.extra_vars["allow_downtime"] == "false"  # the survey default
    llmisvcs = k8s.resources.get(api_version="serving.kserve.io/v1alpha1", kind="LLMInferenceService")
    names = [i.metadata.name for i in llmisvcs.get(namespace=NAMESPACE).items]
    assert names == [LLMISVCS["p1-tpu"]], names
    route = k8s.resources.get(api_version="gateway.networking.k8s.io/v1", kind="HTTPRoute").get(
        namespace=NAMESPACE, name="qwen2-3b")
    backends = [ref.name for rule in route.spec.rules for ref in rule.backendRefs or []]
    assert backends and all(LLMISVCS["p1-tpu"] in b for b in backends), backends


def test_teardown_template_scales_the_pools_to_zero(awx, k8s):
    job = awx.launch("LLM serving - teardown", runtime_extra_vars={"teardown_patterns": ["p1-tpu", "p3-gpu"]})
    assert job.status == "successful", describe(job)
    for pattern in ("p1-tpu", "p3-gpu"):
        pool = awx.pool(POOLS[pattern])
        assert pool is not None and pool["autoscaling"].get("minNodeCount", 0) == 0, pool
        nodes = k8s.resources.get(api_version="v1", kind="Node").get(
            label_selector=f"cloud.google.com/gke-nodepool={POOLS[pattern]}").items
        assert nodes == [], [n.metadata.name for n in nodes]
    llmisvcs = k8s.resources.get(api_version="serving.kserve.io/v1alpha1", kind="LLMInferenceService")
    assert llmisvcs.get(namespace=NAMESPACE).items == []
