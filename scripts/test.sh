#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs the real tools the end-to-end tests run
# against (Prometheus, Alertmanager, promtool/amtool, docker-compose for config validation,
# check-jsonschema, the tansu Kafka broker) when they are missing, then runs every test of the
# workspace from one release build. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

.ci/install-deploy-tools
if [[ -x .ci/install-tansu ]]; then
    .ci/install-tansu
fi
# install-tansu may put the broker in ~/.local/bin.
export PATH="$HOME/.local/bin:$PATH"
exec cargo test --workspace --release "$@"
