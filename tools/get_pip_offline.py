"""Stand-in for ansible-test's get-pip bootstrap script where ci-files.testing.ansible.com
cannot be reached: ansible-test runs it inside each fresh sanity virtualenv with pip
arguments (e.g. `pip==24.2 --no-setuptools`). Put pip there with the standard library's
ensurepip, then let that pip install what was asked from the configured package index.
tools/sanity.sh copies it to ~/.ansible/test/cache/get_pip_<version>.py.
"""

import ensurepip
import os
import subprocess
import sys

env = dict(os.environ)
ensurepip.bootstrap(upgrade=True)  # it sets PIP_CONFIG_FILE=/dev/null in os.environ
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "--quiet", *args], env=env))
