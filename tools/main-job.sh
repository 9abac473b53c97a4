#!/usr/bin/env bash
# The main job on one machine with no cluster: deploy colony + host agent with
# ansible-playbook (the embedded default, coral_mode=host), then an audited fleet exec.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
ansible-playbook playbooks/deploy-coral.yml "$@"
ansible-playbook playbooks/fleet-exec.yml -e 'coral_exec_command="uname -a"' -e coral_exec_all=true "$@"
coral audit list
