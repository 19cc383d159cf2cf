# -*- coding: utf-8 -*-
# Copyright (c) 2026 llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filter ``vllm_args_check``: refuse vLLM command-line flags (and common wrong values) the image's vLLM refuses.

vLLM exits with ``unrecognized arguments`` on an unknown flag, which on a cluster shows up only as a
crash-looping pod minutes after the deployment. Checking the flags against the known set before
anything is applied turns that into an immediate error that names the flag and the right one.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible plugin boilerplate)

import difflib
import shlex

from ansible.errors import AnsibleFilterError

from ansible_collections.llm_serving.gke.plugins.module_utils import vllm_versions

# Without a version: a flag of any release in the table (vllm_versions.VLLM_RELEASES) passes.
ANY_RELEASE_FLAGS = frozenset().union(*(vllm_versions.flags_for(v) for v in vllm_versions.VLLM_RELEASES))


# Flags people write from memory or copy from other servers, with the vLLM flag they mean.
KNOWN_MISTAKES = {
    "--prefix-cache-block-size": "--block-size",
    "--prefix-caching-block-size": "--block-size",
    "--enable-prefix-cache": "--enable-prefix-caching",
    "--served-model": "--served-model-name",
    "--model-name": "--served-model-name",
    "--tp": "--tensor-parallel-size",
    "--tensor-parallel": "--tensor-parallel-size",
    "--tp-size": "--tensor-parallel-size",
    "--max-model-length": "--max-model-len",
    "--max-seq-len": "--max-model-len",
    "--max-batch-size": "--max-num-seqs",
    "--gpu-memory-util": "--gpu-memory-utilization",
    "--gpu-mem-util": "--gpu-memory-utilization",
    "--disable-log-request": "--disable-log-requests",
}


def _tokens(args):
    """Flags as a list; a shell command string (the seed's `args`) is split and its program part dropped."""
    if isinstance(args, str):
        tokens = shlex.split(args.replace("\\\n", " "))
        first_flag = next((i for i, tok in enumerate(tokens) if tok.startswith("--")), len(tokens))
        return tokens[first_flag:]
    if isinstance(args, (list, tuple)):
        bad = [a for a in args if not isinstance(a, str)]
        if bad:
            raise AnsibleFilterError(f"vLLM args must be strings, got {bad[0]!r}")
        return list(args)
    raise AnsibleFilterError(f"vLLM args must be a list of strings or a command string, got {type(args).__name__}")


def _flag_name(token):
    if token.startswith("-O") and not token.startswith("--") and token != "-O":
        return "-O"  # vLLM's FlexibleArgumentParser turns -O3 / -O=3 / -O.level=3 into the -O option
    name = token.split("=", 1)[0]
    # vLLM's parser accepts --max_model_len for --max-model-len.
    return name[:2] + name[2:].replace("_", "-") if name.startswith("--") else name


def _suggestion(flag, known):
    if flag in KNOWN_MISTAKES:
        return KNOWN_MISTAKES[flag]
    close = difflib.get_close_matches(flag, sorted(known), n=1, cutoff=0.75)
    return close[0] if close else None


def _known(vllm_version):
    if vllm_version in (None, ""):
        return ANY_RELEASE_FLAGS
    try:
        return vllm_versions.flags_for(vllm_version)
    except ValueError as err:
        raise AnsibleFilterError(f"vllm_version: {err}") from err


def _version_hint(flag, vllm_version):
    """Why a flag of another release is refused by this one."""
    if vllm_version in (None, ""):
        return ""
    added, removed = vllm_versions.release_of_change(flag)
    release = vllm_versions.table_release(vllm_version)
    if removed and vllm_versions.version_tuple(removed) <= vllm_versions.version_tuple(release):
        return f" (removed in vLLM {removed}; the image runs {vllm_version})"
    if added and vllm_versions.version_tuple(added) > vllm_versions.version_tuple(release):
        return f" (added in vLLM {added}; the image runs {vllm_version})"
    return ""


def _check_value(source, flag, value, vllm_version, accelerator):
    if value is None:
        return
    problem = vllm_versions.value_error(flag, value, vllm_version or vllm_versions.VLLM_RELEASES[-1], accelerator)
    if problem:
        raise AnsibleFilterError(f"{source}: {problem}")


def vllm_args_check(args, source="vllm_args", extra_flags=None, reserved=None, vllm_version=None, accelerator=None):
    """Return the vLLM flags unchanged (as a list) or fail naming the first flag or value vLLM would refuse."""
    known = _known(vllm_version) | frozenset(extra_flags or ())
    reserved = dict(reserved or {})
    seen = {}
    previous_flag = None
    for token in _tokens(args):
        if not token.startswith("-"):
            if previous_flag is None:
                raise AnsibleFilterError(
                    f"{source}: '{token}' is not a vLLM flag (write --flag or --flag=value)")
            _check_value(source, previous_flag, token, vllm_version, accelerator)
            previous_flag = None  # a value for the flag before it
            continue
        flag = _flag_name(token)
        if flag in reserved:
            raise AnsibleFilterError(f"{source}: {flag} is set by the llmisvc role ({reserved[flag]}); remove it")
        if flag not in known:
            hint = _suggestion(flag, known)
            release = f"vLLM {vllm_version}" if vllm_version else "vLLM"
            raise AnsibleFilterError(
                f"{source}: {release} does not accept {flag}{_version_hint(flag, vllm_version)} (the server would "
                "exit with 'unrecognized arguments')" + (f"; use {hint} instead" if hint else ""))
        if flag in seen:
            raise AnsibleFilterError(f"{source}: {flag} is given twice ({seen[flag]} and {token})")
        seen[flag] = token
        if "=" in token:
            _check_value(source, flag, token.split("=", 1)[1], vllm_version, accelerator)
        attached = "=" in token or (flag == "-O" and token != "-O")  # --flag=value, -O3
        previous_flag = None if attached else flag
    return list(_tokens(args))


def vllm_metric_names(pattern):
    """{engine, kv_cache_usage, prefix_cache_hits, prefix_cache_queries, prefix_cache_hit_rate, requests} for a
    pattern's image (vllm_version) on its accelerator; every value None when the pattern names no vllm_version."""
    pattern = pattern or {}
    version = pattern.get("vllm_version")
    accelerator = (pattern.get("accelerator") or {}).get("type") or pattern.get("accelerator_type")
    if not version:
        return {"vllm_version": None, "engine": None, **{role: None for role in vllm_versions.METRIC_ROLES}}
    try:
        shown = vllm_versions.shows_hidden_metrics(version, list(pattern.get("vllm_args") or []))
        names = vllm_versions.metric_names(version, accelerator, show_hidden=shown)
        engine = vllm_versions.engine_for(version, accelerator)
    except ValueError as err:
        raise AnsibleFilterError(f"vllm_version: {err}") from err
    return {"vllm_version": version, "engine": engine, **names}


class FilterModule:
    def filters(self):
        return {"vllm_args_check": vllm_args_check, "vllm_metric_names": vllm_metric_names}
