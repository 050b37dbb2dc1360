#!/usr/bin/env bash
# The README's second command: installs what is missing, then builds and runs
# the whole suite: format check, unit + fuzz-corpus + integration tests
# (plain build), the same under AddressSanitizer + UBSan, a short libFuzzer
# run of every target, and the benchmark smoke run.
# Usage: scripts/test.sh [--quick]   (--quick: plain build and ctest only)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "the Local backend tests need root (runs get their own uids)" >&2; exit 1; }
quick=0; [ "${1:-}" = --quick ] && quick=1
start=$(date +%s)
stage() { echo; echo "=== $1 (budget ${2}s; $(( $(date +%s) - start ))s elapsed)"; }

stage "dependencies" 600
scripts/deps.sh test

stage "format" 30
files=$(git ls-files 'src/*.c' 'src/*.h' 'tests/*.c' 'tests/*.h' 'bench/*.c' 2>/dev/null || true)
if [ -n "$files" ]; then
  clang-format --dry-run -Werror $files
fi

stage "build (warnings are errors)" 300
scripts/build.sh build

stage "tests: unit, fuzz corpora, integration" 1200
scripts/docker-env.sh  # a real engine and the test image: the Docker tests need them
export UH_REQUIRE_DOCKER=1  # so they fail, never skip, without an engine
(cd build && ctest --output-on-failure --timeout 1800)

[ $quick = 1 ] && exit 0

stage "build with AddressSanitizer + UBSan" 400
scripts/build.sh build-asan -DUH_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
stage "tests under ASan + UBSan" 1800
(cd build-asan && UH_SANITIZED=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:quarantine_size_mb=64 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --output-on-failure --timeout 1800)

stage "fuzz smoke (libFuzzer, 20 s a target)" 400
CC=clang scripts/build.sh build-fuzz -DUH_FUZZ=ON -DUH_WERROR=OFF -DCMAKE_C_COMPILER=clang
for t in build-fuzz/fuzz_*; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  mkdir -p "build-fuzz/corpus-$name"
  "$t" -max_total_time=20 -timeout=5 -rss_limit_mb=2048 "build-fuzz/corpus-$name" "tests/fuzz/corpus/$name" \
    2>&1 | tail -n 2
done

if [ -x bench/run.sh ]; then
  stage "benchmark smoke" 300
  bench/run.sh --smoke
fi
echo; echo "all stages passed in $(( $(date +%s) - start ))s"
