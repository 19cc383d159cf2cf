"""up / down / status / restart of the local cluster: control plane, CRDs, bootstrap objects, simulators."""
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import bootstrap, config, controlplane, crds
from .kube import Kube
from .supervisor import ProcessSpec, StartError, Supervisor, port_listening, wait_until

EXTERNAL_ENV = "LOCALCLUSTER_EXTERNAL_KUBECONFIG"
BARE_ENV = "LOCALCLUSTER_BARE"  # in the env file of `up --bare` (control plane only)
CEL_VWC_COLLECTION = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
COMPONENT_PORTS = {
    "etcd": (config.ETCD_CLIENT_PORT, config.ETCD_PEER_PORT),
    "kube-apiserver": (config.APISERVER_PORT,),
    "kube-controller-manager": (config.CONTROLLER_MANAGER_PORT,),
    "kube-scheduler": (config.SCHEDULER_PORT,),
}
START_TIMEOUTS = {"etcd": 30, "kube-apiserver": 90, "kube-controller-manager": 45, "kube-scheduler": 45}


class ClusterError(RuntimeError):
    pass


class PhaseClock:
    """Wall time of each phase of `up`, printed so that start-up regressions are visible."""

    def __init__(self):
        self.last = time.monotonic()
        self.phases = []

    def mark(self, name):
        now = time.monotonic()
        self.phases.append((name, now - self.last))
        self.last = now

    def __str__(self):
        return ", ".join(f"{name} {seconds:.1f}s" for name, seconds in self.phases)


@dataclass
class Settings:
    """Values taken from the environment at `up`, validated before anything starts."""

    time_scale: str
    gke_api_port: int
    external_kubeconfig: Path | None
    gateway_address: str = config.GATEWAY_ADDRESS
    pod_network: str = config.DEFAULT_POD_NETWORK
    node_network: str = config.DEFAULT_NODE_NETWORK


