# The two commands a newcomer needs: `make run` and `make test`.
# Everything else here is what those two are made of.

SHELL := /bin/bash
CARGO ?= cargo
WORKSPACE ?= workspace
RPC_PORT ?= 8000

CCF_VENV ?= target/ccf-venv

.PHONY: build run test lint fmt clean bench soak sdk sdk-deps sdk-runners template ts-sample ccf-tools browser-tests console

# One debug build (dependencies optimised, see Cargo.toml) serves `make run` and every test.
# The web console is built first: the node embeds console/dist/ (runtime/node/build.rs).
build: console
	$(CARGO) build --workspace --bins

# The web console every node serves at /console (TypeScript and preact, bundled by esbuild;
# members sign with the SDK's memberSigner, so the SDK's dependencies come first).
console: sdk-deps
	cd console && npm ci --no-audit --no-fund && npm run build

# A one-node network with the logging sample, in ./workspace; Ctrl-C stops it, and running it
# again resumes the same network from its ledger.
run: build
	./target/debug/consort sandbox --workspace $(WORKSPACE) --rpc-port $(RPC_PORT) --app samples/logging

# Unit, property, integration and end-to-end tests (the end-to-end tests start real
# `consort` processes on loopback ports, so the binary is built first).
# The npm SDK (js-sdk/, package consort-sdk): its dependencies, and its own tests (some start
# real nodes with the binary built here).
sdk: build sdk-deps
	@mkdir -p target && rm -f target/npm-test.log
	cd js-sdk && set -o pipefail && npm test 2>&1 | tee -a ../target/npm-test.log

sdk-deps:
	cd js-sdk && npm ci --no-audit --no-fund

# startNetwork under vitest and jest, as app authors' runners load it (pinned by the lock file).
sdk-runners: sdk
	cd js-sdk/test/runners && npm ci --no-audit --no-fund && set -o pipefail && NO_COLOR=1 npm test 2>&1 | tee -a ../../../target/npm-test.log

# The TypeScript template an app starts from: built with the SDK, tested against a real node.
template: sdk
	cd samples/ts-template && npm ci --no-audit --no-fund && set -o pipefail && npm test 2>&1 | tee -a ../../target/npm-test.log

# The TypeScript sample: @microsoft/ccf-app 6.0.1, type-checked and bundled with esbuild; and
# the test app that bundles jsrsasign from npm next to it, as CCF's tests/npm-app does; and the
# one that bundles nanoid, uuid and @noble/hashes, which need the Web APIs.
ts-sample: sdk
	cd samples/ts-app && npm ci --no-audit --no-fund && npm run build
	cd tests/apps/npm-crypto && npm ci --no-audit --no-fund && npm run build
	cd tests/apps/web-apis && npm ci --no-audit --no-fund && npm run build

# Tests in a real browser: Debian's Chromium, driven by playwright-core (tests/browser), with
# NSS's certutil/pk12util to put the service certificate (and a member's identity) in the
# browser's certificate store. Installed from Debian's packages when missing (as root, or
# through sudo).
CHROMIUM := /usr/bin/chromium
CERTUTIL := /usr/bin/certutil
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL = $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y $(1) || ($(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y $(1))
browser-tests: sdk $(CHROMIUM) $(CERTUTIL)
	cd tests/browser && npm ci --no-audit --no-fund && set -o pipefail && npm test 2>&1 | tee -a ../../target/npm-test.log
$(CHROMIUM):
	$(call APT_INSTALL,chromium)
$(CERTUTIL):
	$(call APT_INSTALL,libnss3-tools openssl)

# CCF's own member tooling (`ccf_cose_sign1` from the `ccf` Python package), which an
# end-to-end test uses to govern a Consort service with no Consort tool in the signing path.
ccf-tools: $(CCF_VENV)/bin/ccf_cose_sign1
$(CCF_VENV)/bin/ccf_cose_sign1:
	python3 -m venv $(CCF_VENV)
	$(CCF_VENV)/bin/pip install --quiet --disable-pip-version-check ccf==6.0.28

# Ends with one totals line ("tests: N passed, N failed": cargo's tests and the npm packages'
# node:test, vitest and jest tests, which ran first) and cargo's exit status.
test: build sdk sdk-runners template ts-sample ccf-tools browser-tests
	@mkdir -p target; status=0; \
	set -o pipefail; $(CARGO) test --workspace --lib --bins --tests 2>&1 | tee target/test.log || status=$$?; \
	awk '/^test result:/ {p += $$4; f += $$6} /^# pass / {p += $$3} /^# fail / {f += $$3} \
	  /^ *Tests:? / {for (i = 2; i <= NF; i++) {if ($$i ~ /^passed/) p += $$(i-1); if ($$i ~ /^failed/) f += $$(i-1)}} END {printf "tests: %d passed, %d failed\n", p, f}' target/test.log target/npm-test.log; \
	exit $$status

# Load and latency of the logging sample on a release build, and the bare-engine baseline.
# Prints a Markdown table; docs/perf.md keeps the latest figures.
# The etcd rows run Debian's etcd 3.4 (package etcd-server), unpacked under target/ rather than
# installed, so that no system service is started.
ETCD_BIN := target/etcd/usr/bin/etcd

bench: $(ETCD_BIN) sdk-deps console
	$(CARGO) build --release --workspace --bins
	CONSORT_BIN=$(CURDIR)/target/release/consort ETCD_BIN=$(CURDIR)/$(ETCD_BIN) ./target/release/consort-bench

$(ETCD_BIN):
	rm -rf target/etcd && mkdir -p target/etcd
	cd target/etcd && apt-get download etcd-server && dpkg-deb -x etcd-server_*.deb .

# Memory under a long run: a node's resident memory must not grow with its ledger (issue 19).
# Not part of `make test`: a million writes take minutes. SOAK_WRITES sets the count.
soak: console
	$(CARGO) build --release --workspace --bins
	CONSORT_BIN=$(CURDIR)/target/release/consort ./target/release/consort-soak

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	rm -rf $(WORKSPACE)
	$(CARGO) clean
