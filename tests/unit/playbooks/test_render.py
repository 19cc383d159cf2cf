"""playbooks/render.yml: the plan of a pattern written with no API reachable (no kubeconfig, an unreachable API
server and GKE endpoint): manifests from the llmisvc role's render, Secrets REDACTED, gcloud + kubectl commands.
Also the catalog's public images (pattern_image_source=public): no pull secret anywhere in the plan."""
import os
import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tests.unit.once_per_session import once_per_session

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "hf_render_must_not_leak_0123456789"
UNREACHABLE = "https://127.0.0.1:9"


def _render(cwd, *args):
    kubeconfig = cwd / "unreachable-kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "x", "cluster": {"server": UNREACHABLE}}],
        "users": [{"name": "x", "user": {"token": "unused"}}],
        "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}]}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBECONFIG", "K8S_AUTH_", "GCP_"))}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               ANSIBLE_NOCOLOR="1", K8S_AUTH_KUBECONFIG=str(kubeconfig), GCP_PROJECT="demo-project",
               LLM_SERVING_HF_TOKEN=TOKEN, PWD=str(cwd))
    out = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(ROOT / "inventories" / "example-gke"),
         str(ROOT / "playbooks" / "render.yml"), "-e", f"llm_serving_gke_api_endpoint={UNREACHABLE}", *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=600, check=False)
    return out


def _render_gpu_plan(cwd):
    out = _render(cwd, "-e", "pattern_name=p3-gpu")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    return {"plan": str(cwd / "rendered" / "p3-gpu"), "stdout": out.stdout, "stderr": out.stderr}


@pytest.fixture(scope="module")
def gpu_plan(tmp_path_factory):
    # One render.yml run shared by both xdist workers.
    plan = once_per_session(tmp_path_factory, "render-p3-gpu", _render_gpu_plan)
    return Path(plan["plan"]), SimpleNamespace(stdout=plan["stdout"], stderr=plan["stderr"])


def _docs(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_files_under_the_default_directory(gpu_plan):
    plan = gpu_plan[0]
    assert sorted(str(p.relative_to(plan)) for p in plan.rglob("*") if p.is_file()) == [
        "commands.sh", "manifests/10-namespace-secrets.yaml", "manifests/20-llmisvc.yaml",
        "manifests/30-gke-policies.yaml"]


def test_manifests_are_the_llmisvc_render_and_secrets_are_redacted(gpu_plan):
    plan, out = gpu_plan
    secrets = _docs(plan / "manifests" / "10-namespace-secrets.yaml")
    assert [(d["kind"], d["metadata"]["name"]) for d in secrets] == [
        ("Namespace", "llm-d-inference-scheduling"), ("Secret", "hf-token"), ("Secret", "redhat-pull-secret")]
    assert secrets[1]["stringData"] == {"HF_TOKEN": "REDACTED"}
    assert secrets[2]["stringData"] == {".dockerconfigjson": "REDACTED"}
    workload = _docs(plan / "manifests" / "20-llmisvc.yaml")
    assert [d["kind"] for d in workload] == ["LLMInferenceServiceConfig", "LLMInferenceService"]
    llmisvc = workload[1]
    assert llmisvc["metadata"]["name"] == "qwen2-3b-pattern3-gpu" and llmisvc["spec"]["replicas"] == 3
    assert llmisvc["spec"]["template"]["containers"][0]["image"].startswith("registry.redhat.io/")
    policies = _docs(plan / "manifests" / "30-gke-policies.yaml")
    assert {d["kind"] for d in policies} == {"HealthCheckPolicy", "GCPBackendPolicy"}
    everything = out.stdout + out.stderr + "".join(p.read_text() for p in plan.rglob("*") if p.is_file())
    assert TOKEN not in everything


def test_commands_are_gcloud_from_the_module_spec_then_kubectl_apply(gpu_plan):
    plan = gpu_plan[0]
    lines = [line for line in (plan / "commands.sh").read_text().splitlines() if line and not line.startswith("#")]
    gcloud = shlex.split(next(line for line in lines if line.startswith("gcloud ")))
    assert gcloud[:5] == ["gcloud", "container", "node-pools", "create", "gpu-t4-pool"]
    assert {"--machine-type=n1-standard-4", "--num-nodes=3", "--enable-autoscaling", "--min-nodes=0",
            "--max-nodes=5", "--accelerator=type=nvidia-tesla-t4,count=1,gpu-driver-version=default"} <= set(gcloud)
    assert gcloud[gcloud.index("--cluster") + 1] == "llmd-native-gateway-tpu-pattern1"
    assert gcloud[gcloud.index("--project") + 1] == "demo-project"
    applies = [line for line in lines if line.startswith("kubectl apply")]
    assert [line.split()[-1] for line in applies] == ["manifests/20-llmisvc.yaml", "manifests/30-gke-policies.yaml"]
    script = " ".join((plan / "commands.sh").read_text().replace("\\\n", " ").split())
    assert "create secret docker-registry redhat-pull-secret --docker-server=registry.redhat.io" in script


def test_public_images_need_no_pull_secret(tmp_path):
    out = _render(tmp_path, "-e", "pattern_name=p1-tpu", "-e", "pattern_image_source=public",
                  "-e", f"render_dir={tmp_path / 'plan'}")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    plan = tmp_path / "plan"
    llmisvc = _docs(plan / "manifests" / "20-llmisvc.yaml")[-1]
    template = llmisvc["spec"]["template"]
    assert template["containers"][0]["image"] == "docker.io/vllm/vllm-tpu:v0.12.0"
    assert "imagePullSecrets" not in template
    assert [d["kind"] for d in _docs(plan / "manifests" / "10-namespace-secrets.yaml")] == ["Namespace", "Secret"]
    assert "docker-registry" not in (plan / "commands.sh").read_text()


def test_bad_image_source_and_missing_pattern_are_refused(tmp_path):
    bad = _render(tmp_path, "-e", "pattern_name=p3-gpu", "-e", "pattern_image_source=quay")
    assert bad.returncode != 0 and "pattern_image_source" in bad.stdout and "redhat, public" in bad.stdout
    missing = _render(tmp_path)
    assert missing.returncode != 0 and "pattern_name is not set" in missing.stdout
