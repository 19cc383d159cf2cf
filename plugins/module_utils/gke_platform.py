# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Platform pre-flight logic (issue 17): what a GKE cluster, its network and its Kubernetes side must offer before a
pattern is deployed, each problem with the fix in its message. Plain Python on plain dicts (the Cluster and Subnetwork
resources as the REST APIs return them, Kubernetes objects as the API server returns them), unit tested without HTTP.

Sources of the rules:
- GKE Gateway controller requirements (GKE version, VPC-native, proxy-only subnet, HttpLoadBalancing add-on):
  https://cloud.google.com/kubernetes-engine/docs/how-to/deploy-gke-inference-gateway and
  https://cloud.google.com/kubernetes-engine/docs/how-to/deploying-gateways
- Cluster fields: https://cloud.google.com/kubernetes-engine/docs/reference/rest/v1/projects.locations.clusters
  (currentMasterVersion, addonsConfig.httpLoadBalancing.disabled, networkConfig.gatewayApiConfig.channel, endpoint,
  privateClusterConfig, controlPlaneEndpointsConfig).
- Proxy-only subnets (purpose REGIONAL_MANAGED_PROXY, role ACTIVE):
  https://cloud.google.com/compute/docs/reference/rest/v1/subnetworks and
  https://cloud.google.com/load-balancing/docs/proxy-only-subnets
- Listener allowedRoutes (from Same by default, All, Selector; kinds): kubernetes-sigs/gateway-api v1.5.1
  apis/v1/gateway_types.go (AllowedRoutes, RouteNamespaces, FromNamespaces).
- KServe: upstream v0.20.0 runs the LLMInferenceService controller as Deployment kserve/llmisvc-controller-manager
  (kserve/kserve v0.20.0 config/llmisvc/manager.yaml, image kserve/llmisvc-controller) and its CRD serves v1alpha1 and
  v1alpha2 (config/crd/full/llmisvc/serving.kserve.io_llminferenceservices.yaml; v1alpha2 since v0.17.0). Open Data
  Hub's KServe 0.15 (opendatahub-io/kserve branch release-v0.15) runs the reconciler inside
  kserve-controller-manager (cmd/manager/main.go) in namespace opendatahub (config/overlays/odh/kustomization.yaml)
  and its CRD serves only v1alpha1.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

import re

try:
    from urllib.parse import urlsplit
except ImportError:  # Python 2 controllers are not supported; keeps the import sanity test quiet
    from urlparse import urlsplit  # type: ignore

# Gateway classes of the GKE Gateway controller and what they expose
# (https://cloud.google.com/kubernetes-engine/docs/concepts/gateway-api#gatewayclass).
GATEWAY_CLASS_EXPOSURE = {
    "gke-l7-rilb": "internal",
    "gke-l7-regional-external-managed": "external",
    "gke-l7-global-external-managed": "external",
    "gke-l7-gxlb": "external",
}
# Regional load balancers need a proxy-only subnet in the cluster's region and VPC.
REGIONAL_GATEWAY_CLASSES = ("gke-l7-rilb", "gke-l7-regional-external-managed")
EXPOSURE_CLASS = {"internal": "gke-l7-rilb", "external": "gke-l7-regional-external-managed"}
DEFAULT_EXPOSURE = "internal"

CHECKS = ("gke_version", "gateway_api", "http_load_balancing", "proxy_subnet", "one_cluster", "gateway",
          "allowed_routes", "kserve", "crds")

ODH_NAMESPACE = "opendatahub"
ODH_DEPLOYMENT = "kserve-controller-manager"

# group/version -> resources (plural) the deployment needs, with what installs them.
DEFAULT_REQUIRED_APIS = {
    "gateway.networking.k8s.io/v1": (["gateways", "httproutes"],
                                     "enable the GKE Gateway API: gcloud container clusters update CLUSTER "
                                     "--location LOCATION --gateway-api=standard"),
    "inference.networking.k8s.io/v1": (["inferencepools"],
                                       "install the InferencePool CRD v1: kubectl apply -f https://github.com/"
                                       "kubernetes-sigs/gateway-api-inference-extension/releases/download/v1.0.0/"
                                       "manifests.yaml (GKE 1.34+ installs it with the Gateway API)"),
    "serving.kserve.io/v1alpha1": (["llminferenceservices", "llminferenceserviceconfigs"],
                                   "install KServe v0.20's llmisvc CRDs (kserve/kserve v0.20.0 "
                                   "config/crd/full/llmisvc)"),
}


