# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Container API v1 client for one cluster: node pool and operation calls with retries, waiting for operations
and for a pool at rest, Compute reads the pre-flight needs, and the client made from a module's options.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

import re
import time

from ansible_collections.llm_serving.gke.plugins.module_utils.gcp_client import (
    DEFAULT_COMPUTE_ENDPOINT,
    GcpClient,
    default_project,
    make_transport,
)
from ansible_collections.llm_serving.gke.plugins.module_utils.gke_errors import (
    RPC_CODES,
    GkeError,
    auth_message,
    classify,
    quota_message,
    stockout_message,
)

try:
    import requests
except ImportError:  # reported by the modules with missing_required_lib
    requests = None

DEFAULT_API_ENDPOINT = "https://container.googleapis.com"

# Pool statuses that are errors: ERROR ("may be unusable") and RUNNING_WITH_ERROR ("partially usable. Some error
# state has occurred", e.g. a stockout that left a zone short) - NodePool.status in the Container API v1 discovery
# document; Terraform treats both as ErrorState (containerNodePoolRestingStates).
TERMINAL_POOL_STATUSES = ("ERROR", "RUNNING_WITH_ERROR")

# NodePool.status values at which no operation is working on the pool. Terraform's node pool resource waits for one
# of them before every update and delete (containerNodePoolRestingStates / containerNodePoolAwaitRestingState in
# hashicorp/terraform-provider-google google/services/container/resource_container_node_pool.go); PROVISIONING,
# RECONCILING and STOPPING mean an operation is still at work (NodePool.status in the Container API v1 discovery
# document).
RESTING_POOL_STATUSES = ("RUNNING", "RUNNING_WITH_ERROR", "ERROR")


