#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

DOCUMENTATION = r"""
module: gke_platform_check
short_description: Check that a GKE cluster and its Kubernetes side offer what the serving patterns need
version_added: 0.2.0
description:
  - Read-only pre-flight of the platform layer (docs/gke-setup.md), each problem reported with its fix, all together.
  - GKE (Container API v1) - the control plane version (O(min_gke_version)), the Gateway API channel, the
    HttpLoadBalancing add-on. Compute API v1 - a proxy-only subnet (purpose C(REGIONAL_MANAGED_PROXY), role
    C(ACTIVE)) in the cluster's region and network when the Gateway class is regional.
  - One cluster - the kubeconfig's API server (current context or O(context), or O(host)) must be one of the GKE
    cluster's control plane addresses (C(endpoint), private/public endpoints, DNS endpoint); compared before any
    Kubernetes call, so that node pools and manifests cannot go to different clusters.
  - Kubernetes - the Gateway exists, has a supported class and, when O(gateway_exposure) is set, the chosen exposure;
    one of its listeners admits HTTPRoutes from O(route_namespace) (C(allowedRoutes)); the KServe flavour and
    version (upstream v0.20 supported; Open Data Hub's KServe refused) and the llmisvc controller Deployment; the
    CRDs (served API versions through discovery).
  - Returns a one-line RV(exposure_summary) that says whether the endpoint is public and that it is unauthenticated.
author:
  - llm_serving.gke maintainers (@llm-serving)
extends_documentation_fragment:
  - google.cloud.gcp
  - llm_serving.gke.gcp
  - llm_serving.gke.gcp.cluster
  - kubernetes.core.k8s_auth_options
  - llm_serving.gke.gcp.attributes
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
attributes:
  action_group:
    membership: [llm_serving.gke.gcp, llm_serving.gke.k8s]
options:
  cluster_resource:
    description:
      - The cluster as M(llm_serving.gke.gke_cluster_info) returned it in this run
        (RV(llm_serving.gke.gke_cluster_info#module:cluster)); when its C(name) is O(cluster), the cluster is not
        read again. Empty or another cluster - the module reads it.
    type: dict
    version_added: 0.3.0
  gateway_name:
    description: Name of the Gateway the HTTPRoutes attach to.
    type: str
    default: inference-gateway
  gateway_namespace:
    description: Namespace of the Gateway.
    type: str
    default: opendatahub
  route_namespace:
    description: Namespace of the workload (its HTTPRoute must be admitted by the Gateway).
    type: str
    required: true
  gateway_exposure:
    description:
      - V(internal) (class C(gke-l7-rilb), reachable from the VPC) or V(external) (C(gke-l7-regional-external-managed),
        reachable from the internet). When set, a Gateway of the other kind is refused; unset accepts either.
    type: str
    choices: [internal, external]
  allowed_gateway_classes:
    description: Gateway classes that support InferencePool backends.
    type: list
    elements: str
    default: [gke-l7-regional-external-managed, gke-l7-rilb]
  min_gke_version:
    description: Oldest control plane version accepted.
    type: str
    default: 1.32.3
  kserve_namespace:
    description: Namespace of the KServe llmisvc controller Deployment.
    type: str
    default: kserve
  kserve_deployment:
    description: Name of the KServe llmisvc controller Deployment.
    type: str
    default: llmisvc-controller-manager
  kserve_min_version:
    description: Oldest KServe version accepted (read from the controller image tag).
    type: str
    default: 0.20.0
  llmisvc_api_version:
    description: LLMInferenceService version the deployment writes (V(v1alpha1) or V(v1alpha2)).
    type: str
    default: v1alpha1
  require_inference_pool_v1:
    description: Require the InferencePool CRD C(inference.networking.k8s.io/v1) (the llmisvc router's scheduler).
    type: bool
    default: true
  skip:
    description: Checks not to run.
    type: list
    elements: str
    default: []
    choices: [gke_version, gateway_api, http_load_balancing, proxy_subnet, one_cluster, gateway, allowed_routes,
              kserve, crds]
  fail_on_problems:
    description: Fail the task when a check finds a problem (else only return them in RV(problems)).
    type: bool
    default: true
  timeout:
    description: Seconds for the GCP calls, retries of HTTP 429/5xx included.
    default: 120
notes:
  - Needs C(container.clusters.get) and C(compute.subnetworks.list) (roles/container.clusterViewer and
    roles/compute.networkViewer), and on Kubernetes get on the Gateway, the Namespace, the controller Deployments and
    API discovery.
seealso:
  - module: llm_serving.gke.gke_cluster_info
  - module: llm_serving.gke.gke_proxy_subnet
"""