ALPHA_POOL_API = "inference.networking.x-k8s.io/v1alpha2"


def parse_version(text):
    """(major, minor, patch) of '1.34.3-gke.1051003', 'v0.20.0', '0.20'; None when there is no version."""
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    if not match:
        return None
    return tuple(int(part or 0) for part in match.groups())


def version_text(version):
    return ".".join(str(part) for part in version)


def region_of(location):
    """europe-west4 for the zone europe-west4-a; a region stays as it is."""
    return location[:-2] if re.match(r"^[a-z]+-[a-z]+\d+-[a-z]$", location or "") else location


def host_of(url):
    """Host of an API server URL (https://34.1.2.3, https://127.0.0.1:16443, a bare host)."""
    if not url:
        return ""
    parts = urlsplit(url if "//" in url else "//" + url)
    return (parts.hostname or "").lower()


def cluster_endpoints(cluster):
    """Every address GKE gives the control plane: endpoint, the private/public IP endpoints and the DNS endpoint."""
    private = cluster.get("privateClusterConfig") or {}
    endpoints_config = cluster.get("controlPlaneEndpointsConfig") or {}
    ip = endpoints_config.get("ipEndpointsConfig") or {}
    dns = endpoints_config.get("dnsEndpointConfig") or {}
    found = [cluster.get("endpoint"), private.get("privateEndpoint"), private.get("publicEndpoint"),
             ip.get("privateEndpoint"), ip.get("publicEndpoint"), dns.get("endpoint")]
    hosts = []
    for value in found:
        host = host_of(value)
        if host and host not in hosts:
            hosts.append(host)
    return hosts


def one_cluster_problem(kube_server, context, cluster, cluster_name, location):
    """A message when the kubeconfig's API server is not the GKE cluster's control plane, else None.

    A kubeconfig from `gcloud container clusters get-credentials` points at https://<endpoint> (or the DNS endpoint
    with --dns-endpoint, the private endpoint with --internal-ip); a Connect gateway kubeconfig
    (https://connectgateway.googleapis.com/.../gkeMemberships/<membership>) is accepted when the membership has the
    cluster's name.
    """
    host = host_of(kube_server)
    endpoints = cluster_endpoints(cluster)
    if host and host in endpoints:
        return None
    path = urlsplit(kube_server or "").path
    if host.endswith("connectgateway.googleapis.com") and path.rstrip("/").endswith("/gkeMemberships/" + cluster_name):
        return None
    return (f"the kubeconfig's API server {kube_server or '(none)'} (context {context or 'current-context'}) is not "
            f"GKE cluster {cluster_name} in {location} (control plane {', '.join(endpoints) or 'unknown'}): node pools "
            "would be created in one cluster and manifests applied to another. Fetch the right credentials "
            f"(gcloud container clusters get-credentials {cluster_name} --location {location}) or set "
            "llm_serving_k8s_context / llm_serving_kubeconfig to that cluster's context, or llm_serving_gke_cluster / "
            "llm_serving_gcp_location to the cluster the kubeconfig points at")


def proxy_only_subnets(subnets, network):
    """Active REGIONAL_MANAGED_PROXY subnets of ``network`` (a name or URL) among Compute Subnetwork resources."""
    wanted = (network or "default").rstrip("/").rsplit("/", 1)[-1]
    return [s for s in subnets
            if s.get("purpose") == "REGIONAL_MANAGED_PROXY" and s.get("role", "ACTIVE") == "ACTIVE"
            and (s.get("network") or "").rstrip("/").rsplit("/", 1)[-1] == wanted]


def cluster_network(cluster):
    return ((cluster.get("networkConfig") or {}).get("network") or cluster.get("network") or "default")


def label_selector_matches(selector, labels):
    """metav1.LabelSelector semantics: matchLabels and matchExpressions (In, NotIn, Exists, DoesNotExist)."""
    if selector is None:
        return False  # from: Selector without a selector admits nothing (the Gateway would be invalid)
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _admits_httproute(listener):
    kinds = (listener.get("allowedRoutes") or {}).get("kinds")
    if kinds:
        return any(k.get("kind") == "HTTPRoute" and k.get("group", "gateway.networking.k8s.io")
                   == "gateway.networking.k8s.io" for k in kinds)
    return listener.get("protocol") in ("HTTP", "HTTPS")


def _route_source(listener):
    return ((listener.get("allowedRoutes") or {}).get("namespaces") or {}).get("from") or "Same"


