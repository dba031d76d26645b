#!/usr/bin/env bash
# The dashboard's browser test, as `scripts/test` runs it: installs Debian's chromium
# (apt) when /usr/bin/chromium is missing, the pinned playwright-core (`npm ci`, npm's
# cache in ~/.cache/helios/npm), builds the helios binary in the shared target dir (the workspace build the tests made), and
# runs dashboard.mjs. Under CI=true a missing chromium or Node.js fails the run;
# otherwise it says it skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/helios-target}
say() { echo "tests/browser: $*" >&2; }
missing() {
    if [[ ${CI:-} == true ]]; then
        say "$1; failing under CI=true"
        exit 1
    fi
    say "$1; skipped the browser test"
    exit 0
}

if [[ ! -x /usr/bin/chromium ]]; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        say "installing chromium (apt)"
        apt-get update -qq >&2 || say "apt-get update failed"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2 || say "apt-get install chromium failed"
    fi
    [[ -x /usr/bin/chromium ]] || missing "no /usr/bin/chromium (apt-get install chromium, as root)"
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    missing "Node.js 20+ with npm is not installed"
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
(( node_major >= 20 )) || missing "Node.js $(node --version) is too old for playwright-core (20+ needed)"

say "installing playwright-core (npm ci)"
npm ci --prefix tests/browser --cache "$HOME/.cache/helios/npm" --no-audit --no-fund --loglevel=error >&2

say "building helios"
# The same build as the test run before it (the workspace's tests, so the same feature
# set): a no-op after `scripts/test`'s run, where `--bin helios` alone rebuilt the
# dependencies with other features (issue 16).
cargo build --workspace --tests --locked >&2

export HELIOS_BIN=${HELIOS_BIN:-$CARGO_TARGET_DIR/debug/helios}
export HELIOS_TEST_ARTIFACTS=${HELIOS_TEST_ARTIFACTS:-$CARGO_TARGET_DIR/browser}
node tests/browser/dashboard.mjs
