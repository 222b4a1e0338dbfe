#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang into build-fuzz and runs each for a
# bounded time on a scratch copy of its seed corpus. One summary line per target; exits non-zero
# if any target crashed (the crash input's path is printed), 2 on usage or build errors.
set -euo pipefail

ALL_TARGETS=(fuzz_resp_parser fuzz_reply_reader fuzz_raft_codec fuzz_raft_node fuzz_peer_frames
             fuzz_wal_recovery fuzz_tickets fuzz_acl fuzz_tls_session fuzz_http_request)
SECONDS_PER_TARGET=60
UPDATE_CORPUS=0
JOBS=$(nproc 2>/dev/null || echo 2)
BUILD_DIR=build-fuzz
TARGETS=()

usage() {
  cat <<EOF
usage: tools/fuzz.sh [--seconds N] [--update-corpus] [--build-dir DIR] [target...]

Configures and builds DIR (default build-fuzz) with clang and -DTICKETD_FUZZ=ON, then runs each
target (default: all) for N seconds (default 60) with -rss_limit_mb=2048 on a copy of
tests/fuzz/corpus/<target>, plus the reproducers in tests/fuzz/regressions/<target>.

  --seconds N        time per target (libFuzzer -max_total_time)
  --update-corpus    merge the new interesting inputs back into tests/fuzz/corpus/<target>
                     (minimised with -merge=1); without it the repository is left untouched
  --build-dir DIR    build directory (relative to the repository root)
  -h, --help         this text

targets: ${ALL_TARGETS[*]}
Exit status: 0 no crash, 1 a target crashed (or its regressions failed), 2 usage/build error.
Environment: CC/CXX (default clang/clang++), TICKETD_FUZZ_TMP (scratch dir of the WAL target).
EOF
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds)
      [[ $# -ge 2 && "$2" =~ ^[0-9]+$ && "$2" -gt 0 ]] || { echo "fuzz.sh: --seconds needs a positive integer" >&2; exit 2; }
      SECONDS_PER_TARGET=$2; shift 2 ;;
    --seconds=*)
      SECONDS_PER_TARGET=${1#--seconds=}
      [[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ && "$SECONDS_PER_TARGET" -gt 0 ]] || { echo "fuzz.sh: --seconds needs a positive integer" >&2; exit 2; }
      shift ;;
    --update-corpus) UPDATE_CORPUS=1; shift ;;
    --build-dir)
      [[ $# -ge 2 ]] || { echo "fuzz.sh: --build-dir needs a value" >&2; exit 2; }
      BUILD_DIR=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    *)
      found=0
      for t in "${ALL_TARGETS[@]}"; do [[ "$t" == "$1" ]] && found=1; done
      [[ $found -eq 1 ]] || { echo "fuzz.sh: unknown target $1 (known: ${ALL_TARGETS[*]})" >&2; exit 2; }
      TARGETS+=("$1"); shift ;;
  esac
done
[[ ${#TARGETS[@]} -gt 0 ]] || TARGETS=("${ALL_TARGETS[@]}")

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CC=${CC:-clang}
CXX=${CXX:-clang++}
command -v "$CXX" >/dev/null || { echo "fuzz.sh: $CXX not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }

# UBSan findings in library code must stop the run (the libraries may be compiled recoverable).
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
START=$(date +%s)
echo "fuzz.sh: building ${BUILD_DIR} with ${CXX}"
mkdir -p "$BUILD_DIR"
if ! cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER="$CC" \
      -DCMAKE_CXX_COMPILER="$CXX" -DTICKETD_FUZZ=ON >"$BUILD_DIR/configure.log" 2>&1; then
  cat "$BUILD_DIR/configure.log" >&2
  echo "fuzz.sh: configure failed" >&2
  exit 2
fi
if ! cmake --build "$BUILD_DIR" -j"$JOBS" --target "${TARGETS[@]}"; then
  echo "fuzz.sh: build failed" >&2
  exit 2
fi
BUILT=$(date +%s)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ticketd-fuzz.XXXXXX")
# Crash inputs are kept (their paths are printed); only the scratch corpora are removed.
cleanup() { rm -rf "$WORK"/*/corpus; }
trap cleanup EXIT

failed=0
summary=()
for t in "${TARGETS[@]}"; do
  bin="$ROOT/$BUILD_DIR/fuzz/$t"
  dir="$WORK/$t"
  mkdir -p "$dir/corpus" "$dir/artifacts"
  if compgen -G "tests/fuzz/corpus/$t/*" >/dev/null; then cp tests/fuzz/corpus/"$t"/* "$dir/corpus/"; fi

  # Known reproducers first: each must now pass.
  if compgen -G "tests/fuzz/regressions/$t/*" >/dev/null; then
    if ! "$bin" -rss_limit_mb=2048 tests/fuzz/regressions/"$t"/* >"$dir/regressions.log" 2>&1; then
      summary+=("$(printf '%-18s REGRESSION FAILED, log: %s' "$t" "$dir/regressions.log")")
      failed=1
      continue
    fi
  fi

  log="$dir/fuzz.log"
  set +e
  (cd "$dir" && "$bin" -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -timeout=25 \
      -print_final_stats=1 -artifact_prefix="$dir/artifacts/" corpus >"$log" 2>&1)
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  execs=${execs:-?}
  rate=?
  [[ "$execs" =~ ^[0-9]+$ ]] && rate=$((execs / SECONDS_PER_TARGET))
  cov=$( (grep -oE 'cov: [0-9]+' "$log" || true) | tail -1 | cut -d' ' -f2)  # none yet: a seed crashed
  crashes=$(find "$dir/artifacts" -type f | wc -l)
  if [[ $rc -ne 0 || $crashes -gt 0 ]]; then
    failed=1
    inputs=$(find "$dir/artifacts" -type f | tr '\n' ' ')
    summary+=("$(printf '%-18s execs=%s (%s/s) cov=%s crashes=%s rc=%s input: %s log: %s' \
      "$t" "$execs" "$rate" "${cov:-?}" "$crashes" "$rc" "${inputs:-none}" "$log")")
    grep -m1 -E '^SUMMARY|ERROR: libFuzzer|runtime error' "$log" || true
  else
    summary+=("$(printf '%-18s execs=%s (%s/s) cov=%s crashes=0' "$t" "$execs" "$rate" "${cov:-?}")")
    if [[ $UPDATE_CORPUS -eq 1 ]]; then
      # Adds to the repository corpus only the inputs that cover something it does not.
      mkdir -p "tests/fuzz/corpus/$t"
      "$bin" -merge=1 -rss_limit_mb=2048 "tests/fuzz/corpus/$t" "$dir/corpus" >"$dir/merge.log" 2>&1
    fi
  fi
done

END=$(date +%s)
echo "fuzz.sh: results (${SECONDS_PER_TARGET}s per target; build $((BUILT - START))s, total $((END - START))s)"
for line in "${summary[@]}"; do echo "  $line"; done
if [[ $failed -ne 0 ]]; then
  echo "fuzz.sh: CRASH found; inputs kept under $WORK" >&2
  exit 1
fi
rm -rf "$WORK"
exit 0
