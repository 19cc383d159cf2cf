"""The local cluster's GKE simulator (localcluster/gke_api.py) in the test process, without HTTP or a Kubernetes
cluster (node pools then have no Nodes): for unit tests of the simulator and of the modules that talk to it."""
import json

from localcluster.gke_api import Api, Settings, Simulator

TOKEN = "unit-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROJECT, LOCATION, CLUSTER = "proj", "europe-west4-a", "c1"
CLUSTER_PATH = f"/v1/projects/{PROJECT}/locations/{LOCATION}/clusters/{CLUSTER}"
REGION_PATH = f"/compute/v1/projects/{PROJECT}/regions/europe-west4"


def make_api(state_dir, **settings):
    """An Api over a new Simulator keeping its state in `state_dir`; `settings` add or replace env keys."""
    env = {"GCP_ACCESS_TOKEN": TOKEN, "GCP_PROJECT": PROJECT, "GKE_CLUSTER": CLUSTER,
           "LOCALCLUSTER_STATE_DIR": str(state_dir), "LOCALCLUSTER_TIME_SCALE": "0.002"}
    env.update(settings)
    return Api(Simulator(Settings(env)))


def call(api, method, path, body=None, headers=None):
    """(status, payload) of one request to the in-process API (headers default to the bearer token)."""
    data = json.dumps(body).encode() if body is not None else b""
    status, payload, _headers = api.handle(method, path, AUTH if headers is None else headers, data, "http://sim")
    return status, payload


def transport(api, token=TOKEN):
    """A ``transport(method, url, body)`` as the collection's GKE clients take (plugins/module_utils/gke_client.py
    make_transport), answered by `api` with bearer `token`."""
    def send(method, url, body):
        path = url.split("://", 1)[1]
        return call(api, method, path[path.index("/"):], body, {"Authorization": f"Bearer {token}"})
    return send
