"""A second local cluster next to the shared one (molecule/attach): its addresses, ports and state are its own.

Covers the settings that used to be fixed (gateway address, pod and node address ranges), `up --bare` (control plane
only) and `down`/`status` of a bare or attached state directory. No process is started.
"""
from pathlib import Path

import pytest
import yaml

from localcluster import cli, config, nodes
from localcluster.cluster import BARE_ENV, Cluster, ClusterError, loopback_settings

ROOT = Path(__file__).resolve().parents[3]
SECOND = {"GATEWAY_ADDRESS": "127.7.0.1", "LOCALCLUSTER_POD_NETWORK": "127.5.0.0/16",
          "LOCALCLUSTER_NODE_NETWORK": "127.6.0.0/16"}
IDENTITY = {"gcp_access_token": "t", "hf_token": "h"}


@pytest.fixture
def clean_env(monkeypatch):
    for name in (*SECOND, "GKE_API_PORT", "LOCALCLUSTER_TIME_SCALE", "LOCALCLUSTER_EXTERNAL_KUBECONFIG",
                 "LOCALCLUSTER_SIMULATORS", "LOCALCLUSTER_READY_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def cluster(tmp_path, clean_env):
    lines = []
    return Cluster(paths=config.StatePaths(tmp_path / "state"), log=lines.append), lines


def test_defaults_are_the_shared_clusters():
    assert loopback_settings({}, {}) == ("127.0.0.1", "127.1.0.0/16", "127.0.0.0/16")
    assert nodes.node_addresses("gke-n1", {})[0]["address"].startswith("127.0.")


def test_second_cluster_settings_reach_its_env_file(cluster, clean_env):
    c, _ = cluster
    for name, value in SECOND.items():
        clean_env.setenv(name, value)
    clean_env.setenv("GKE_API_PORT", "21080")
    env = c.env_values(c.settings(), IDENTITY)
    assert {k: env[k] for k in SECOND} == SECOND
    assert env["GKE_API_ENDPOINT"] == "http://127.0.0.1:21080"
    assert env["LOCALCLUSTER_PORT_OFFSET"] == str(config.PORT_OFFSET)


def test_settings_kept_from_the_env_file_when_not_given(cluster):
    c, _ = cluster
    c.paths.make_dirs()
    c.write_env_file(SECOND)
    settings = c.settings()
    assert (settings.gateway_address, settings.pod_network, settings.node_network) == tuple(SECOND.values())


@pytest.mark.parametrize(("values", "named"), [
    ({"GATEWAY_ADDRESS": "10.0.0.1"}, "GATEWAY_ADDRESS must be a loopback"),
    ({"GATEWAY_ADDRESS": "127.1.2.3"}, "GATEWAY_ADDRESS=127.1.2.3 lies in the pod addresses"),
    ({"GATEWAY_ADDRESS": "127.0.9.9"}, "GATEWAY_ADDRESS=127.0.9.9 lies in"),
    ({"LOCALCLUSTER_POD_NETWORK": "127.5.0.0/28"}, "LOCALCLUSTER_POD_NETWORK must be a loopback IPv4 network"),
    ({"LOCALCLUSTER_POD_NETWORK": "fd00::/64"}, "LOCALCLUSTER_POD_NETWORK must be a loopback IPv4 network"),
    ({"LOCALCLUSTER_NODE_NETWORK": "127.6.0.0/24"}, "LOCALCLUSTER_NODE_NETWORK must be a loopback IPv4 network"),
    ({"LOCALCLUSTER_NODE_NETWORK": "nodes"}, "LOCALCLUSTER_NODE_NETWORK must be an IPv4 network"),
    ({"LOCALCLUSTER_NODE_NETWORK": "127.1.0.0/16"}, "overlaps LOCALCLUSTER_NODE_NETWORK=127.1.0.0/16"),
])
def test_bad_or_colliding_values_are_refused_naming_the_variable(values, named):
    with pytest.raises(ClusterError, match=named.replace(".", r"\.")):
        loopback_settings({}, values)


def test_node_addresses_follow_the_node_network():
    first = nodes.node_addresses("gke-llm-serving-local-t4-pool-0", {"LOCALCLUSTER_NODE_NETWORK": "127.6.0.0/16"})
    shared = nodes.node_addresses("gke-llm-serving-local-t4-pool-0", {})
    assert first[0]["address"].startswith("127.6.")
    assert first[0]["address"].split(".")[2:] == shared[0]["address"].split(".")[2:]  # same name, same host part


def test_node_agent_pod_ips_follow_the_pod_network():
    from localcluster.node_agent import IPAllocator

    second = IPAllocator({"LOCALCLUSTER_POD_NETWORK": "127.5.0.0/16"})
    assert [second.allocate("u1"), second.allocate("u2"), second.allocate("u1")] == ["127.5.0.1", "127.5.0.2",
                                                                                       "127.5.0.1"]
    assert str(IPAllocator({}).network) == "127.1.0.0/16"
    with pytest.raises(ValueError, match="LOCALCLUSTER_POD_NETWORK must be a loopback"):
        IPAllocator({"LOCALCLUSTER_POD_NETWORK": "10.1.0.0/16"})


def test_up_bare_starts_only_the_control_plane(cluster, clean_env):
    c, lines = cluster
    started = []
    clean_env.setattr(c, "start_control_plane", lambda identity: started.append("control plane"))
    clean_env.setattr(c, "start_simulators", lambda env: pytest.fail("--bare started simulators"))
    clean_env.setattr("localcluster.crds.install", lambda *a: pytest.fail("--bare installed CRDs"))
    assert c.up(bare=True) == []
    env = dict(line.split("=", 1) for line in c.paths.env_file.read_text().splitlines())
    assert started == ["control plane"]
    assert env[BARE_ENV] == "1" and env["KUBECONFIG"] == str(c.paths.kubeconfig)
    assert "GKE_API_ENDPOINT" not in env
    assert "bare control plane up" in lines[-1]

    clean_env.setattr(c.sup, "record", lambda name: {"pid": 1})
    clean_env.setattr(c.sup, "is_running", lambda name: True)
    clean_env.setattr(c, "_component_ready", lambda name: True)
    report = c.status()
    assert report["mode"] == "bare" and report["healthy"]
    assert [comp["name"] for comp in report["components"]] == list(config.CONTROL_PLANE)


def test_up_bare_refuses_an_external_kubeconfig_and_running_simulators(cluster, clean_env, tmp_path):
    c, _ = cluster
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("{}")
    clean_env.setenv("LOCALCLUSTER_EXTERNAL_KUBECONFIG", str(kubeconfig))
    with pytest.raises(ClusterError, match="unset LOCALCLUSTER_EXTERNAL_KUBECONFIG"):
        c.up(bare=True)
    clean_env.delenv("LOCALCLUSTER_EXTERNAL_KUBECONFIG")
    clean_env.setattr(c.sup, "is_running", lambda name: name == "gateway")
    with pytest.raises(ClusterError, match="simulators gateway of a full cluster run there"):
        c.up(bare=True)


@pytest.mark.parametrize(("env", "warned"), [
    ({"KUBECONFIG": "/elsewhere/kubeconfig", "GKE_API_PORT": "21080"}, ["gke_api:21080"]),  # attached
    ({"KUBECONFIG": "<own>", BARE_ENV: "1"}, ["etcd", "etcd", "kube-apiserver", "kube-controller-manager",
                                              "kube-scheduler"]),  # bare: no GKE API
])
def test_down_checks_only_the_ports_of_its_own_cluster(cluster, clean_env, env, warned):
    c, lines = cluster
    c.paths.make_dirs()
    c.write_env_file({k: (str(c.paths.kubeconfig) if v == "<own>" else v) for k, v in env.items()})
    clean_env.setattr("localcluster.cluster.port_listening", lambda port: True)  # e.g. the shared cluster's
    clean_env.setattr("localcluster.cluster.listener_of", lambda port: "someone")
    c.down()
    warning = next(line for line in lines if line.startswith("WARNING: still listening"))
    named = [item.split(":")[0] if item.split(":")[0] != "gke_api" else item.split(" ")[0]
             for item in warning.split(": ", 2)[2].split(", ")]
    assert named == warned


def test_cli_up_has_bare():
    assert cli.build_parser().parse_args(["up", "--bare"]).bare is True
    assert cli.build_parser().parse_args(["up"]).bare is False


def test_molecule_attach_scenario_never_uses_the_shared_clusters_settings():
    scenario = yaml.safe_load((ROOT / "molecule" / "attach" / "molecule.yml").read_text())
    env = scenario["provisioner"]["env"]
    shared = loopback_settings({}, {})
    assert int(env["LOCALCLUSTER_PORT_OFFSET"]) not in (0, 1000, 2000)  # shared, lifecycle test, cel benchmark
    assert env["GKE_API_PORT"] != str(config.GKE_API_PORT)
    assert loopback_settings({}, env) == (env["GATEWAY_ADDRESS"], env["LOCALCLUSTER_POD_NETWORK"],
                                          env["LOCALCLUSTER_NODE_NETWORK"])
    assert not set(loopback_settings({}, env)) & set(shared)
    assert "${MOLECULE_EPHEMERAL_DIRECTORY}/simulators/env" in scenario["provisioner"]["options"]["extra-vars"]
    assert {"create", "converge", "verify", "destroy"} <= set(scenario["scenario"]["test_sequence"])
