"""What the integration tests read from (and clean up on) the local cluster, in one place: the simulated GKE API's
request log and node pools, Kubernetes objects, and the failure messages of a playbook run.

"Nothing was written" is shown the same way by every test that claims it: the GKE simulator's request log
(GET /_sim/requests, localcluster/gke_api.py) holds no POST/PUT/PATCH/DELETE since the run started whose path or body
names the test's object, and the test's Kubernetes objects do not exist afterwards.
"""
import json
import re
import time
from datetime import UTC, datetime

import requests
from kubernetes.client.rest import ApiException

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A failed task's result on one line: the tests run playbooks with ANSIBLE_CALLBACK_RESULT_FORMAT=json.
JSON_RESULTS = {"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}
_FAILED = re.compile(r"FAILED! => (\{.*\})\s*$", re.M)


class GkeSim:
    """The simulated GKE and Compute APIs of the local cluster (.localcluster/env keys)."""

    def __init__(self, env):
        self.base = env["GKE_API_ENDPOINT"]
        self.headers = {"Authorization": f"Bearer {env['GCP_ACCESS_TOKEN']}"}
        self.cluster_url = (f"{self.base}/v1/projects/{env['GCP_PROJECT']}/locations/{env['GKE_LOCATION']}"
                            f"/clusters/{env['GKE_CLUSTER']}")
        self.pools_url = f"{self.cluster_url}/nodePools"
        self.region = env["GKE_LOCATION"].rsplit("-", 1)[0] if env["GKE_LOCATION"].count("-") == 2 \
            else env["GKE_LOCATION"]
        self.region_url = f"{self.base}/compute/v1/projects/{env['GCP_PROJECT']}/regions/{self.region}"
        self.subnets_url = f"{self.region_url}/subnetworks"

    def call(self, method, url, body=None):
        """(status code, parsed JSON body) of one request."""
        response = requests.request(method, url, json=body, headers=self.headers, timeout=30)
        return response.status_code, response.json()

    def fault(self, fault, method="POST", path_regex="nodePools$", times=1, body_regex=None):
        """Make the simulator answer the next `times` matching requests with `fault` (POST /_sim/faults)."""
        spec = {"method": method, "path_regex": path_regex, "fault": fault, "times": times}
        if body_regex:  # a create names its pool only in the body; other sessions create pools at the same time
            spec["body_regex"] = body_regex
        requests.post(f"{self.base}/_sim/faults", json=spec, headers=self.headers, timeout=10).raise_for_status()

    def log(self):
        """The simulator's request log (GET /_sim/requests): method, path, body, status, time of each request."""
        response = requests.get(f"{self.base}/_sim/requests", headers=self.headers, timeout=30)
        response.raise_for_status()
        return response.json()["requests"]

    def requests_for(self, pool, since=None):
        """(method, last path segment, status) of the requests that concern node pool `pool`; with `since` (an
        earlier result of this method) only the newer ones. The log is shared and other sessions may clear it,
        so positions are not used."""
        found = []
        for entry in self.log():
            body = entry.get("body") or {}
            named = isinstance(body, dict) and (body.get("nodePool") or {}).get("name") == pool
            if f"/nodePools/{pool}" in entry["path"] or (entry["path"].endswith("/nodePools") and named):
                found.append((entry["method"], entry["path"].rsplit("/", 1)[-1], entry["status"]))
        if since and found[:len(since)] == since:
            return found[len(since):]
        return found

    def pool(self, name):
        """The node pool resource, or None when GKE answers 404."""
        status, body = self.call("GET", f"{self.pools_url}/{name}")
        return body if status == 200 else None

    def writes_naming(self, name, since):
        """POST/PUT/PATCH/DELETE requests after `since` (aware datetime) whose path or body names `name`."""
        log = self.log()
        pattern = re.compile(rf"(^|[^-a-zA-Z0-9_]){re.escape(name)}($|[^-a-zA-Z0-9_])")
        return [f"{r['method']} {r['path']}" for r in log
                if r["method"] in WRITE_METHODS and log_time(r["time"]) >= since
                and (pattern.search(r["path"]) or pattern.search(json.dumps(r.get("body"))))]

    def set_http_lb(self, disabled, deadline=120):
        """Set the cluster's httpLoadBalancing add-on and wait until the cluster is RUNNING with it."""
        stop = time.monotonic() + deadline
        while time.monotonic() < stop:
            status = self.call("POST", f"{self.cluster_url}:setAddons",
                               {"addonsConfig": {"httpLoadBalancing": {"disabled": disabled}}})[0]
            if status == 200:
                break
            time.sleep(2)  # 400 FAILED_PRECONDITION while another operation runs on the cluster
        while time.monotonic() < stop:
            cluster = self.call("GET", self.cluster_url)[1]
            if cluster["status"] == "RUNNING" and bool(
                    cluster["addonsConfig"]["httpLoadBalancing"].get("disabled")) == disabled:
                return
            time.sleep(0.5)
        raise AssertionError(f"httpLoadBalancing.disabled never became {disabled}")

    def subnet_status(self, name):
        """HTTP status of GET on the region's subnetwork `name` (200 or 404)."""
        return self.call("GET", f"{self.subnets_url}/{name}")[0]

    def wait_subnet(self, name, status, deadline=60):
        stop = time.monotonic() + deadline
        while self.subnet_status(name) != status:
            assert time.monotonic() < stop, f"subnet {name} never answered {status}"
            time.sleep(0.5)

    def quota(self, metric):
        """The region's quota entry of `metric` (Compute regions.get)."""
        return next(q for q in self.call("GET", self.region_url)[1]["quotas"] if q["metric"] == metric)

    def set_quota_limit(self, metric, limit):
        """Set a regional quota limit (the simulator's own endpoint, POST /_sim/quotas)."""
        reply = requests.post(f"{self.base}/_sim/quotas", headers=self.headers, json={metric: limit}, timeout=30)
        assert reply.status_code == 200, reply.text

    def delete_pool(self, name, deadline=300):
        """Delete a node pool a test created, retrying while an operation still runs on the cluster (GKE runs one
        at a time and answers 400 FAILED_PRECONDITION meanwhile)."""
        stop = time.monotonic() + deadline
        while time.monotonic() < stop:
            if requests.get(f"{self.pools_url}/{name}", headers=self.headers, timeout=30).status_code == 404:
                return
            requests.delete(f"{self.pools_url}/{name}", headers=self.headers, timeout=30)
            time.sleep(3)
        raise AssertionError(f"node pool {name} still exists after {deadline}s")


def log_time(text):
    """2026-11-27T02:28:18.606103000Z -> aware datetime (nanoseconds cut to microseconds)."""
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", text.rstrip("Z"))).replace(tzinfo=UTC)


def exists(k8s, api_version, kind, name, namespace=None):
    """Whether the object exists (404 -> False; any other API error is raised)."""
    try:
        k8s.resources.get(api_version=api_version, kind=kind).get(name=name, namespace=namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def delete_if_present(k8s, api_version, kind, name, namespace=None):
    """Delete the object; one that does not exist is fine."""
    try:
        k8s.resources.get(api_version=api_version, kind=kind).delete(name=name, namespace=namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise


def failure_messages(stdout):
    """The msg of every failed task of a run with JSON_RESULTS (the whole result where it has no msg)."""
    messages = []
    for match in _FAILED.finditer(stdout):
        result = json.loads(match.group(1))
        messages.append(str(result.get("msg", result)))
    return messages


def writes(entries):
    """The non-GET entries of GkeSim.requests_for."""
    return [e for e in entries if e[0] != "GET"]


def accepted_writes(entries):
    """Writes GKE accepted. Other sessions share the simulated cluster, and GKE runs one operation per cluster,
    so a write may first get 400 FAILED_PRECONDITION (retried by the module); those are checked apart."""
    rejected = [e for e in writes(entries) if e[2] >= 400]
    assert all(e[2] == 400 for e in rejected), rejected
    return [e for e in writes(entries) if e[2] < 400]