EXAMPLES = r"""
- name: Check the platform before deploying into llm-d-inference-scheduling
  llm_serving.gke.gke_platform_check:
    project: my-project
    location: europe-west4-a
    cluster: llm-serving
    route_namespace: llm-d-inference-scheduling
    gateway_exposure: internal
    auth_kind: application
    kubeconfig: ~/.kube/config
  register: platform

- name: Say who can reach the endpoint
  ansible.builtin.debug:
    msg: "{{ platform.exposure_summary }}"
"""

RETURN = r"""
problems:
  description: Every problem found, each with its fix.
  returned: always
  type: list
  elements: str
checks:
  description: Per check C(ok) (true, false, or null when skipped), C(detail) and C(problems).
  returned: always
  type: dict
kube_server:
  description: The API server of the kubeconfig that was compared with the GKE cluster.
  returned: always
  type: str
gke_endpoints:
  description: Control plane addresses of the GKE cluster.
  returned: always
  type: list
  elements: str
gke_version:
  description: The cluster's C(currentMasterVersion).
  returned: always
  type: str
kserve:
  description: C(flavour) (upstream, opendatahub, none), C(version) and C(image) of the KServe controller.
  returned: always
  type: dict
gateway_class:
  description: The Gateway's class (empty when it does not exist).
  returned: always
  type: str
gateway_exposure:
  description: internal, external or unknown.
  returned: always
  type: str
exposure_summary:
  description: One line for the run's summary (public or internal, unauthenticated).
  returned: always
  type: str
"""

import copy  # noqa: E402 - imports follow the documentation blocks in Ansible modules
import json  # noqa: E402

from ansible_collections.google.cloud.plugins.module_utils.gcp_utils import GcpModule  # noqa: E402
from ansible_collections.llm_serving.gke.plugins.module_utils import gke_platform as gp  # noqa: E402
from ansible_collections.llm_serving.gke.plugins.module_utils.gke_client import client_from_module  # noqa: E402
from ansible_collections.llm_serving.gke.plugins.module_utils.gke_errors import GkeError  # noqa: E402

try:
    from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.client import (
        _create_auth_spec,
        _create_configuration,
        get_api_client,
    )
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.exceptions import CoreException
except ImportError:
    AUTH_ARG_SPEC = {}
    CoreException = Exception

try:
    from kubernetes.client.exceptions import ApiException
except ImportError:
    ApiException = Exception

K8S_AUTH_KEYS = ("kubeconfig", "context", "host", "api_key", "username", "password", "validate_certs", "ca_cert",
                 "client_cert", "client_key", "proxy", "no_proxy", "proxy_headers", "persist_config",
                 "impersonate_user", "impersonate_groups")


def argument_spec():
    spec = copy.deepcopy(AUTH_ARG_SPEC)
    spec.update(
        location=dict(type="str", required=True),
        cluster=dict(type="str", required=True),
        cluster_resource=dict(type="dict"),
        gateway_name=dict(type="str", default="inference-gateway"),
        gateway_namespace=dict(type="str", default="opendatahub"),
        route_namespace=dict(type="str", required=True),
        gateway_exposure=dict(type="str", choices=["internal", "external"]),
        allowed_gateway_classes=dict(type="list", elements="str",
                                     default=["gke-l7-regional-external-managed", "gke-l7-rilb"]),
        min_gke_version=dict(type="str", default="1.32.3"),
        kserve_namespace=dict(type="str", default="kserve"),
        kserve_deployment=dict(type="str", default="llmisvc-controller-manager"),
        kserve_min_version=dict(type="str", default="0.20.0"),
        llmisvc_api_version=dict(type="str", default="v1alpha1"),
        require_inference_pool_v1=dict(type="bool", default=True),
        skip=dict(type="list", elements="str", default=[], choices=list(gp.CHECKS)),
        fail_on_problems=dict(type="bool", default=True),
        timeout=dict(type="int", default=120),
        api_endpoint=dict(type="str", default="https://container.googleapis.com"),
        compute_endpoint=dict(type="str", default="https://compute.googleapis.com"),
    )
    return spec


