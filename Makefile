# Thin wrappers; the scripts in tools/ do the work (so a machine without make works too).
.PHONY: setup test demo proto lint bench resilience image ee

setup:
	bash tools/setup.sh

test:
	bash tools/test.sh

demo:
	bash tools/main-job.sh

proto:
	.venv/bin/python tools/gen_proto.py

lint:
	.venv/bin/ruff check .
	.venv/bin/lint-imports

bench:
	.venv/bin/python -m bench

resilience:
	.venv/bin/pytest -q tests/resilience

# The Coral image, offline: build/image/coral-agent-<version>.oci.tar (cached by input hash).
# IMPORT=/path/containerd.sock also imports it into that containerd (k8s.io namespace).
image:
	bash tools/build_image.sh $(if $(IMPORT),--import $(IMPORT))

# The AWX execution environment, offline: ansible-builder on podman from
# execution-environment.yml, localhost/coral-ee:<key> (cached by input hash under build/ee).
ee:
	bash tools/build_ee.sh
