# The two commands a fresh Debian 12 machine (as root) needs:
#   make demo   - the main job end to end, in network namespaces on this machine
#   make test   - the whole test suite, with formatting and lint checks
.PHONY: deps deb-tools fuzz-tools build deb demo test lint bench bench-peers fuzz fuzz-smoke clean

deps:
	./scripts/install-deps.sh

# cargo-deb builds the Debian package (make deb, tests/packaging.rs); pinned so that the
# package and its lintian check do not change under us.
CARGO_DEB_VERSION = 3.8.0
deb-tools:
	@cargo deb --version 2>/dev/null | grep -qx "cargo-deb $(CARGO_DEB_VERSION)" || { \
		echo "deb-tools: building cargo-deb $(CARGO_DEB_VERSION) from crates.io (once; about 1-2 minutes)"; \
		cargo install cargo-deb --version $(CARGO_DEB_VERSION) --locked; }

# cargo-fuzz (make fuzz, and the smoke run in make test) runs on the nightly toolchain; pinned
# like cargo-deb. The machines this project builds on come with a nightly toolchain; rustup
# installs one only where none is there. An installed one is used as is, so a test run never
# changes the toolchain under other builds.
CARGO_FUZZ_VERSION = 0.13.2
fuzz-tools:
	@rustup run nightly rustc --version >/dev/null 2>&1 || \
		rustup toolchain install nightly --profile minimal
	@cargo fuzz --version 2>/dev/null | grep -qx "cargo-fuzz $(CARGO_FUZZ_VERSION)" || \
		cargo install cargo-fuzz --version $(CARGO_FUZZ_VERSION) --locked

build: deps
	cargo build --locked

demo: build
	./scripts/demo.sh

lint:
	./scripts/lint-shell.sh
	cargo fmt --all -- --check
	cargo clippy --locked --all-targets -- -D warnings

deb: deps deb-tools
	./packaging/build-deb.sh

test: deps deb-tools fuzz-tools lint
	cargo test --locked --all-targets
	$(MAKE) fuzz-smoke

# Every fuzz target for FUZZ_SECONDS each (default 60), then a table of executions and crashes;
# fails on any crash. Crashing inputs are kept in fuzz/artifacts/<target>/.
FUZZ_SECONDS ?= 60
fuzz: fuzz-tools
	nice -n 10 ./scripts/fuzz.sh $(FUZZ_SECONDS)

# A few seconds per target over its seed corpus (make test).
FUZZ_SMOKE_SECONDS ?= 2
fuzz-smoke: fuzz-tools
	./scripts/fuzz.sh --smoke $(FUZZ_SMOKE_SECONDS)

bench: deps
	cargo bench --locked

# virtmasq beside its peers and floors in one run, as a table with ratios (benches/peers/);
# builds OpenStack ironic's venv in ~/.cache once, and the .deb the libvirt comparison installs.
bench-peers: deps deb-tools
	./scripts/bench-peers.sh

clean:
	cargo clean
