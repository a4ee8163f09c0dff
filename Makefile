# The two commands a fresh Debian 12 machine (as root) needs:
#   make demo   - the main job end to end, in network namespaces on this machine
#   make test   - the whole test suite, with formatting and lint checks
.PHONY: deps build demo test lint bench clean

deps:
	./scripts/install-deps.sh

build: deps
	cargo build --locked

demo: build
	./scripts/demo.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --locked --all-targets -- -D warnings

test: deps lint
	cargo test --locked --all-targets

bench: deps
	cargo bench --locked

clean:
	cargo clean
