"""In-memory Container API v1 used by the unit tests (a transport for ContainerClient), plus its own checks.

It answers the way GKE does: writes return an Operation (RUNNING, then DONE on the next read), the stored pool
gains the server-side defaults GKE adds (disk, image, scopes, service account, instance groups), int64 fields
come back as strings, errors use the ``{"error": {code, message, status}}`` body.
"""
import copy
import re
from urllib.parse import urlparse

POOL_RE = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/clusters/([^/]+)/nodePools(?:/([^/:]+))?(?::(\w+))?$")
OP_RE = re.compile(r"^/v1/projects/[^/]+/locations/[^/]+/operations/([^/]+)$")
CLUSTER_RE = re.compile(r"^/v1/projects/[^/]+/locations/[^/]+/clusters/([^/]+)$")
IGM_RE = re.compile(r"/instanceGroupManagers/([^/]+)$")
COMPUTE_RE = re.compile(r"^/compute/v1/projects/[^/]+/zones/([^/]+)/(machineTypes|acceleratorTypes)/([^/]+)$")

SERVER_DEFAULTS = {
    "diskSizeGb": 100,
    "diskType": "pd-balanced",
    "imageType": "COS_CONTAINERD",
    "serviceAccount": "default",
    "oauthScopes": ["https://www.googleapis.com/auth/devstorage.read_only",
                    "https://www.googleapis.com/auth/logging.write"],
    "metadata": {"disable-legacy-endpoints": "true"},
}


def api_error(code, status, message):
    return code, {"error": {"code": code, "status": status, "message": message}}


