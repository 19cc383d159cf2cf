# -*- coding: utf-8 -*-
# Copyright (c) 2026 llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The Kubernetes client of the collection's kubernetes.core-based modules (k8s_apply, k8s_read).

The module class, authentication options, API client and service are kubernetes.core's (>= 5.0:
plugins/module_utils/k8s/core.py AnsibleK8SModule, args_common.py AUTH_ARG_SPEC, k8s/client.py get_api_client,
k8s/service.py K8sService), so the modules take the same options, environment (K8S_AUTH_*) and action group
defaults as kubernetes.core.k8s_info.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible plugin boilerplate)

import copy

try:
    from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.client import get_api_client
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.core import AnsibleK8SModule
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.exceptions import CoreException
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.service import K8sService

    HAS_KUBERNETES_COLLECTION = True
except ImportError:
    HAS_KUBERNETES_COLLECTION = False
    AUTH_ARG_SPEC = {}

    class CoreException(Exception):
        """Stands in for kubernetes.core's exception when the collection is missing (never raised then)."""


def argument_spec(**options):
    """kubernetes.core's authentication options plus the module's own ``options``."""
    spec = copy.deepcopy(AUTH_ARG_SPEC)
    spec.update(options)
    return spec


def k8s_module(name, options):
    """The AnsibleK8SModule of module ``llm_serving.gke.<name>`` (check mode supported) with ``options`` and the
    authentication options; fails naming the missing collection when kubernetes.core cannot be imported."""
    if not HAS_KUBERNETES_COLLECTION:
        from ansible.module_utils.basic import AnsibleModule

        AnsibleModule(argument_spec={}, bypass_checks=True).fail_json(
            msg=f"llm_serving.gke.{name} needs the kubernetes.core collection (>= 5.0)")
    return AnsibleK8SModule(argument_spec=argument_spec(**options), supports_check_mode=True)


def run_with_service(module, work):
    """work(client, service) with the API client of the module's authentication options and a K8sService on it;
    returns what work returns. A kubernetes.core failure (no kubeconfig, API unreachable, kind not served) ends
    the module with kubernetes.core's message."""
    try:
        client = get_api_client(module=module)
        return work(client, K8sService(client, module))
    except CoreException as exc:
        module.fail_from_exception(exc)