class ContainerClient(GcpClient):
    """Container API v1 calls for one cluster (requests, retries and the deadline: GcpClient).

    ``transport(method, url, body)`` returns ``(http_status, parsed_json_or_text)`` and raises
    ``ConnectionError``/``OSError`` on network failures. ``clock``/``sleep`` are injectable for tests.
    """

    def __init__(self, transport, project, location, cluster, endpoint=DEFAULT_API_ENDPOINT,
                 compute_endpoint=DEFAULT_COMPUTE_ENDPOINT, timeout=2700, clock=time.monotonic, sleep=time.sleep,
                 initial_delay=1.0, max_delay=30.0, poll_interval=2.0, max_poll_interval=15.0):
        super().__init__(transport, project, endpoint=endpoint, timeout=timeout, clock=clock, sleep=sleep,
                         initial_delay=initial_delay, max_delay=max_delay, poll_interval=poll_interval,
                         max_poll_interval=max_poll_interval)
        self.location, self.cluster = location, cluster
        self.compute_endpoint = compute_endpoint.rstrip("/")
        self.context.update(location=location, cluster=cluster)

    # URLs --------------------------------------------------------------------------------------------------
    def location_path(self):
        return f"/v1/projects/{self.project}/locations/{self.location}"

    def cluster_path(self):
        return f"{self.location_path()}/clusters/{self.cluster}"

    def pool_path(self, name):
        return f"{self.cluster_path()}/nodePools/{name}"

    # Reads -----------------------------------------------------------------------------------------------------
    def get_cluster(self):
        return self.call("GET", self.cluster_path(), action="read cluster", allow_404=True)

    def get_pool(self, name):
        return self.call("GET", self.pool_path(name), action=f"read node pool {name}", allow_404=True)

    def wait_pool_at_rest(self, name, pool):
        """Poll the pool until no operation works on it (status RUNNING, RUNNING_WITH_ERROR or ERROR), as Terraform
        does before an update or delete; returns the pool as last read (None once it is gone)."""
        interval = self.poll_interval
        while pool is not None and pool.get("status") not in RESTING_POOL_STATUSES:
            if self.remaining() <= 0:
                raise GkeError(
                    f"Timed out waiting for node pool '{name}' to come to rest before changing it: it is still "
                    f"{pool.get('status')} (an operation is working on it; see gcloud container operations list "
                    f"--location {self.location}). Raise timeout or rerun later. {pool.get('statusMessage') or ''}"
                    .strip(), kind="timeout", details={"node_pool": pool})
            self.sleep(min(interval, max(self.remaining(), 0)))
            interval = min(self.max_poll_interval, interval * 1.5)
            pool = self.get_pool(name)
        return pool

    def machine_type_exists(self, zone, machine_type):
        path = f"/compute/v1/projects/{self.project}/zones/{zone}/machineTypes/{machine_type}"
        return self.call("GET", path, base=self.compute_endpoint, allow_404=True) is not None

    def accelerator_type_exists(self, zone, accelerator_type):
        path = f"/compute/v1/projects/{self.project}/zones/{zone}/acceleratorTypes/{accelerator_type}"
        return self.call("GET", path, base=self.compute_endpoint, allow_404=True) is not None

    def zone_sizes(self, pool):
        """{zone: targetSize} of the pool's managed instance groups, one zonal MIG per pool zone (the NodePool
        resource has no size field). None when it cannot be read."""
        urls = pool.get("instanceGroupUrls") or []
        if not urls:
            return None
        sizes = {}
        for url in urls:
            match = re.search(r"(/projects/[^/]+/zones/([^/]+)/instanceGroupManagers/[^/?]+)", url)
            if not match:
                return None
            try:
                igm = self.call("GET", "/compute/v1" + match.group(1), base=self.compute_endpoint, allow_404=True)
            except GkeError:
                return None
            if not igm or "targetSize" not in igm:
                return None
            sizes[match.group(2)] = sizes.get(match.group(2), 0) + int(igm["targetSize"])
        return sizes

    def current_size(self, pool):
        """The pool's node count per zone, comparable with node_count. ``SetNodePoolSizeRequest.nodeCount`` is per
        zone: "When you resize a node pool that spans multiple zones, the new size represents the number of nodes in
        the node pool per zone" (https://cloud.google.com/sdk/gcloud/reference/container/clusters/resize); Terraform's
        ``node_count`` is "The number of nodes per instance group" (resource_container_node_pool.go in
        hashicorp/terraform-provider-google). An int when every zone has the same size, {zone: size} when they
        differ (so any node_count is a change), None when it cannot be read."""
        sizes = self.zone_sizes(pool)
        if not sizes:
            return None
        values = set(sizes.values())
        return values.pop() if len(values) == 1 else dict(sorted(sizes.items()))

    # Writes (each returns the Operation) -----------------------------------------------------------------------
    def create_pool(self, node_pool):
        return self.call("POST", self.cluster_path() + "/nodePools", {"nodePool": node_pool},
                         action="create node pool {}".format(node_pool["name"]))

    def delete_pool(self, name):
        return self.call("DELETE", self.pool_path(name), action=f"delete node pool {name}")

    def set_autoscaling(self, name, autoscaling):
        return self.call("POST", self.pool_path(name) + ":setAutoscaling", {"autoscaling": autoscaling},
                         action=f"set autoscaling of node pool {name}")

    def set_size(self, name, node_count):
        return self.call("POST", self.pool_path(name) + ":setSize", {"nodeCount": node_count},
                         action=f"resize node pool {name}")

    def update_pool(self, name, body):
        return self.call("PUT", self.pool_path(name), body, action=f"update node pool {name}")

    # Operations ------------------------------------------------------------------------------------------------
    def wait(self, operation, ctx=None):
        """Poll ``operations/NAME`` until DONE; raise on an operation error or a stockout condition."""
        ctx = dict(self.context, **(ctx or {}))
        name = operation.get("name")
        interval = self.poll_interval
        while True:
            self._check_operation(operation, ctx)
            if operation.get("status") == "DONE":
                return operation
            if self.remaining() <= 0:
                raise GkeError("Timed out waiting for operation {} ({}) on node pool '{}' after the timeout; it keeps "
                               "running in GKE (which retries a stockout for about 35 minutes before it gives up). "
                               "Last status: {} {}".format(
                                   name, operation.get("operationType"), ctx.get("name"), operation.get("status"),
                                   operation.get("detail") or ""),
                               kind="timeout", details={"operation": operation})
            self.sleep(min(interval, max(self.remaining(), 0)))
            interval = min(self.max_poll_interval, interval * 1.5)
            operation = self.call("GET", f"{self.location_path()}/operations/{name}",
                                  action=f"read operation {name}")

    @staticmethod
    def _check_operation(operation, ctx):
        """Raise when the operation reports a failure in ``error``, a google.rpc.Status: ``code`` (a google.rpc.Code
        number), ``message`` and ``details`` - it has no ``status`` string (Operation.error and the Status schema
        of the Container API v1 discovery document). ``statusMessage``, ``nodepoolConditions`` and
        ``clusterConditions`` are deprecated there ("Use field error instead") and are not read.

        While GKE itself still retries a stockout, the operation stays RUNNING without an error: GKE retries the VM
        creation for about 35 minutes and then ends the operation with "Not all instances running in IGM after 35m
        ... [GCE_STOCKOUT]" (reported in NVIDIA/aicr#2764, akka/akka-core#32992,
        GoogleCloudPlatform/cluster-toolkit#6278). The module keeps waiting within ``timeout`` for that verdict.
        """
        error = operation.get("error") or {}
        if not error or not (error.get("code") or error.get("message")):
            return
        code = error.get("code")
        status = RPC_CODES.get(code, "") if isinstance(code, int) else str(code or "")
        message = (error.get("message") or "").strip()
        details = " ".join(str(d) for d in error.get("details") or [])
        kind = classify(None, status, f"{message} {details}")
        if kind == "stockout":
            raise GkeError(stockout_message(message, ctx), kind="stockout", details={"operation": operation})
        if kind == "quota":
            raise GkeError(quota_message(message, ctx), kind="quota", details={"operation": operation})
        raise GkeError(f"Operation {operation.get('name')} ({operation.get('operationType')}) on node pool "
                       f"'{ctx.get('name')}' failed with {status or 'an error'} (code {code}): {message}",
                       kind="api", details={"operation": operation})