class FakeGke:
    def __init__(self, cluster="c1", zone="europe-west4-a"):
        self.cluster_name = cluster
        self.zone = zone
        self.pools = {}
        self.sizes = {}
        self.operations = {}
        self.calls = []
        self.scripted = []  # (method, path regex, status, payload), consumed in order when they match
        self.op_error = None  # error dict put on the next operation
        self.op_conditions = None
        self.gateway_channel = "CHANNEL_STANDARD"
        self.zone_machine_types = {"n1-standard-4", "ct6e-standard-4t"}
        self.zone_accelerators = {"nvidia-tesla-t4"}

    # Helpers for tests ----------------------------------------------------------------------------------------
    def writes(self):
        return [(m, p) for m, p, _unused in self.calls if m != "GET"]

    def script(self, method, path_regex, status, payload, times=1):
        for _unused in range(times):
            self.scripted.append((method, path_regex, status, payload))

    def add_pool(self, pool, size=None):
        stored = copy.deepcopy(pool)
        stored.setdefault("status", "RUNNING")
        config = stored.setdefault("config", {})
        for key, value in SERVER_DEFAULTS.items():
            config.setdefault(key, copy.deepcopy(value))
        config["diskSizeGb"] = int(config["diskSizeGb"])
        stored["instanceGroupUrls"] = [
            f"https://www.googleapis.com/compute/v1/projects/p1/zones/{self.zone}/instanceGroupManagers/"
            f"gke-{self.cluster_name}-{stored['name']}-grp"]
        self.pools[stored["name"]] = stored
        self.sizes[stored["name"]] = stored.get("initialNodeCount", 0) if size is None else size
        return stored

    # Transport ------------------------------------------------------------------------------------------------
    def __call__(self, method, url, body):
        path = urlparse(url).path
        self.calls.append((method, path, copy.deepcopy(body)))
        for index, (m, rx, status, payload) in enumerate(self.scripted):
            if m == method and re.search(rx, path):
                del self.scripted[index]
                if isinstance(payload, Exception):
                    raise payload
                return status, copy.deepcopy(payload)
        return self.route(method, path, body)

    def route(self, method, path, body):
        match = OP_RE.match(path)
        if match:
            return self.read_operation(match.group(1))
        match = COMPUTE_RE.match(path)
        if match:
            zone, kind, name = match.groups()
            known = self.zone_machine_types if kind == "machineTypes" else self.zone_accelerators
            if zone == self.zone and name in known:
                return 200, {"name": name, "zone": zone}
            return api_error(404, "NOT_FOUND", f"The resource '{name}' was not found")
        match = IGM_RE.search(path)
        if match:
            for name, pool in self.pools.items():
                if pool["instanceGroupUrls"][0].endswith(match.group(1)):
                    return 200, {"name": match.group(1), "targetSize": self.sizes[name]}
            return api_error(404, "NOT_FOUND", "no such instance group manager")
        match = CLUSTER_RE.match(path)
        if match and method == "GET":
            if match.group(1) != self.cluster_name:
                return api_error(404, "NOT_FOUND", f"Not found: cluster {match.group(1)}")
            return 200, {"name": self.cluster_name, "status": "RUNNING", "locations": [self.zone],
                         "networkConfig": {"gatewayApiConfig": {"channel": self.gateway_channel}},
                         "nodePools": list(self.pools.values())}
        match = POOL_RE.match(path)
        if not match:
            return api_error(404, "NOT_FOUND", f"unknown path {path}")
        name, verb = match.group(4), match.group(5)
        if match.group(3) != self.cluster_name:
            return api_error(404, "NOT_FOUND", "cluster not found")
        return self.pool_call(method, name, verb, body or {})

    def pool_call(self, method, name, verb, body):
        if method == "POST" and name is None:
            pool = body["nodePool"]
            if pool["name"] in self.pools:
                return api_error(409, "ALREADY_EXISTS", f"Already exists: nodePool {pool['name']}")
            self.add_pool(pool)
            return self.operation("CREATE_NODE_POOL", pool["name"])
        if name not in self.pools:
            return api_error(404, "NOT_FOUND", f"Not found: node pool {name}")
        pool = self.pools[name]
        if method == "GET":
            return 200, copy.deepcopy(pool)
        if method == "DELETE":
            del self.pools[name]
            return self.operation("DELETE_NODE_POOL", name)
        if verb == "setAutoscaling":
            pool["autoscaling"] = body["autoscaling"]
            return self.operation("SET_NODE_POOL_AUTOSCALING", name)
        if verb == "setSize":
            self.sizes[name] = body["nodeCount"]
            return self.operation("SET_NODE_POOL_SIZE", name)
        if method == "PUT":
            config = pool["config"]
            if "labels" in body:
                config["labels"] = body["labels"]["labels"]
            if "taints" in body:
                config["taints"] = body["taints"]["taints"]
            if "locations" in body:
                pool["locations"] = body["locations"]
            if "imageType" in body:
                config["imageType"] = body["imageType"]
            return self.operation("UPDATE_NODE_POOL" if "imageType" not in body else "UPGRADE_NODES", name)
        return api_error(400, "INVALID_ARGUMENT", f"unsupported {method} {verb}")

    def operation(self, op_type, pool_name):
        name = f"operation-{len(self.operations) + 1}"
        op = {"name": name, "operationType": op_type, "status": "RUNNING", "zone": self.zone,
              "targetLink": f"https://container.googleapis.com/v1/projects/p1/zones/{self.zone}/clusters/"
                            f"{self.cluster_name}/nodePools/{pool_name}"}
        if self.op_conditions:
            op["nodepoolConditions"] = self.op_conditions
        self.operations[name] = op
        return 200, copy.deepcopy(op)

    def read_operation(self, name):
        op = self.operations[name]
        op["status"] = "DONE"
        if self.op_error:
            op["error"] = self.op_error
            op["statusMessage"] = self.op_error["message"]
        return 200, copy.deepcopy(op)


def test_fake_answers_like_gke():
    fake = FakeGke()
    status, op = fake("POST", "https://x/v1/projects/p1/locations/europe-west4-a/clusters/c1/nodePools",
                      {"nodePool": {"name": "a", "initialNodeCount": 1, "config": {"machineType": "n1-standard-4"}}})
    assert status == 200 and op["status"] == "RUNNING"
    status, pool = fake("GET", "https://x/v1/projects/p1/locations/europe-west4-a/clusters/c1/nodePools/a", None)
    assert pool["config"]["imageType"] == "COS_CONTAINERD"
    status, _unused = fake("GET", "https://x/v1/projects/p1/locations/europe-west4-a/clusters/c1/nodePools/b", None)
    assert status == 404