def listener_admits(listener, gateway_namespace, route_namespace, namespace_labels):
    namespaces = (listener.get("allowedRoutes") or {}).get("namespaces") or {}
    source = namespaces.get("from") or "Same"
    if not _admits_httproute(listener):
        return False
    if source == "All":
        return True
    if source == "Same":
        return route_namespace == gateway_namespace
    if source == "Selector":
        return label_selector_matches(namespaces.get("selector"), namespace_labels)
    return False


def allowed_routes_problem(gateway, route_namespace, namespace_labels):
    """A message when no listener of the Gateway admits HTTPRoutes from ``route_namespace``, else None."""
    meta = gateway.get("metadata") or {}
    gw_ns, gw_name = meta.get("namespace"), meta.get("name")
    listeners = (gateway.get("spec") or {}).get("listeners") or []
    if any(listener_admits(lst, gw_ns, route_namespace, namespace_labels) for lst in listeners):
        return None
    described = ", ".join("{} (from {})".format(lst.get("name"), _route_source(lst)) for lst in listeners) \
        or "no listeners"
    return (f"Gateway {gw_ns}/{gw_name} does not admit HTTPRoutes from namespace {route_namespace} "
            f"(listeners: {described}): set the listener's allowedRoutes.namespaces.from to All, or to Selector "
            f"with a selector matching namespace {route_namespace} (e.g. kubernetes.io/metadata.name: "
            f"{route_namespace}); playbooks/platform.yml creates the Gateway with platform_gateway_allowed_namespaces")


def image_version(image):
    """Version in an image tag (kserve/llmisvc-controller:v0.20.0 -> (0, 20, 0)); None for latest or a digest."""
    name = (image or "").split("@", 1)[0]
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else ""
    return parse_version(tag)