def given_cluster(params):
    """The cluster handed over in cluster_resource when it is the one asked for (else None: read it)."""
    given = params.get("cluster_resource") or {}
    return given if given.get("name") == params["cluster"] else None


def required_apis(params):
    apis = dict(gp.DEFAULT_REQUIRED_APIS)
    llmisvc = apis.pop("serving.kserve.io/v1alpha1")
    apis["serving.kserve.io/" + params["llmisvc_api_version"]] = llmisvc
    if not params["require_inference_pool_v1"]:
        apis.pop("inference.networking.k8s.io/v1")
    return apis


def k8s_auth(params):
    return {key: params.get(key) for key in K8S_AUTH_KEYS if params.get(key) is not None}


def kube_server(params):
    """(server URL, context) of the kubeconfig as kubernetes.core resolves it (options, K8S_AUTH_* env), offline."""
    auth = _create_auth_spec(None, **k8s_auth(params))
    configuration = _create_configuration(auth)
    context = auth.get("context")
    if not context and not auth.get("host"):
        context = current_context(auth.get("kubeconfig"))
    return configuration.host, context


def current_context(kubeconfig):
    try:
        from kubernetes.config.kube_config import list_kube_config_contexts
        path = kubeconfig if isinstance(kubeconfig, str) else None
        # the client expands ~ itself (kubernetes.config.kube_config.KubeConfigMerger)
        _contexts, active = list_kube_config_contexts(config_file=path)
        return (active or {}).get("name")
    except Exception:  # pylint: disable=broad-except  # only used in the message
        return None


class Forbidden(Exception):
    """The Kubernetes identity may not read a path the checks need."""


class Kube:
    def __init__(self, params):
        self.client = get_api_client(module=None, **k8s_auth(params)).client

    def get(self, path, optional=False):
        """The object at ``path``; None on 404, and on 403 when ``optional`` (a read that only refines a check)."""
        try:
            resp = self.client.request("GET", path, serialize=False, _request_timeout=30)
        except ApiException as exc:
            status = getattr(exc, "status", None)
            if status == 404 or (status == 403 and optional):
                return None
            if status == 403:
                raise Forbidden(path) from exc
            raise
        try:
            return json.loads(resp.data or b"{}")
        finally:
            resp.release_conn()


def read_subnets(client, project, region):
    items, token = [], None
    while True:
        path = f"/compute/v1/projects/{project}/regions/{region}/subnetworks"
        payload = client.call("GET", path + (f"?pageToken={token}" if token else ""), base=client.compute_endpoint,
                              action=f"list subnetworks in {region}")
        items.extend(payload.get("items") or [])
        token = payload.get("nextPageToken")
        if not token:
            return items


def gather_kube(params, facts, apis):
    kube = Kube(params)
    gw_path = (f"/apis/gateway.networking.k8s.io/v1/namespaces/{params['gateway_namespace']}/gateways/"
               f"{params['gateway_name']}")
    facts["served"] = {}
    wanted = set(apis) | {"serving.kserve.io/v1alpha1", "serving.kserve.io/v1alpha2", gp.ALPHA_POOL_API}
    for group_version in sorted(wanted):
        listing = kube.get(f"/apis/{group_version}")
        facts["served"][group_version] = None if listing is None else [
            r.get("name") for r in listing.get("resources") or [] if "/" not in r.get("name", "")]
    has_gateways = "gateways" in (facts["served"].get("gateway.networking.k8s.io/v1") or [])
    facts["gateway"] = kube.get(gw_path) if has_gateways else None
    namespace = kube.get(f"/api/v1/namespaces/{params['route_namespace']}", optional=True)
    # The API server labels every namespace with kubernetes.io/metadata.name (Kubernetes 1.22+); one the
    # deployment has yet to create will carry at least that label.
    facts["namespace_labels"] = ((namespace or {}).get("metadata") or {}).get("labels") or {
        "kubernetes.io/metadata.name": params["route_namespace"]}
    facts["controller"] = kube.get(f"/apis/apps/v1/namespaces/{params['kserve_namespace']}/deployments/"
                                   f"{params['kserve_deployment']}")
    # Open Data Hub's controller is looked for only when the configured one is missing (to say why).
    facts["odh_controller"] = None if facts["controller"] is not None else kube.get(
        f"/apis/apps/v1/namespaces/{gp.ODH_NAMESPACE}/deployments/{gp.ODH_DEPLOYMENT}", optional=True)


