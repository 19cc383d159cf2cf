"""The simulated storage initializer refuses a gated Hugging Face download without its own HF_TOKEN.

kserve/kserve v0.20.0 python/storage/kserve_storage/kserve_storage.py (_download_hf: snapshot_download, token from
the environment); huggingface_hub raises GatedRepoError (401) for a gated repo without a token.
"""
from localcluster.node_agent import _gated_model_error


def test_gated_repo_without_token_is_refused():
    error = _gated_model_error("hf://meta-llama/Llama-3.2-1B-Instruct", {})
    assert "GatedRepoError: 401" in error and "meta-llama/Llama-3.2-1B-Instruct" in error


def test_gated_repo_with_token_in_the_init_containers_env_downloads():
    assert _gated_model_error("hf://meta-llama/Llama-3.2-1B-Instruct", {"HF_TOKEN": "hf_x"}) is None


def test_open_repo_needs_no_token():
    assert _gated_model_error("hf://Qwen/Qwen2.5-3B-Instruct", {}) is None