def _images(deployment):
    containers = (((deployment or {}).get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []
    return [c.get("image") or "" for c in containers]


def _available(deployment):
    return any(c.get("type") == "Available" and c.get("status") == "True"
               for c in ((deployment or {}).get("status") or {}).get("conditions") or [])


def kserve_facts(controller, odh_controller, llmisvc_versions, controller_ref, min_version):
    """Flavour, version and problems of the KServe installation.

    controller: the configured llmisvc controller Deployment (or None); odh_controller: opendatahub/
    kserve-controller-manager (or None); llmisvc_versions: versions the LLMInferenceService CRD serves.
    """
    facts = {"flavour": "none", "version": None, "image": None, "problems": []}
    images = _images(controller)
    image = next((i for i in images if "llmisvc" in i or "kserve" in i), images[0] if images else None)
    facts["image"] = image
    odh_image = bool(image) and ("opendatahub" in image or "/odh-" in image)
    if controller is None or odh_image:
        if odh_controller is not None or odh_image:
            found = image or ", ".join(_images(odh_controller)) or "unknown image"
            where = controller_ref if controller is not None else f"{ODH_NAMESPACE}/{ODH_DEPLOYMENT}"
            facts["flavour"] = "opendatahub"
            facts["version"] = version_text(image_version(found)) if image_version(found) else None
            facts["problems"].append(
                f"KServe is Open Data Hub's build ({where}, {found}; LLMInferenceService CRD serves "
                f"{', '.join(llmisvc_versions) or 'nothing'}), which this collection does not support: it is written "
                "and tested against upstream KServe v0.20 (llmisvc controller Deployment kserve/"
                "llmisvc-controller-manager, LLMInferenceService v1alpha1 and v1alpha2). Install upstream KServe "
                "v0.20's llmisvc controller (docs/gke-setup.md, step KServe), or, if it runs elsewhere, set "
                "llmisvc_controller_namespace / llmisvc_controller_deployment")
            return facts
        facts["problems"].append(
            f"the KServe llmisvc controller Deployment {controller_ref} does not exist: install upstream KServe "
            "v0.20's llmisvc controller (docs/gke-setup.md, step KServe), or set llmisvc_controller_namespace / "
            "llmisvc_controller_deployment if KServe runs elsewhere")
        return facts
    facts["flavour"] = "upstream"
    version = image_version(image)
    minimum = parse_version(min_version)
    if version is not None:
        facts["version"] = version_text(version)
        if minimum and version < minimum:
            facts["problems"].append(
                f"KServe {facts['version']} ({controller_ref}, image {image}) is older than {version_text(minimum)} "
                f"(platform_kserve_min_version): upgrade the llmisvc controller to upstream KServe v0.20 "
                "(docs/gke-setup.md, step KServe)")
    elif llmisvc_versions and "v1alpha2" not in llmisvc_versions:
        facts["problems"].append(
            f"KServe's version is unknown (image {image} has no version tag) and the LLMInferenceService CRD serves "
            f"only {', '.join(llmisvc_versions)}, i.e. KServe older than v0.17: upgrade to upstream KServe v0.20")
    if not _available(controller):
        facts["problems"].append(f"the KServe llmisvc controller Deployment {controller_ref} is not Available "
                                 f"(kubectl -n {controller_ref.split('/')[0]} describe deployment "
                                 f"{controller_ref.split('/')[-1]})")
    return facts


def crd_problems(served, required):
    """served: {'group/version': [resource plural, ...] or None when not served}; required as DEFAULT_REQUIRED_APIS."""
    problems = []
    for group_version, (resources, fix) in required.items():
        have = served.get(group_version)
        missing = [r for r in resources if have is None or r not in have]
        if missing:
            older = ""
            if group_version == "inference.networking.k8s.io/v1" and "inferencepools" in (
                    served.get(ALPHA_POOL_API) or []):
                older = (f"; only {ALPHA_POOL_API} InferencePools are served (gateway-api-inference-extension v1.4 or "
                         "older), which the llmisvc router does not use")
            problems.append(f"the API {group_version} does not serve {', '.join(missing)} (CRD "
                            f"{', '.join(m + '.' + group_version.split('/')[0] for m in missing)} missing{older}): "
                            f"{fix}")
    return problems


def exposure_summary(gateway, gateway_ref, address=None):
    """One line for the run's summary: who can reach the Gateway, and that nothing authenticates requests."""
    if not gateway:
        return f"Gateway {gateway_ref}: not found, exposure unknown"
    gw_class = (gateway.get("spec") or {}).get("gatewayClassName") or ""
    exposure = GATEWAY_CLASS_EXPOSURE.get(gw_class, "unknown")
    addresses = [a.get("value") for a in (gateway.get("status") or {}).get("addresses") or [] if a.get("value")]
    where = address or ", ".join(addresses) or "no address yet"
    if exposure == "external":
        return (f"Gateway {gateway_ref} ({gw_class}) at {where}: PUBLIC endpoint, reachable from the internet, "
                "UNAUTHENTICATED (this collection configures no authentication on the route)")
    if exposure == "internal":
        return (f"Gateway {gateway_ref} ({gw_class}) at {where}: internal endpoint, reachable from the VPC only, "
                "unauthenticated")
    return f"Gateway {gateway_ref} ({gw_class or 'no class'}) at {where}: exposure unknown, unauthenticated"


def evaluate(facts, want):
    """Problems (each with its fix) and per-check results from gathered facts.

    facts: cluster (dict or None), subnets (list or None = not read), kube_server, kube_context, gateway (dict or
    None), namespace_labels, served (group/version -> resources or None), controller, odh_controller.
    want: cluster_name, location, min_gke_version, gateway_ref (ns/name), route_namespace, allowed_gateway_classes,
    exposure (internal/external/None), kserve_ref (ns/name), kserve_min_version, required_apis, skip (list).
    """
    skip = set(want.get("skip") or [])
    checks = {}

    def record(name, problem, detail=""):
        if name in skip:
            checks[name] = {"ok": None, "detail": "skipped"}
            return
        problems = problem if isinstance(problem, list) else [problem] if problem else []
        checks[name] = {"ok": not problems, "detail": detail, "problems": problems}

    cluster = facts.get("cluster") or {}
    name, location = want["cluster_name"], want["location"]
    update = f"gcloud container clusters update {name} --location {location}"
    version = parse_version(cluster.get("currentMasterVersion"))
    minimum = parse_version(want.get("min_gke_version") or "1.32.3")
    record("gke_version", None if version and version >= minimum else
           f"GKE cluster {name} runs {cluster.get('currentMasterVersion') or 'an unknown version'}, older than "
           f"{version_text(minimum)} (platform_min_gke_version, the GKE Gateway controller's minimum for "
           f"InferencePool): gcloud container clusters upgrade {name} --location {location} --master "
           "--cluster-version 1.34 (or use the regular release channel)", cluster.get("currentMasterVersion") or "")
    channel = ((cluster.get("networkConfig") or {}).get("gatewayApiConfig") or {}).get("channel") or "CHANNEL_DISABLED"
    record("gateway_api", None if channel in ("CHANNEL_STANDARD", "CHANNEL_EXPERIMENTAL") else
           f"the Gateway API is not enabled on GKE cluster {name} (networkConfig.gatewayApiConfig.channel is "
           f"{channel}): {update} --gateway-api=standard", channel)
    http_lb_disabled = bool(((cluster.get("addonsConfig") or {}).get("httpLoadBalancing") or {}).get("disabled"))
    record("http_load_balancing", None if not http_lb_disabled else
           f"the HttpLoadBalancing add-on is disabled on GKE cluster {name} (addonsConfig.httpLoadBalancing.disabled);"
           f" the GKE Gateway controller needs it: {update} --update-addons=HttpLoadBalancing=ENABLED",
           "disabled" if http_lb_disabled else "enabled")

    record("one_cluster", one_cluster_problem(facts.get("kube_server"), facts.get("kube_context"), cluster, name,
                                              location), facts.get("kube_server") or "")

    gateway = facts.get("gateway")
    gw_ref = want["gateway_ref"]
    gw_class = ((gateway or {}).get("spec") or {}).get("gatewayClassName") or ""
    allowed = want.get("allowed_gateway_classes") or list(REGIONAL_GATEWAY_CLASSES)
    exposure = want.get("exposure")
    gw_problems = []
    if gateway is None:
        gw_problems.append(f"Gateway {gw_ref} does not exist: create it with playbooks/platform.yml "
                           f"(platform_gateway_exposure {exposure or DEFAULT_EXPOSURE}) or kubectl apply "
                           "(docs/gke-setup.md, step Gateway)")
    else:
        if gw_class not in allowed:
            gw_problems.append(f"Gateway {gw_ref} uses class {gw_class}, which does not support InferencePool; use "
                               f"{' or '.join(allowed)}")
        have = GATEWAY_CLASS_EXPOSURE.get(gw_class)
        if exposure and have and have != exposure:
            gw_problems.append(f"Gateway {gw_ref} is {have} (class {gw_class}) but llm_serving_gateway_exposure is "
                               f"{exposure}: use a Gateway of class {EXPOSURE_CLASS[exposure]}, or set "
                               f"llm_serving_gateway_exposure={have} to accept it")
    record("gateway", gw_problems, gw_class)
    if gateway is not None:
        record("allowed_routes", allowed_routes_problem(gateway, want["route_namespace"],
                                                        facts.get("namespace_labels") or {}))

    regional = (gw_class or EXPOSURE_CLASS[exposure or DEFAULT_EXPOSURE]) in REGIONAL_GATEWAY_CLASSES
    subnets = facts.get("subnets")
    if regional and subnets is not None:
        network = cluster_network(cluster)
        region = region_of(cluster.get("location") or location)
        found = proxy_only_subnets(subnets, network)
        record("proxy_subnet", None if found else
               f"no proxy-only subnet (purpose REGIONAL_MANAGED_PROXY, role ACTIVE) in region {region}, network "
               f"{network.rsplit('/', 1)[-1]}; Gateway class {gw_class or EXPOSURE_CLASS[exposure or DEFAULT_EXPOSURE]}"
               " needs one: run playbooks/platform.yml, or gcloud compute networks subnets create proxy-only-subnet "
               f"--purpose=REGIONAL_MANAGED_PROXY --role=ACTIVE --region={region} "
               f"--network={network.rsplit('/', 1)[-1]} --range=10.129.0.0/23",
               ", ".join(s.get("name", "") for s in found))

    kserve = kserve_facts(facts.get("controller"), facts.get("odh_controller"),
                          [v.split("/", 1)[1] for v, res in (facts.get("served") or {}).items()
                           if v.startswith("serving.kserve.io/") and res and "llminferenceservices" in res],
                          want["kserve_ref"], want.get("kserve_min_version") or "0.20.0")
    record("kserve", kserve["problems"], f"{kserve['flavour']} {kserve['version'] or ''}".strip())
    record("crds", crd_problems(facts.get("served") or {}, want.get("required_apis") or DEFAULT_REQUIRED_APIS))

    problems = [p for c in checks.values() for p in c.get("problems") or []]
    return {"problems": problems, "checks": checks, "kserve": {k: v for k, v in kserve.items() if k != "problems"},
            "gateway_class": gw_class, "gateway_exposure": GATEWAY_CLASS_EXPOSURE.get(gw_class, "unknown")
            if gateway else "unknown",
            "exposure_summary": exposure_summary(gateway, gw_ref)}