def main():
    module = GcpModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    if not AUTH_ARG_SPEC:
        module.fail_json(msg="kubernetes.core is required (ansible-galaxy collection install kubernetes.core)")
    skip = set(params["skip"])
    apis = required_apis(params)
    want = {"cluster_name": params["cluster"], "location": params["location"],
            "min_gke_version": params["min_gke_version"],
            "gateway_ref": f"{params['gateway_namespace']}/{params['gateway_name']}",
            "route_namespace": params["route_namespace"], "allowed_gateway_classes": params["allowed_gateway_classes"],
            "exposure": params.get("gateway_exposure"),
            "kserve_ref": f"{params['kserve_namespace']}/{params['kserve_deployment']}",
            "kserve_min_version": params["kserve_min_version"], "required_apis": apis, "skip": sorted(skip)}
    facts = {}
    client = client_from_module(module)
    try:
        cluster = given_cluster(params) or client.get_cluster()
        if cluster is None:
            module.fail_json(msg=f"GKE cluster '{params['cluster']}' does not exist in project '{client.project}', "
                                 f"location '{params['location']}' (llm_serving_gke_cluster / llm_serving_gcp_location"
                                 " / llm_serving_gcp_project)", problems=[])
        facts["cluster"] = cluster
        if "proxy_subnet" not in skip:
            facts["subnets"] = read_subnets(client, client.project,
                                            gp.region_of(cluster.get("location") or params["location"]))
    except GkeError as exc:
        module.fail_json(msg=exc.message, error_kind=exc.kind)
    try:
        facts["kube_server"], facts["kube_context"] = kube_server(params)
    except Exception as exc:  # pylint: disable=broad-except  # kubernetes.config errors vary
        module.fail_json(msg=f"could not read the kubeconfig (llm_serving_kubeconfig / llm_serving_k8s_context): "
                             f"{exc}")
    endpoint_problem = None if "one_cluster" in skip else gp.one_cluster_problem(
        facts["kube_server"], facts["kube_context"], facts["cluster"], params["cluster"], params["location"])
    if endpoint_problem:
        # Nothing is read from a cluster that is not the GKE cluster.
        module.fail_json(msg="platform pre-flight failed (nothing was written): " + endpoint_problem,
                         problems=[endpoint_problem], kube_server=facts["kube_server"],
                         gke_endpoints=gp.cluster_endpoints(facts["cluster"]))
    try:
        gather_kube(params, facts, apis)
    except Forbidden as exc:
        module.fail_json(msg=f"platform pre-flight: the Kubernetes identity of {facts['kube_server']} may not read "
                             f"{exc} (HTTP 403); grant get on it (docs/rbac/clusterroles.yaml) or skip the check "
                             "with llm_serving_platform_check_skip")
    except (ApiException, CoreException) as exc:
        module.fail_json(msg=f"platform pre-flight could not read the Kubernetes API at {facts['kube_server']}: {exc}")
    result = gp.evaluate(facts, want)
    out = dict(changed=False, problems=result["problems"], checks=result["checks"], kserve=result["kserve"],
               gateway_class=result["gateway_class"], gateway_exposure=result["gateway_exposure"],
               exposure_summary=result["exposure_summary"], kube_server=facts["kube_server"],
               gke_endpoints=gp.cluster_endpoints(facts["cluster"]),
               gke_version=facts["cluster"].get("currentMasterVersion") or "")
    if result["problems"] and params["fail_on_problems"]:
        module.fail_json(msg="platform pre-flight failed (nothing was written): " + "; ".join(result["problems"]),
                         **out)
    module.exit_json(**out)


if __name__ == "__main__":
    main()
