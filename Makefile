# All set-up lives here: a fresh machine needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# fuse3/libfuse3-dev/pkg-config/gcc build pyfuse3; the rest are the real
# programs the tests run fakefs under (gVisor, runc, crun, node, cgroup-tools) and the
# benchmark's anchor (lxcfs).
DEB_PACKAGES := fuse3 libfuse3-dev pkg-config gcc python3-dev util-linux runsc runc crun \
	busybox-static nodejs lxcfs cgroup-tools
STAMP := $(VENV)/.installed

.PHONY: install deps test stress-test demo bench clean

install: $(STAMP)

# Debian packages only when missing, so repeated runs stay fast and offline.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml
	$(MAKE) deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q -rs tests

# Not part of CI: the whole suite $(RUNS) times in a row, then every test that
# failed at least once (JUnit reports and logs in stress-results/).
RUNS ?= 5
stress-test: install
	$(BIN)/python -m tests.stress_runs --runs $(RUNS) --out stress-results tests

demo: install
	$(BIN)/python -m fakefs.demo

# Side by side with lxcfs and the real cgroupfs; never part of `make test`.
bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info
