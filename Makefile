# The two commands a fresh Debian 12 machine (as root) needs:
#   make demo   - the main job end to end, in network namespaces on this machine
#   make test   - the whole test suite, with formatting and lint checks
.PHONY: deps deb-tools build deb demo test lint bench clean

deps:
	./scripts/install-deps.sh

# cargo-deb builds the Debian package (make deb, tests/packaging.rs); pinned so that the
# package and its lintian check do not change under us.
CARGO_DEB_VERSION = 3.8.0
deb-tools:
	@cargo deb --version 2>/dev/null | grep -qx "cargo-deb $(CARGO_DEB_VERSION)" || { \
		echo "deb-tools: building cargo-deb $(CARGO_DEB_VERSION) from crates.io (once; about 1-2 minutes)"; \
		cargo install cargo-deb --version $(CARGO_DEB_VERSION) --locked; }

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

test: deps deb-tools lint
	cargo test --locked --all-targets

bench: deps
	cargo bench --locked

clean:
	cargo clean