def cluster_facts(cluster):
    """What pre-flight checks need from a Cluster resource."""
    addons = cluster.get("addonsConfig") or {}
    channel = ((cluster.get("networkConfig") or {}).get("gatewayApiConfig") or {}).get("channel") or (
        addons.get("gatewayApiConfig") or {}).get("channel") or "CHANNEL_DISABLED"
    http_lb_disabled = bool((addons.get("httpLoadBalancing") or {}).get("disabled"))
    return {
        "gateway_api_channel": channel,
        "gateway_api_enabled": channel not in ("CHANNEL_DISABLED", "CHANNEL_UNSPECIFIED", ""),
        "http_load_balancing_enabled": not http_lb_disabled,
        "node_pools": [p.get("name") for p in cluster.get("nodePools") or []],
        "locations": cluster.get("locations") or [],
        "status": cluster.get("status"),
    }


def client_from_module(module):
    """ContainerClient for the module's project/location/cluster/endpoints/timeout options."""
    params = module.params
    if not params.get("project"):
        params["project"] = default_project(module)
    if not params.get("project"):
        module.fail_json(msg="project is required: set the option project or the environment variable GCP_PROJECT "
                             "(with auth_kind application the project of Application Default Credentials is used "
                             "when it has one; none was found)")
    if requests is None:
        from ansible.module_utils.basic import missing_required_lib
        module.fail_json(msg=missing_required_lib("requests"))
    try:
        from google.auth.exceptions import GoogleAuthError
    except ImportError:  # GcpSession reports the missing library
        GoogleAuthError = GkeError  # noqa: N806 (a stand-in exception class)
    try:
        transport = make_transport(module)
    except GoogleAuthError as exc:  # e.g. no Application Default Credentials, an unreadable key
        module.fail_json(msg=auth_message(params.get("auth_kind"), str(exc)), error_kind="auth")
    client = ContainerClient(transport, params["project"], params["location"], params["cluster"],
                             endpoint=params["api_endpoint"], compute_endpoint=params["compute_endpoint"],
                             timeout=params["timeout"])
    client.context["auth_kind"] = params.get("auth_kind")
    return client
