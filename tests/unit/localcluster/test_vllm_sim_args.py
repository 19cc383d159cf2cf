"""What the simulated vLLM accepts on its command line, how pod commands resolve to it, and which images exist."""
import base64
import json

import pytest
import yaml

from localcluster import crds, images, vllm_flags


def seed_main_container(name):
    """Main container of a seed manifest (johnahull/llm-d-xks-gke, pinned in localcluster/crds.py)."""
    manifest = yaml.safe_load(crds.seed_manifest(name).read_text())
    return manifest["spec"]["template"]["containers"][0]


# ---------------------------------------------------------------- argument parsing

def test_unknown_flag_fails_like_vllms_argparse():
    with pytest.raises(vllm_flags.VllmArgumentError) as err:
        vllm_flags.parse_vllm_args(["--model=/mnt/models", "--prefix-cache-block-size=16"])
    assert err.value.exit_code == 2
    assert err.value.output.startswith("usage: api_server.py")
    assert err.value.output.endswith("api_server.py: error: unrecognized arguments: --prefix-cache-block-size=16\n")


def test_invalid_choice_is_reported_by_argparse():
    with pytest.raises(vllm_flags.VllmArgumentError) as err:
        vllm_flags.parse_vllm_args(["--dtype=fp64"])
    assert "argument --dtype: invalid choice: 'fp64'" in err.value.output


def test_underscored_flags_are_accepted_as_vllm_does():
    args = vllm_flags.parse_vllm_args(["--max_model_len=2048", "--gpu_memory_utilization", "0.75"])
    assert (args.max_model_len, args.gpu_memory_utilization) == (2048, 0.75)


def test_prefix_caching_is_on_by_default_in_v1_and_can_be_disabled():
    assert vllm_flags.parse_vllm_args([]).enable_prefix_caching is True
    assert vllm_flags.parse_vllm_args(["--no-enable-prefix-caching"]).enable_prefix_caching is False


def test_vllm_serve_takes_the_model_positionally():
    args = vllm_flags.parse_vllm_args(["/mnt/models", "--served-model-name", "a", "b", "--port", "8000"],
                                      prog=vllm_flags.SERVE_PROG)
    assert (args.model, args.served_model_name, args.port) == ("/mnt/models", ["a", "b"], 8000)


# ---------------------------------------------------------------- command resolution

def test_seed_tpu_command_parses():
    main = seed_main_container("llmisvc-tpu.yaml")
    prog, argv = vllm_flags.resolve_vllm_command(["/bin/bash", "-c"], main["args"], {})
    args = vllm_flags.parse_vllm_args(argv, prog)
    assert prog == "api_server.py"
    assert (args.model, args.tensor_parallel_size, args.max_model_len) == ("/mnt/models", 4, 2048)
    assert args.served_model_name is None  # the seed serves "/mnt/models"


def test_seed_gpu_command_has_the_flag_vllm_rejects():
    main = seed_main_container("llmisvc-gpu-pattern3.yaml")
    prog, argv = vllm_flags.resolve_vllm_command(["/bin/bash", "-c"], main["args"], {})
    with pytest.raises(vllm_flags.VllmArgumentError) as err:
        vllm_flags.parse_vllm_args(argv, prog)
    assert "api_server.py: error: unrecognized arguments: --prefix-cache-block-size=16" in err.value.output


def _rendered_template_command(model="Qwen/Qwen2.5-3B-Instruct", namespace="ns"):
    """KServe's template command with its Go template rendered the simple way (TLS and TP off)."""
    template = crds.presets_dir() / "config-llm-template.yaml"
    container = yaml.safe_load(template.read_text())["spec"]["template"]["containers"][0]
    script = container["command"][2]
    script = script.replace("{{ .Spec.Model.Name }}", model).replace("{{ .ObjectMeta.Namespace }}", namespace)
    script = script.replace("{{ shutdownTimeout .Spec.Template 15 }}", "15")
    script = script.replace("{{ kvTransferConfig .Spec.KVCacheOffloading }}", "")
    lines = [line for line in script.splitlines() if "{{" not in line]
    return container["command"][:2] + ["\n".join(lines)] + container["command"][3:]


