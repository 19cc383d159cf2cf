"""Issue 12 item 8: auth that real users have - examples with auth_kind, token refresh during long waits, a bare
access token that expires, the project of Application Default Credentials."""
import datetime
import json

import pytest
import requests
import yaml
from ansible.module_utils.testing import patch_module_args
from ansible_collections.llm_serving.gke.plugins.module_utils import gcp_client as gcp
from ansible_collections.llm_serving.gke.plugins.module_utils import gke_client as gkc
from ansible_collections.llm_serving.gke.plugins.module_utils import gke_errors as errs
from ansible_collections.llm_serving.gke.plugins.modules import gke_node_pool
from google.auth import credentials as ga_credentials
from google.auth.transport.requests import AuthorizedSession
from google.oauth2 import credentials as oauth2

from tests.gke_sim_inprocess import make_api
from tests.gke_sim_inprocess import transport as sim_transport
from tests.unit.plugins.module_utils.fake_gke import FakeGke

T4 = {"name": "gpu-t4-pool", "machine_type": "n1-standard-4",
      "accelerator": {"type": "nvidia-tesla-t4", "count": 1, "gpu_driver_version": "DEFAULT"},
      "autoscaling": {"min_node_count": 0, "max_node_count": 5}}


def test_every_example_runs_as_written_with_auth_kind():
    """GcpModule makes auth_kind required (google.cloud gcp_utils.GcpModule); an example without it fails."""
    for task in yaml.safe_load(gke_node_pool.EXAMPLES):
        args = task["llm_serving.gke.gke_node_pool"]
        assert args.get("auth_kind") in ("application", "serviceaccount", "accesstoken", "machineaccount"), task


# A fake HTTP layer under google-auth's AuthorizedSession (the session GcpSession returns) -----------------------

class Recorder(requests.adapters.BaseAdapter):
    """Answers every request; 401 for tokens in ``expired``; records the Authorization header."""

    def __init__(self, expired=()):
        super().__init__()
        self.tokens = []
        self.expired = set(expired)

    def send(self, request, **kwargs):
        token = request.headers.get("Authorization", "")
        self.tokens.append(token)
        response = requests.Response()
        response.request, response.url = request, request.url
        if token.removeprefix("Bearer ") in self.expired:
            response.status_code = 401
            response._content = json.dumps({"error": {"code": 401, "status": "UNAUTHENTICATED", "message": (
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
                "other valid authentication credential.")}}).encode()
        else:
            response.status_code = 200
            response._content = b'{"name": "p", "status": "RUNNING"}'
        return response

    def close(self):
        pass


class RefreshingCredentials(ga_credentials.Credentials):
    """Like service-account or ADC credentials: a token that expires and can be refreshed."""

    def __init__(self):
        super().__init__()
        self.refreshes = 0

    def refresh(self, request):
        self.refreshes += 1
        self.token = f"token-{self.refreshes}"
        self.expiry = datetime.datetime.utcnow() + datetime.timedelta(hours=1)


def session(credentials, adapter):
    authed = AuthorizedSession(credentials)
    authed.mount("https://", adapter)
    return authed


def test_refreshable_credentials_get_a_new_token_during_a_long_wait():
    credentials, adapter = RefreshingCredentials(), Recorder()
    transport = gcp.session_transport(session(credentials, adapter), auth_kind="serviceaccount")
    assert transport("GET", "https://container.googleapis.com/v1/x", None)[0] == 200
    credentials.expiry = datetime.datetime.utcnow() - datetime.timedelta(minutes=1)  # an hour of waiting later
    assert transport("GET", "https://container.googleapis.com/v1/x", None)[0] == 200
    assert adapter.tokens == ["Bearer token-1", "Bearer token-2"] and credentials.refreshes == 2


def test_expired_bare_access_token_ends_the_task_saying_so():
    adapter = Recorder(expired={"old-token"})
    transport = gcp.session_transport(session(oauth2.Credentials("old-token"), adapter), auth_kind="accesstoken")
    with pytest.raises(errs.GkeError) as err:
        transport("GET", "https://container.googleapis.com/v1/x", None)
    assert err.value.kind == "auth" and "expired" in err.value.message
    assert "cannot be refreshed" in err.value.message and "access_token" in err.value.message


def test_401_from_the_simulator_with_an_access_token_is_an_auth_failure(tmp_path):
    api = make_api(tmp_path, GCP_ACCESS_TOKEN="current")
    transport = sim_transport(api, token="stale")  # a token that has expired meanwhile

    client = gkc.ContainerClient(transport, "proj", "europe-west4-a", "c1", endpoint="http://gke")
    client.context["auth_kind"] = "accesstoken"
    with pytest.raises(errs.GkeError) as err:
        client.get_pool("default-pool")
    assert err.value.kind == "auth" and err.value.status == 401
    assert "expired or was revoked" in err.value.message and "invalid authentication credentials" in err.value.message
    assert client.retries == []  # not retried: a 401 does not heal by waiting


def run_module(capsys, args):
    with patch_module_args(args), pytest.raises(SystemExit) as exit_info:
        gke_node_pool.main()
    result = json.loads(capsys.readouterr().out)
    result["rc"] = exit_info.value.code
    return result


def test_project_of_application_default_credentials_is_used(monkeypatch, capsys):
    fake = FakeGke()
    monkeypatch.setattr(gkc, "make_transport", lambda module, product="container": fake)
    monkeypatch.setattr(gkc.time, "sleep", lambda seconds: None)
    monkeypatch.delenv("GCP_PROJECT", raising=False)
    import google.auth
    monkeypatch.setattr(google.auth, "default", lambda scopes=None, **kw: (RefreshingCredentials(), "adc-project"))
    result = run_module(capsys, dict(T4, auth_kind="application", location="europe-west4-a", cluster="c1"))
    assert result["rc"] == 0 and result["changed"], result
    assert all("/projects/adc-project/" in path for _m, path, _b in fake.calls if path.startswith("/v1/"))


def test_missing_project_names_the_options(monkeypatch, capsys):
    monkeypatch.delenv("GCP_PROJECT", raising=False)
    result = run_module(capsys, dict(T4, auth_kind="accesstoken", access_token="ya29.unit-token",
                                     location="europe-west4-a", cluster="c1"))
    assert result["failed"] and "GCP_PROJECT" in result["msg"] and "Application Default Credentials" in result["msg"]
