#!/usr/bin/env bash
# Checks the module layout rule of DESIGN §10: every top-level module of src/
# belongs to a stage, no stage imports a later one, no import cycles. Prints
# each offending file:line. The stage order is STAGES in tests/layout.rs:
# smtp < message < config < telemetry < dns < tls < spool < store < scan <
# checks < delivery < inbound < web < exo_setup < app < cli
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --quiet --test layout -- --nocapture
