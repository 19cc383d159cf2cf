"""Stand-in for the get-pip.py bootstrap script that ansible-test downloads.

ansible-test creates each sanity virtualenv without pip and runs this script with pip-install
arguments (e.g. ``pip==24.2``). Its download host is unreachable here, so install CPython's
bundled pip with ensurepip, then let that pip install what was asked for from the package index.
ansible-test clears the environment and pip's configuration (PIP_CONFIG_FILE=/dev/null), so the
bundled pip would only trust its own CA list: point it at the system bundle. pip >= 24.2 then uses
the system trust store by itself (truststore) for the installs ansible-test runs next.
"""
import ensurepip
import os
import subprocess
import sys

SYSTEM_CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")

ensurepip.bootstrap()
args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
cert = next((path for path in SYSTEM_CA_BUNDLES if os.path.exists(path)), None)
if cert:
    args = ["--cert", cert, *args]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args]))
