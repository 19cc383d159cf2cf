"""The vLLM flag allow-list used by the llmisvc role (filter llm_serving.gke.vllm_args_check)."""
import os

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.llm_serving.gke.plugins.filter.vllm_args_check import vllm_args_check
from ansible_collections.llm_serving.gke.plugins.module_utils import vllm_versions

SEED = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))), "shared", "seed", "manifests")


def _seed_args(name):
    with open(os.path.join(SEED, name)) as fh:
        return yaml.safe_load(fh)["spec"]["template"]["containers"][0]["args"][0]


def test_seed_gpu_manifest_as_written_is_refused_naming_the_flag():
    with pytest.raises(AnsibleFilterError) as err:
        vllm_args_check(_seed_args("llmisvc-gpu-pattern3.yaml"), source="seed llmisvc-gpu-pattern3.yaml")
    assert "vLLM does not accept --prefix-cache-block-size" in str(err.value)
    assert "use --block-size instead" in str(err.value)


@pytest.mark.parametrize("name", ["llmisvc-tpu.yaml", "llmisvc-tpu-pattern3.yaml"])
def test_seed_tpu_manifests_pass(name):
    args = vllm_args_check(_seed_args(name))
    assert args[0] == "--model=/mnt/models" and "--tensor-parallel-size=4" in args


def test_valid_forms_are_returned_unchanged():
    args = ["--dtype=half", "--max_model_len=2048", "--block-size", "16", "--enable-prefix-caching", "-tp", "4"]
    assert vllm_args_check(args) == args


@pytest.mark.parametrize(("args", "message"), [
    (["--tensor-paralel-size=4"], "use --tensor-parallel-size instead"),
    (["--totally-made-up"], "vLLM does not accept --totally-made-up (the server would exit"),
    (["half"], "'half' is not a vLLM flag"),
    (["--dtype=half", "--dtype=float16"], "--dtype is given twice"),
    (["--model=/x"], "--model is set by the llmisvc role (mine)"),
    ([3], "vLLM args must be strings"),
])
def test_bad_flags_are_refused(args, message):
    with pytest.raises(AnsibleFilterError) as err:
        vllm_args_check(args, reserved={"--model": "mine"})
    assert message in str(err.value)


def test_extra_flags_extend_the_allow_list():
    assert vllm_args_check(["--brand-new-flag=1"], extra_flags=["--brand-new-flag"]) == ["--brand-new-flag=1"]


def _catalog():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    with open(os.path.join(root, "roles", "pattern", "defaults", "main.yml"), encoding="utf-8") as handle:
        return yaml.safe_load(handle)["pattern_catalog"]


@pytest.mark.parametrize("name", ["p1-tpu", "p3-tpu", "p3-gpu"])
def test_catalog_images_name_their_vllm_version_and_their_flags_pass_it(name):
    entry = _catalog()[name]
    assert entry["vllm_version"] in vllm_versions.VLLM_RELEASES
    assert vllm_args_check(entry["vllm_args"], vllm_version=entry["vllm_version"],
                           accelerator=entry["accelerator"]["type"]) == entry["vllm_args"]


def test_t4_image_runs_v0_and_exposes_its_prefix_cache_hit_rate():
    entry = _catalog()["p3-gpu"]
    assert entry["image"].endswith("vllm-cuda-rhel9:3.0.0") and entry["vllm_version"] == "0.8.4"
    assert vllm_versions.engine_for(entry["vllm_version"], entry["accelerator"]["type"]) == "v0"
    shown = vllm_versions.shows_hidden_metrics(entry["vllm_version"], entry["vllm_args"])
    names = vllm_versions.metric_names(entry["vllm_version"], entry["accelerator"]["type"], show_hidden=shown)
    assert names["kv_cache_usage"] == "vllm:gpu_cache_usage_perc"
    assert names["prefix_cache_hit_rate"] == "vllm:gpu_prefix_cache_hit_rate"
