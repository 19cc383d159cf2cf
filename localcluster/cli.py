"""Command line: python -m localcluster up|down|status|restart <component>|logs <component>."""
import argparse
import fcntl
import json
import sys
import time
from contextlib import contextmanager

from . import config
from .cluster import Cluster, ClusterError
from .controlplane import ControlPlaneError
from .crds import CrdError
from .supervisor import StartError

COMPONENTS = config.CONTROL_PLANE + config.SIMULATORS


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m localcluster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start whatever is not running (idempotent), install CRDs and bootstrap objects")
    up.add_argument("--bare", action="store_true",
                    help="control plane only (no CRDs, bootstrap objects or simulators): an empty cluster for "
                         "LOCALCLUSTER_EXTERNAL_KUBECONFIG of another `up` (use its own LOCALCLUSTER_DIR and "
                         "LOCALCLUSTER_PORT_OFFSET)")
    down = sub.add_parser("down", help="stop exactly the processes `up` started, in reverse order")
    down.add_argument("--purge", action="store_true", help="also delete .localcluster (etcd data, PKI, tokens)")
    status = sub.add_parser("status", help="each process, its PID, alive or not, and the endpoints")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    restart = sub.add_parser("restart", help="stop and start one component")
    restart.add_argument("component", choices=COMPONENTS)
    logs = sub.add_parser("logs", help="print a component's log (.localcluster/logs/<component>.log)")
    logs.add_argument("component", choices=COMPONENTS)
    logs.add_argument("-n", "--lines", type=int, default=100, help="last N lines (default 100, 0 = all)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    return parser


@contextmanager
def exclusive(cluster):
    """One `up`/`down`/`restart` at a time: the cluster is shared by everyone on the machine."""
    cluster.paths.root.mkdir(parents=True, exist_ok=True)
    with open(cluster.paths.lock_file, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def print_status(report):
    print(f"mode: {report['mode']}   healthy: {'yes' if report['healthy'] else 'no'}")
    print(f"{'component':26} {'pid':>8}  state")
    for comp in report["components"]:
        if not comp["present"]:
            state = "missing (module not written)" if comp["name"] in config.SIMULATORS else "missing (no binary)"
        elif comp["alive"]:
            state = "alive, ready" if comp["ready"] else "alive, not ready"
        else:
            state = "not running" if comp["pid"] is None else "dead"
        print(f"{comp['name']:26} {comp['pid'] or '-':>8}  {state}")
    cel = report.get("cel")
    if cel:
        print(f"CEL rules (cel_webhook): {cel['evaluated']} of {cel['rules']} evaluated, {cel['unevaluable']} not "
              f"evaluable{' (listed in ' + cel['unevaluable_file'] + ')' if cel['unevaluable'] else ''}"
              f"{'' if cel['registered'] else '; not registered (the API server enforces them itself)'}")
    print("endpoints:")
    for key, value in report["endpoints"].items():
        print(f"  {key:15} {value}")


def show_logs(cluster, name, lines, follow):
    path = cluster.sup.log_file(name)
    if not path.exists():
        raise ClusterError(f"no log for {name} yet ({path})")
    with open(path, errors="replace") as handle:
        content = handle.readlines()
        sys.stdout.writelines(content[-lines:] if lines else content)
        while follow:
            line = handle.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                time.sleep(0.3)


def main(argv=None):
    args = build_parser().parse_args(argv)
    cluster = Cluster()
    try:
        if args.command == "up":
            with exclusive(cluster):
                errors = cluster.up(bare=args.bare)
            return 1 if errors else 0
        if args.command == "down":
            with exclusive(cluster):
                cluster.down(purge=args.purge)
            return 0
        if args.command == "restart":
            with exclusive(cluster):
                cluster.restart(args.component)
            return 0
        if args.command == "status":
            report = cluster.status()
            print(json.dumps(report, indent=1)) if args.json else print_status(report)
            return 0 if report["healthy"] else 1
        if args.command == "logs":
            show_logs(cluster, args.component, args.lines, args.follow)
            return 0
    except (ClusterError, ControlPlaneError, CrdError, StartError) as exc:
        print(f"localcluster {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
