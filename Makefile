# The two commands a newcomer needs: `make run` and `make test`.
# Everything else here is what those two are made of.

CARGO ?= cargo
WORKSPACE ?= workspace
RPC_PORT ?= 8000

.PHONY: build run test lint fmt clean

# One debug build (dependencies optimised, see Cargo.toml) serves `make run` and every test.
build:
	$(CARGO) build --workspace --bins

# A one-node network with the logging sample, in ./workspace; Ctrl-C stops it, and running it
# again resumes the same network from its ledger.
run: build
	./target/debug/consort sandbox --workspace $(WORKSPACE) --rpc-port $(RPC_PORT) --app samples/logging

# Unit, property, integration and end-to-end tests (the end-to-end tests start real
# `consort` processes on loopback ports, so the binary is built first).
test: build
	$(CARGO) test --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	rm -rf $(WORKSPACE)
	$(CARGO) clean
