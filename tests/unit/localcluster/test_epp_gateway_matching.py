"""Route matching and URL rewriting of the simulated GKE gateway's data plane."""
from localcluster.gateway import Backend, Match, Snapshot, path_matches, rewrite_prefix, timeouts_message


def match(path_type, path, headers=(), rule="r"):
    return Match(route="ns/route", rule=rule, path_type=path_type, path=path, headers=list(headers), rewrite="/",
                 backends=[Backend("Service", "ns/svc", 1, [], {}, 30)])


def test_path_prefix_matches_whole_segments():
    assert path_matches("PathPrefix", "/ns/model", "/ns/model")
    assert path_matches("PathPrefix", "/ns/model", "/ns/model/v1/models")
    assert not path_matches("PathPrefix", "/ns/model", "/ns/model-2/v1/models")
    assert path_matches("PathPrefix", "/", "/anything")
    assert path_matches("Exact", "/v1/completions", "/v1/completions")
    assert not path_matches("Exact", "/v1/completions", "/v1/completions/x")


def test_replace_prefix_match_like_the_route_preset():
    assert rewrite_prefix("/ns/m/v1/completions", "/ns/m/v1/completions", "/v1/completions") == "/v1/completions"
    assert rewrite_prefix("/ns/m/v1/models", "/ns/m", "/") == "/v1/models"
    assert rewrite_prefix("/ns/m", "/ns/m", "/") == "/"
    assert rewrite_prefix("/ns/m/health", "/ns/m/", "/") == "/health"


def test_longest_prefix_and_header_matches_win():
    catch_all = match("PathPrefix", "/ns/m", rule="catch-all")
    completions = match("PathPrefix", "/ns/m/v1/completions", rule="completions")
    model_header = match("Exact", "/v1/completions", headers=[{"name": "x-gateway-model-name", "value": "p/m"}],
                         rule="model-routing")
    entries = sorted([catch_all, completions, model_header], key=lambda m: m.precedence(), reverse=True)
    snapshot = Snapshot({80}, {80: entries})
    assert snapshot.find(80, "/ns/m/v1/completions", {}).rule == "completions"
    assert snapshot.find(80, "/ns/m/v1/models", {}).rule == "catch-all"
    assert snapshot.find(80, "/v1/completions", {"x-gateway-model-name": "p/m"}).rule == "model-routing"
    assert snapshot.find(80, "/v1/completions", {}) is None
    assert snapshot.find(8080, "/ns/m", {}) is None


def test_gke_timeouts_message():
    route = {"metadata": {"namespace": "llm", "name": "qwen-kserve-route"}}
    assert timeouts_message(route) == ('GWCER104: HTTPRoute "llm/qwen-kserve-route" is misconfigured, '
                                       "err: Timeouts are not supported.")