def read_env_file(path):
    values = {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return values
    for line in lines:
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def simulator_module_exists(name):
    package = config.REPO_ROOT / "localcluster"
    return (package / f"{name}.py").is_file() or (package / name / "__main__.py").is_file()


class Cluster:
    def __init__(self, paths=None, log=print):
        self.paths = paths or config.state_paths()
        self.sup = Supervisor(self.paths)
        self.log = log

    # ------------------------------------------------------------ settings and env

    def settings(self):
        previous = read_env_file(self.paths.env_file)
        time_scale = os.environ.get("LOCALCLUSTER_TIME_SCALE") or previous.get("LOCALCLUSTER_TIME_SCALE") \
            or config.DEFAULT_TIME_SCALE
        try:
            if float(time_scale) <= 0:
                raise ValueError
        except ValueError:
            raise ClusterError(f"LOCALCLUSTER_TIME_SCALE must be a positive number, got {time_scale!r}") from None
        port = os.environ.get("GKE_API_PORT") or previous.get("GKE_API_PORT") or str(config.GKE_API_PORT)
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ClusterError(f"GKE_API_PORT must be a TCP port number, got {port!r}")
        selected_simulators()  # validate LOCALCLUSTER_SIMULATORS and LOCALCLUSTER_READY_TIMEOUT before starting
        ready_timeout()
        external = os.environ.get(EXTERNAL_ENV)
        if external and not Path(external).is_file():
            raise ClusterError(f"{EXTERNAL_ENV}={external} is not a readable kubeconfig file")
        gateway, pods, nodes = loopback_settings(previous)
        return Settings(time_scale, int(port), Path(external).resolve() if external else None, gateway, pods, nodes)

    def kubeconfig_path(self, settings):
        return settings.external_kubeconfig or self.paths.kubeconfig

    def env_values(self, settings, identity):
        kubeconfig = str(self.kubeconfig_path(settings))
        return {
            "KUBECONFIG": kubeconfig,
            "K8S_AUTH_KUBECONFIG": kubeconfig,
            "GKE_API_ENDPOINT": f"http://127.0.0.1:{settings.gke_api_port}",
            "GKE_API_PORT": str(settings.gke_api_port),
            "GCP_AUTH_KIND": "accesstoken",
            "GCP_ACCESS_TOKEN": identity["gcp_access_token"],
            "GCP_PROJECT": config.GCP_PROJECT,
            "GKE_LOCATION": config.GKE_LOCATION,
            "GKE_CLUSTER": config.GKE_CLUSTER,
            "GATEWAY_ADDRESS": settings.gateway_address,
            "HF_TOKEN": identity["hf_token"],
            "LOCALCLUSTER_TIME_SCALE": settings.time_scale,
            "LOCALCLUSTER_STATE_DIR": str(self.paths.root),
            config.POD_NETWORK_ENV: settings.pod_network,
            config.NODE_NETWORK_ENV: settings.node_network,
            # The simulators' ports (cel_webhook) follow it; `up` is given it again by whoever manages this cluster.
            "LOCALCLUSTER_PORT_OFFSET": str(config.PORT_OFFSET),
        }

    def bare_env_values(self):
        """env of a bare control plane (`up --bare`): how to reach it, and the mark `status` and `up` read."""
        return {"KUBECONFIG": str(self.paths.kubeconfig), "K8S_AUTH_KUBECONFIG": str(self.paths.kubeconfig),
                "LOCALCLUSTER_STATE_DIR": str(self.paths.root), "LOCALCLUSTER_PORT_OFFSET": str(config.PORT_OFFSET),
                BARE_ENV: "1"}

    def write_env_file(self, values):
        text = "".join(f"{key}={value}\n" for key, value in values.items())
        tmp = self.paths.env_file.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.chmod(0o600)
        tmp.replace(self.paths.env_file)

    # ------------------------------------------------------------ up

    def up(self, bare=False):
        """Start what is not running, install CRDs and bootstrap objects; returns the errors (empty = fine).

        ``bare``: the control plane only (etcd, kube-apiserver, kube-controller-manager, kube-scheduler): no CRDs,
        no bootstrap objects, no simulators, i.e. an empty cluster to which another `up` can attach with
        LOCALCLUSTER_EXTERNAL_KUBECONFIG (molecule/attach).
        """
        started_at = time.monotonic()
        phases = PhaseClock()
        settings = self.settings()
        if bare:
            return self.up_bare(settings, started_at)
        self.paths.make_dirs()
        identity = controlplane.load_identity(self.paths)
        warn_running_time_scale = self._time_scale_differs(settings)
        if settings.external_kubeconfig:
            self.log(f"using the existing cluster of {settings.external_kubeconfig} (no local control plane)")
        else:
            self.start_control_plane(identity)
        env = self.env_values(settings, identity)
        self.write_env_file(env)
        phases.mark("control plane")
        kube = Kube(self.kubeconfig_path(settings))
        crds.install(kube, self.log)
        phases.mark("CRDs")
        errors = self.start_admission(env, kube)
        phases.mark("admission")
        errors += bootstrap.create_all(kube, identity, self.log)
        phases.mark("bootstrap")
        sim_errors, notes = self.start_simulators(env)
        errors += sim_errors
        phases.mark("simulators")
        if warn_running_time_scale:
            notes.append(f"simulators already running keep LOCALCLUSTER_TIME_SCALE={warn_running_time_scale}; "
                         "`python -m localcluster restart <simulator>` applies the new value")
        self.log(f"cluster up in {time.monotonic() - started_at:.1f}s ({phases}); env: {self.paths.env_file}")
        for note in notes:
            self.log(f"NOTE: {note}")
        for error in errors:
            self.log(f"ERROR: {error}")
        return errors

    def up_bare(self, settings, started_at):
        if settings.external_kubeconfig:
            raise ClusterError(f"`up --bare` starts a local control plane: unset {EXTERNAL_ENV} "
                               f"({settings.external_kubeconfig})")
        running = [name for name in config.SIMULATORS if self.sup.is_running(name)]
        if running:
            raise ClusterError(f"`up --bare` on {self.paths.root}: simulators {', '.join(running)} of a full cluster "
                               "run there; stop them with `down` first or use another LOCALCLUSTER_DIR")
        self.paths.make_dirs()
        identity = controlplane.load_identity(self.paths)
        self.start_control_plane(identity)
        self.write_env_file(self.bare_env_values())
        self.log(f"bare control plane up in {time.monotonic() - started_at:.1f}s "
                 f"(https://127.0.0.1:{config.APISERVER_PORT}); kubeconfig: {self.paths.kubeconfig}")
        return []

    def _time_scale_differs(self, settings):
        previous = read_env_file(self.paths.env_file).get("LOCALCLUSTER_TIME_SCALE")
        running = any(self.sup.is_running(name) for name in config.SIMULATORS)
        return previous if running and previous and previous != settings.time_scale else None

    def start_control_plane(self, identity):
        binaries = controlplane.locate_binaries(self.log)
        controlplane.ensure_pki(self.paths, identity)
        controlplane.write_kubeconfigs(self.paths, identity)
        for name in config.CONTROL_PLANE:
            if name != "etcd" and name not in binaries.paths:
                self.log(f"WARNING: {name} is missing ({missing_consequence(name)}); "
                         "run localcluster/build-control-plane.sh to add it")
                continue
            if not self.sup.is_running(name):
                self._start_checked(self.control_plane_spec(name, binaries))
            self._wait_component(name, identity)

    def control_plane_spec(self, name, binaries):
        if name == "etcd":
            argv = controlplane.etcd_argv(self.paths)
        elif name not in binaries.paths:
            return None
        else:
            builders = {"kube-apiserver": controlplane.apiserver_argv,
                        "kube-controller-manager": controlplane.controller_manager_argv,
                        "kube-scheduler": controlplane.scheduler_argv}
            argv = builders[name](binaries.paths[name], self.paths)
        return ProcessSpec(name, argv, cwd=str(self.paths.root))

    def _start_checked(self, spec):
        busy = [p for p in COMPONENT_PORTS.get(spec.name, ()) if port_listening(p)]
        if busy:
            raise ClusterError(f"cannot start {spec.name}: port(s) {busy} on 127.0.0.1 are taken by a process this "
                               "cluster did not start (another local cluster? see `python -m localcluster status`)")
        self.sup.start(spec)

    def _wait_component(self, name, identity):
        checks = {
            "etcd": lambda: port_listening(config.ETCD_CLIENT_PORT),
            "kube-apiserver": lambda: controlplane.apiserver_ready(self.paths, identity),
            "kube-controller-manager": lambda: controlplane.component_healthy(config.CONTROLLER_MANAGER_PORT),
            "kube-scheduler": lambda: controlplane.component_healthy(config.SCHEDULER_PORT),
        }
        self._wait(name, checks[name], START_TIMEOUTS[name])

    def _wait(self, name, predicate, timeout):
        def ready_or_dead():
            self.sup.ensure_alive(name)
            return predicate()

        if not wait_until(ready_or_dead, timeout, interval=0.25):
            raise StartError(f"{name} not ready after {timeout}s; last lines of {self.sup.log_file(name)}:\n"
                             f"{self.sup.log_tail(name)}")

    def start_admission(self, env, kube, name="cel_webhook"):
        """The CEL admission webhook, before anything writes a custom resource (its failurePolicy is Fail).

        Without it (LOCALCLUSTER_SIMULATORS leaves it out) its registration is removed: the API server would
        otherwise refuse every write of those resources while nothing answers at its URL.
        """
        path = f"{CEL_VWC_COLLECTION}/{config.CEL_WEBHOOK_CONFIGURATION}"
        if name not in selected_simulators() or not simulator_module_exists(name):
            if kube.get(path) is not None:
                kube.request("DELETE", path)
                self.log(f"removed ValidatingWebhookConfiguration {config.CEL_WEBHOOK_CONFIGURATION} "
                         f"({name} is not started: CEL rules are not enforced)")
            return []
        if self.sup.is_running(name) and kube.server_minor_version() < crds.FIRST_VERSION_WITHOUT_PREPROCESSING \
                and kube.get(path) is None:
            self.log(f"ValidatingWebhookConfiguration {config.CEL_WEBHOOK_CONFIGURATION} is missing: restarting "
                     f"{name}, which registers it")
            self.sup.stop(name)
        if not self.sup.is_running(name):
            self.start_simulator(name, env)
        try:
            self._wait(name, lambda: (self.paths.ready / name).exists(), ready_timeout())
        except StartError as exc:
            return [str(exc)]
        return []

    def start_simulators(self, env):
        """Start every simulator whose module exists, then wait for its ready file; returns (errors, notes)."""
        errors, notes, waiting = [], [], []
        for name in selected_simulators():
            if not simulator_module_exists(name):
                notes.append(f"simulator localcluster.{name} is missing (localcluster/{name}.py not written yet)")
                continue
            if not self.sup.is_running(name):
                self.start_simulator(name, env)
            waiting.append(name)
        for name in waiting:
            try:
                self._wait(name, lambda n=name: (self.paths.ready / n).exists(), ready_timeout())
            except StartError as exc:
                errors.append(str(exc))
        return errors, notes

    def start_simulator(self, name, env):
        (self.paths.ready / name).unlink(missing_ok=True)
        sim_env = {**env, "PYTHONPATH": str(config.REPO_ROOT), "PYTHONUNBUFFERED": "1"}
        self.sup.start(ProcessSpec(name, [sys.executable, "-m", f"localcluster.{name}"], env=sim_env,
                                   cwd=str(config.REPO_ROOT)))

    # ------------------------------------------------------------ down, restart

    def down(self, purge=False):
        stopped = []
        for name in reversed(config.CONTROL_PLANE + config.SIMULATORS):  # reverse of the start order
            if self.sup.stop(name):
                stopped.append(name)
            (self.paths.ready / name).unlink(missing_ok=True)
        self.log("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        env = read_env_file(self.paths.env_file)
        external = bool(env.get("KUBECONFIG")) and Path(env["KUBECONFIG"]) != self.paths.kubeconfig
        ports = {} if external else dict(COMPONENT_PORTS)  # an attached cluster's control plane is not ours
        if env.get("GKE_API_PORT", "").isdigit():  # a bare control plane (or no env file yet): no GKE API of ours
            ports["gke_api"] = (int(env["GKE_API_PORT"]),)
        still = [f"{name}:{port} ({listener_of(port)})" for name, numbers in ports.items() for port in numbers
                 if port_listening(port)]
        if still:
            self.log(f"WARNING: still listening (not started by this cluster): {', '.join(still)}")
        if purge and self.paths.root.exists():
            shutil.rmtree(self.paths.root)
            self.log(f"removed {self.paths.root}")
        return stopped

    def restart(self, name):
        if name not in config.SIMULATORS + config.CONTROL_PLANE:
            known = ", ".join(config.CONTROL_PLANE + config.SIMULATORS)
            raise ClusterError(f"unknown component {name!r}; one of: {known}")
        settings = self.settings()
        identity = controlplane.load_identity(self.paths)
        self.sup.stop(name)
        if name in config.SIMULATORS:
            if not simulator_module_exists(name):
                raise ClusterError(f"localcluster/{name}.py does not exist")
            self.start_simulator(name, self.env_values(settings, identity))
            self._wait(name, lambda: (self.paths.ready / name).exists(), ready_timeout())
        else:
            spec = self.control_plane_spec(name, controlplane.find_binaries())
            if spec is None:
                raise ClusterError(f"no binary for {name} ({missing_consequence(name)})")
            self._start_checked(spec)
            self._wait_component(name, identity)
        self.log(f"restarted {name} (pid {self.sup.record(name)['pid']})")

    # ------------------------------------------------------------ status

    def status(self):
        """One dict per component plus endpoints; ``healthy`` says whether tests can use the cluster."""
        env = read_env_file(self.paths.env_file)
        external = bool(env.get("KUBECONFIG")) and Path(env["KUBECONFIG"]) != self.paths.kubeconfig
        bare = env.get(BARE_ENV) == "1"
        components = []
        names = (() if external else config.CONTROL_PLANE) + (() if bare else selected_simulators())
        for name in names:
            rec = self.sup.record(name)
            entry = {"name": name, "pid": rec["pid"] if rec else None, "alive": self.sup.is_running(name)}
            if name in config.SIMULATORS:
                entry["present"] = simulator_module_exists(name)
                entry["ready"] = entry["alive"] and (self.paths.ready / name).exists()
            else:
                entry["present"] = name == "etcd" or name in controlplane.find_binaries().paths
                entry["ready"] = entry["alive"] and self._component_ready(name)
            components.append(entry)
        control_plane_ok = external or all(c["ready"] for c in components if c["name"] == "kube-apiserver")
        return {
            "mode": "external" if external else "bare" if bare else "local",
            "components": components,
            "cel": cel_summary(self.paths.root),
            "endpoints": self.endpoints(env, external),
            "healthy": bool(env) and control_plane_ok and all(c["ready"] for c in components if c["present"]),
        }

    def _component_ready(self, name):
        if name == "etcd":
            return port_listening(config.ETCD_CLIENT_PORT)
        if name == "kube-apiserver":
            if not self.paths.identity_file.exists():  # status never creates state
                return False
            return controlplane.apiserver_ready(self.paths, controlplane.load_identity(self.paths))
        port = config.CONTROLLER_MANAGER_PORT if name == "kube-controller-manager" else config.SCHEDULER_PORT
        return controlplane.component_healthy(port)

    def endpoints(self, env, external=False):
        return {
            "kube-apiserver": external_server(env["KUBECONFIG"]) if external
            else f"https://127.0.0.1:{config.APISERVER_PORT}",
            "etcd": "(external cluster)" if external else f"http://127.0.0.1:{config.ETCD_CLIENT_PORT}",
            "gke-api": env.get("GKE_API_ENDPOINT", "(none: bare control plane)" if env.get(BARE_ENV) == "1"
                               else f"http://127.0.0.1:{config.GKE_API_PORT}"),
            "gateway": env.get("GATEWAY_ADDRESS", "(none: bare control plane)" if env.get(BARE_ENV) == "1"
                               else config.GATEWAY_ADDRESS),
            "kubeconfig": env.get("KUBECONFIG", str(self.paths.kubeconfig)),
            "env": str(self.paths.env_file),
        }


def cel_summary(state_dir):
    """Counts of the CEL rules the webhook compiled (cel/summary.json, written by localcluster.cel_webhook)."""
    try:
        return json.loads((Path(state_dir) / "cel" / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def listener_of(port):
    """Who listens on a loopback port (from `ss`), to say what is left after `down`."""
    try:
        out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True,  # noqa: S607
                             check=False, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown process"
    match = re.search(r'users:\(\("([^"]+)",pid=(\d+)', out)
    return f"{match.group(1)} pid {match.group(2)}" if match else "unknown process"


def external_server(kubeconfig):
    """Server URL of the current context of an external kubeconfig (for `status`)."""
    try:
        doc = yaml.safe_load(Path(kubeconfig).read_text())
        context = next(c["context"] for c in doc["contexts"] if c["name"] == doc["current-context"])
        return next(c["cluster"]["server"] for c in doc["clusters"] if c["name"] == context["cluster"])
    except (OSError, KeyError, StopIteration, TypeError, yaml.YAMLError):
        return f"(see {kubeconfig})"


def selected_simulators():
    """LOCALCLUSTER_SIMULATORS=gke_api,node_agent (or `none`) limits what `up` starts; default: all."""
    wanted = os.environ.get("LOCALCLUSTER_SIMULATORS")
    if wanted is None:
        return config.SIMULATORS
    names = [n.strip() for n in wanted.split(",") if n.strip() and n.strip() != "none"]
    unknown = sorted(set(names) - set(config.SIMULATORS))
    if unknown:
        raise ClusterError(f"LOCALCLUSTER_SIMULATORS names unknown simulators {unknown}; "
                           f"known: {', '.join(config.SIMULATORS)}")
    return tuple(n for n in config.SIMULATORS if n in names)


def loopback_settings(previous, environ=None):
    """(GATEWAY_ADDRESS, LOCALCLUSTER_POD_NETWORK, LOCALCLUSTER_NODE_NETWORK) from the environment, else from the
    cluster's env file, else the defaults; refused (ClusterError naming the variable) when invalid or overlapping."""
    environ = os.environ if environ is None else environ
    names = ("GATEWAY_ADDRESS", config.POD_NETWORK_ENV, config.NODE_NETWORK_ENV)
    defaults = (config.GATEWAY_ADDRESS, config.DEFAULT_POD_NETWORK, config.DEFAULT_NODE_NETWORK)
    values = {name: environ.get(name) or previous.get(name) or default
              for name, default in zip(names, defaults, strict=True)}
    try:
        gateway = config.gateway_address(values["GATEWAY_ADDRESS"])
        pods = config.pod_network(values)
        nodes = config.node_network(values)
    except ValueError as exc:
        raise ClusterError(str(exc)) from None
    if pods.overlaps(nodes):
        raise ClusterError(f"{config.POD_NETWORK_ENV}={pods} overlaps {config.NODE_NETWORK_ENV}={nodes}: "
                           "pod and node addresses must differ")
    first_node, last_node = (ipaddress.ip_address(config.node_ip(nodes, n, n)) for n in (2, 251))
    if ipaddress.ip_address(gateway) in pods or first_node <= ipaddress.ip_address(gateway) <= last_node:
        raise ClusterError(f"GATEWAY_ADDRESS={gateway} lies in the pod addresses ({config.POD_NETWORK_ENV}={pods}) "
                           f"or the node addresses ({config.NODE_NETWORK_ENV}={nodes}: {first_node}-{last_node})")
    return gateway, str(pods), str(nodes)


def ready_timeout():
    value = os.environ.get("LOCALCLUSTER_READY_TIMEOUT", "60")
    try:
        return float(value)
    except ValueError:
        raise ClusterError(f"LOCALCLUSTER_READY_TIMEOUT must be a number of seconds, got {value!r}") from None


def missing_consequence(name):
    return {
        "kube-controller-manager": "without it deleted namespaces stay Terminating, Deployments get no "
                                   "ReplicaSets/Pods and ServiceAccount tokens are not issued",
        "kube-scheduler": "without it no pod is bound to a node",
        "kube-apiserver": "no API server",
    }.get(name, "")
