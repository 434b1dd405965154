# The two commands: `make demo` runs the sidecar with the bundled proxy.toml; `make test` runs
# every test. Both install cmake first where it is missing (pingora's zlib-ng needs it).
.PHONY: demo test lint bench tools

tools:
	@scripts/ensure-tools.sh

demo: tools
	scripts/demo.sh

test: tools
	scripts/test.sh

lint: tools
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	scripts/ensure-tools.sh cargo-machete
	PATH="$$HOME/.cargo/bin:$$PATH" cargo machete

bench: tools
	bench/run.sh