def test_kserve_template_runs_vllm_serve_with_served_names_and_extra_args():
    command = _rendered_template_command()
    prog, argv = vllm_flags.resolve_vllm_command(command, ["--enable-prefix-caching"],
                                                 {"VLLM_ADDITIONAL_ARGS": "--max-model-len=2048"})
    args = vllm_flags.parse_vllm_args(argv, prog)
    assert prog == "vllm serve"
    assert args.model == "/mnt/models"
    assert args.served_model_name == ["Qwen/Qwen2.5-3B-Instruct", "publishers/ns/models/Qwen/Qwen2.5-3B-Instruct"]
    assert (args.max_model_len, args.enable_prefix_caching, args.disable_uvicorn_access_log) == (2048, True, True)


def test_kserve_template_with_a_whole_command_as_args_fails():
    """Seed-style args (a full `python3 -m ...` string) under KServe's template become extra vllm serve args."""
    command = _rendered_template_command()
    seed_args = seed_main_container("llmisvc-tpu.yaml")["args"]
    prog, argv = vllm_flags.resolve_vllm_command(command, seed_args, {})
    with pytest.raises(vllm_flags.VllmArgumentError) as err:
        vllm_flags.parse_vllm_args(argv, prog)
    assert "vllm serve: error: unrecognized arguments: python3" in err.value.output


def test_plain_args_use_the_images_entrypoint():
    prog, argv = vllm_flags.resolve_vllm_command(None, ["--model", "/mnt/models"], {})
    assert (prog, argv) == ("api_server.py", ["--model", "/mnt/models"])


def test_non_vllm_commands_are_not_vllm():
    assert vllm_flags.resolve_vllm_command(["sleep", "infinity"], [], {}) is None
    assert vllm_flags.resolve_vllm_command(["/bin/sh", "-c", "echo hi"], [], {}) is None


# ---------------------------------------------------------------- images

def _pull_secret(registry, user="u", password="p"):
    config = {"auths": {registry: {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}}}
    return images.decode_pull_secret({".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()})


def test_red_hat_registry_needs_a_pull_secret():
    with pytest.raises(images.ImagePullError) as err:
        images.resolve_image("registry.redhat.io/rhaiis/vllm-cuda-rhel9:3.0.0")
    assert "unauthorized: Please login to the Red Hat Registry" in err.value.message
    info = images.resolve_image("registry.redhat.io/rhaiis/vllm-cuda-rhel9:3.0.0",
                                [_pull_secret("registry.redhat.io")])
    assert (info.kind, info.vllm_version) == (images.VLLM_CUDA, "0.8.4")
    assert info.image_id.startswith("registry.redhat.io/rhaiis/vllm-cuda-rhel9@sha256:")


def test_pull_secret_for_another_registry_does_not_help():
    with pytest.raises(images.ImagePullError):
        images.resolve_image("registry.redhat.io/rhaiis/vllm-tpu-rhel9:3.2.5", [_pull_secret("quay.io")])


def test_unknown_tag_and_digest_are_not_found():
    secret = [_pull_secret("https://registry.redhat.io")]
    with pytest.raises(images.ImagePullError) as err:
        images.resolve_image("registry.redhat.io/rhaiis/vllm-cuda-rhel9:9.9.9", secret)
    assert err.value.message.startswith("rpc error: code = NotFound")
    assert err.value.message.endswith("registry.redhat.io/rhaiis/vllm-cuda-rhel9:9.9.9: not found")
    with pytest.raises(images.ImagePullError):
        images.resolve_image("registry.redhat.io/rhaiis/vllm-cuda-rhel9@sha256:" + "0" * 64, secret)


def test_docker_hub_names_are_normalised():
    assert images.parse_reference("busybox") == ("docker.io", "library/busybox", "latest", None)
    assert images.resolve_image("kserve/storage-initializer:v0.20.0").kind == images.STORAGE_INITIALIZER
    with pytest.raises(images.ImagePullError) as err:
        images.resolve_image("example/no-such-image:1.0")
    assert "pull access denied" in err.value.message


def test_extra_images_from_the_environment(monkeypatch):
    monkeypatch.setenv("LOCALCLUSTER_EXTRA_IMAGES", "example.com/team/model-server:1.2=vllm-cuda")
    assert images.resolve_image("example.com/team/model-server:1.2").is_vllm
