# The two commands of the README: `make demo` and `make test`. Both install what they need.
# Run as root on Debian: tests and the demo create network namespaces.

VENV ?= .venv
PY := $(VENV)/bin/python
DEB_PACKAGES := containernetworking-plugins iptables iproute2 iputils-ping etcd-server etcd-client openssl strace containerd runc podman gcc libc6-dev mmdebstrap buildah

.PHONY: demo test lint bench deps venv clean soak image image-context

demo: deps venv
	$(PY) demo/seed.py

# The import contracts are part of the test command, so CI fails when a layer is crossed.
test: deps venv lint
	$(PY) -m pytest

# The fault-injection suite and the executable fuzzer, longer than in `make test` (issue 13):
# 10x the random SIGKILL runs and etcd bursts, 5000 fuzz cases. MULTIPY_FAULT_SEED / MULTIPY_FUZZ_SEED replay a run.
soak: deps venv
	MULTIPY_SOAK=1 MULTIPY_FUZZ_CASES=$${MULTIPY_FUZZ_CASES:-5000} $(PY) -m pytest -p no:cacheprovider tests/faults \
		tests/integration/test_fuzz_executable.py tests/unit/test_fuzz_inputs.py

# The image conf/daemonset.yaml runs, built here with no registry (conf/image/build-image.sh runs
# conf/image/Containerfile with buildah on a Debian bookworm build root from mmdebstrap), committed as
# localhost/multipy:<version> to the host's containers storage (/var/lib/containers/storage: `podman
# images`), or to IMAGE_STORAGE=DIR (DIR/root, DIR/runroot) when given; IMAGE_ARCHIVE=FILE also writes
# it as an OCI archive for a cluster (`ctr -n k8s.io images import FILE` on a node, or a registry).
IMAGE_STORAGE ?=
IMAGE_ARCHIVE ?=
image: deps venv
	PYTHON=$(abspath $(PY)) conf/image/build-image.sh $(if $(IMAGE_STORAGE),--storage $(IMAGE_STORAGE)) \
		$(if $(IMAGE_ARCHIVE),--archive $(IMAGE_ARCHIVE))

# The same build's context for `docker build` (see conf/image/Containerfile): build/image/context.
image-context: venv
	PYTHON=$(abspath $(PY)) conf/image/build-image.sh --context-only --work build/image

lint: venv
	$(VENV)/bin/ruff check multipy delegates tests bench demo examples
	$(VENV)/bin/lint-imports

bench: deps venv
	$(PY) bench/add_del.py
	$(PY) bench/flannel.py
	$(PY) bench/kube_ipam.py
	$(PY) bench/fill.py && $(PY) bench/scale.py --exhaust
	$(PY) bench/seed_native.py
	$(PY) bench/thick.py
	$(PY) bench/runtime.py

# Debian packages: the Go reference plugins (our oracle and external delegates), iptables, ip, ping,
# etcd (kube-ipam's store, started by the test fixtures and the demo; never as a service) and openssl (test certs).
# containerd, runc and podman: the real-runtime tests and bench/runtime.py start their own, in temp dirs (never as a
# service); gcc and libc6-dev build the test kit's static pause binary (multipy/testing/cri/pause.c); mmdebstrap and
# buildah build the image (make image, tests/image) and the Debian roots its test installs into. podman's sample
# /etc/cni/net.d conflist is not installed (no package's /etc/cni is): the host's CNI conf dir stays as it was.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			-o Dpkg::Options::=--path-exclude=/etc/cni -o 'Dpkg::Options::=--path-exclude=/etc/cni/*' $$missing; \
	fi

venv: $(VENV)/.installed
	@# Byte-compile: with PYTHONDONTWRITEBYTECODE set, every CNI exec would recompile our modules.
	@$(PY) -m compileall -q multipy delegates

$(VENV)/.installed: pyproject.toml
	@# Debian's own python3 needs python3-venv for this; install it only when venv is missing.
	python3 -m venv --clear $(VENV) || { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -q --no-install-recommends python3-venv && python3 -m venv --clear $(VENV); }
	$(PY) -m pip install -q -e '.[test,lint]'
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
