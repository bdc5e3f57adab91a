#!/usr/bin/env bash
# Issue 4's reliability checks for CI: the chaos suite (>= 50 seeded in-process seeds per
# platform — Cloud Run, App Engine, load balancer (issue 15) — plus seeds that kill -9 the real
# binary) and a short smoke run of every fuzz target. Called from .ci/run (which requires the
# Firestore emulator); docs/reliability.md says what is tested and how to run it longer.
#
# Knobs: CHAOS_SEEDS (50 per platform), CHAOS_PROCESS_SEEDS (1 per platform), CHAOS_FANOUT_SEEDS
# (2: fan-out on, 3 processes of the binary behind the Pub/Sub emulator, 30 services; issue 16),
# FUZZ_SECONDS per target (20),
# CUTOVER_FUZZ_TARGET_DIR (the fuzz build's target dir; kept outside the clone so later runs on
# the same machine start warm).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

CHAOS_SEEDS=${CHAOS_SEEDS:-50}
CHAOS_PROCESS_SEEDS=${CHAOS_PROCESS_SEEDS:-1}
CHAOS_FANOUT_SEEDS=${CHAOS_FANOUT_SEEDS:-2}
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
FUZZ_TARGET_DIR=${CUTOVER_FUZZ_TARGET_DIR:-${HOME:-/root}/.cache/cutover/fuzz-target}
TARGETS=(push_envelope push_auth build_notification alert_incident annotations_policy gcp_answers)
CARGO_FUZZ_VERSION=0.13.2

work=$(mktemp -d -t cutover-reliability.XXXXXX)
chaos_pid=""
cleanup() {
  if [ -n "$chaos_pid" ] && kill -0 "$chaos_pid" 2>/dev/null; then
    kill "$chaos_pid" 2>/dev/null || true
    wait "$chaos_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

step "chaos suite: $CHAOS_SEEDS in-process seeds, $CHAOS_PROCESS_SEEDS kill -9 seeds, per platform; $CHAOS_FANOUT_SEEDS fan-out seeds (build)"
cargo test --test chaos --no-run
step "chaos suite: running in the background while the fuzz targets build and run"
# The fan-out seeds (test fanout::chaos_fanout) run beside the others, mostly waiting for the
# wall clock; they need the Pub/Sub emulator (.ci/run requires it: CUTOVER_REQUIRE_EMULATOR=1).
CHAOS_SEEDS=$CHAOS_SEEDS CHAOS_PROCESS_SEEDS=$CHAOS_PROCESS_SEEDS CHAOS_FANOUT_SEEDS=$CHAOS_FANOUT_SEEDS \
  cargo test --test chaos >"$work/chaos.log" 2>&1 &
chaos_pid=$!
chaos_start=$SECONDS

step "cargo-fuzz"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi
cargo fuzz --version

# libFuzzer's coverage instrumentation uses only stable -C flags; a sanitizer would need -Z
# flags (nightly), and cutover's parsers are safe Rust, so none is used.
FUZZ=(-O --sanitizer none --target-dir "$FUZZ_TARGET_DIR")
step "fuzz targets: build (${TARGETS[*]})"
mkdir -p "$FUZZ_TARGET_DIR"
cargo fuzz build "${FUZZ[@]}"

# Seed corpora: the committed seeds, this repository's event fixtures and its captured payloads.
seed() {
  local target=$1 dir="$work/corpus/$1"
  mkdir -p "$dir"
  cp fuzz/seeds/"$target"/* "$dir"/
  local payloads=tests/fixtures/payloads
  case $target in
    push_envelope)
      [ -f "$payloads/pubsub-push-1.json" ] && cp "$payloads/pubsub-push-1.json" "$dir"/ ;;
    build_notification)
      for f in tests/fixtures/events/cloudbuild-*.json "$payloads"/cloudbuild-*.json; do
        [ -f "$f" ] && { printf '\x01'; cat "$f"; } >"$dir/fixture-$(basename "$f")"
      done ;;
    alert_incident)
      for f in tests/fixtures/events/monitoring-alert-*.json "$payloads"/monitoring-alert-*.json; do
        [ -f "$f" ] && cp "$f" "$dir/fixture-$(basename "$f")"
      done ;;
    gcp_answers)
      for f in "$payloads"/timeseries-*.json; do
        [ -f "$f" ] && { printf '\x00'; cat "$f"; } >"$dir/fixture-$(basename "$f")"
      done
      [ -f "$payloads/run-service-1.json" ] && { printf '\x01'; cat "$payloads/run-service-1.json"; } >"$dir/fixture-run-service-1.json" ;;
  esac
  return 0
}

total=0
for t in "${TARGETS[@]}"; do
  step "fuzz smoke: $t for ${FUZZ_SECONDS}s"
  seed "$t"
  log="$work/fuzz-$t.log"
  if ! cargo fuzz run "${FUZZ[@]}" "$t" "$work/corpus/$t" -- \
      -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 -timeout=10 \
      -artifact_prefix="$work/" >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    for a in "$work"/crash-* "$work"/timeout-* "$work"/oom-* fuzz/artifacts/"$t"/*; do
      [ -f "$a" ] && { echo "artifact $a (base64):" >&2; base64 -w0 "$a" >&2; echo >&2; }
    done
    echo "fuzz target $t failed" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  echo "$t: ${runs:-0} executions, no crash"
  total=$((total + ${runs:-0}))
done
echo "fuzz smoke: $total executions in all, no crash"

step "chaos suite: waiting for it"
fuzz_done=$SECONDS
status=0
wait "$chaos_pid" || status=$?
chaos_pid=""
echo "chaos suite: $((SECONDS - chaos_start)) s in the background, $((SECONDS - fuzz_done)) s of it after the fuzz smoke ended"
grep -E "^test result|^test .*(FAILED|ok)$" "$work/chaos.log" || true
figures="${CARGO_TARGET_DIR:-target}/chaos-figures.txt"
if [ -f "$figures" ]; then
  # Over all seeds, then per platform (seeds, kills, kills inside the intent window, violations).
  sed -n '1,/^per seed/p' "$figures"
fi
fanout_figures="${CARGO_TARGET_DIR:-target}/chaos-fanout-figures.txt"
if [ "$CHAOS_FANOUT_SEEDS" -gt 0 ] && [ -f "$fanout_figures" ]; then
  sed -n '1,/^per seed/p' "$fanout_figures"
fi
if [ "$status" -ne 0 ]; then
  tail -n 120 "$work/chaos.log" >&2
  echo "chaos suite failed" >&2
  exit "$status"
fi
step "chaos and fuzz checks passed"
