#!/usr/bin/env bash
# Runs every fuzz target for MINUTES minutes each, one after the other, and
# prints one line per target: its name, how many runs, how many crashes.
#
#   fuzz/run-all.sh 10            # every target, 10 minutes each
#   fuzz/run-all.sh 1 view dsn    # only these targets
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). cargo-fuzz builds with
# sanitizer flags only a nightly compiler accepts; on a stable toolchain
# RUSTC_BOOTSTRAP=1 lets the stable compiler accept them (set here). Each
# target starts from fuzz/seeds/<target> (copied, so the corpus libFuzzer
# grows stays in fuzz/corpus/<target>, which is not committed); a crash is
# written to fuzz/artifacts/<target>/ and must become a regression test.
set -uo pipefail
cd "$(dirname "$0")"
minutes=${1:?usage: fuzz/run-all.sh MINUTES [TARGET...]}
shift
export RUSTC_BOOTSTRAP=1
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build -O >/dev/null 2>&1 || { cargo fuzz build -O; exit 1; }
status=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  [ -d "seeds/$t" ] && cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null
  log="artifacts/$t/run.log"
  before=$(find "artifacts/$t" -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' | wc -l)
  cargo fuzz run -O "$t" "corpus/$t" -- \
    -max_total_time=$((minutes * 60)) -timeout=10 -rss_limit_mb=2048 -max_len=1048576 \
    -print_final_stats=1 >"$log" 2>&1
  rc=$?
  after=$(find "artifacts/$t" -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' | wc -l)
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  crashes=$((after - before))
  [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ] && crashes="?(exit $rc, see $log)"
  echo "$t: runs=${runs:-0} crashes=$crashes minutes=$minutes"
  [ "$crashes" != 0 ] && status=1
done
exit $status
