# -*- coding: utf-8 -*-
# Copyright (c) 2026 llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Plans and checks of the roles, computed in Python: ``pattern_problems`` (pattern role), ``secrets_desired`` and
``secret_plan`` (secrets role). The logic lives in ``plugins/module_utils`` (``pattern_check``, ``secret_plan``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible plugin boilerplate)

from ansible.errors import AnsibleFilterError

from ansible_collections.llm_serving.gke.plugins.module_utils import pattern_check
from ansible_collections.llm_serving.gke.plugins.module_utils import secret_plan as secret_plan_utils


def pattern_problems(pattern):
    if not isinstance(pattern, dict):
        raise AnsibleFilterError(f"pattern_problems: the input must be a pattern (dict), got {type(pattern).__name__}")
    try:
        return pattern_check.pattern_problems(pattern)
    except (KeyError, TypeError) as exc:
        raise AnsibleFilterError(f"pattern_problems: the pattern lacks or mistypes {exc} (validate it against the "
                                 "pattern entry schema first)") from exc


def secret_plan(desired, current_results, labels):
    if not isinstance(desired, list):
        raise AnsibleFilterError("secret_plan: the input must be the list of secrets_desired")
    # The loop of k8s_info ran over the same desired list; its reads are matched by namespace and name.
    current = secret_plan_utils.current_from_results(current_results)
    return secret_plan_utils.secret_plan(desired, current, labels or {})


def secrets_desired(spec):
    if not isinstance(spec, dict):
        raise AnsibleFilterError("secrets_desired: the input must be a dict with pull_secret and hf_token")
    try:
        return secret_plan_utils.desired_secrets(spec.get("pull_secret"), spec.get("hf_token"))
    except KeyError as exc:
        raise AnsibleFilterError(f"secrets_desired: {exc} is missing") from exc


class FilterModule:
    def filters(self):
        return {"pattern_problems": pattern_problems, "secret_plan": secret_plan, "secrets_desired": secrets_desired}
