#!/usr/bin/env bash
# Runs every side-by-side benchmark of this module, 10 rounds, and prints
# benchstat tables: one per group of scenarios, one column per library,
# each compared with this library's column (the base).
#
#   ./run.sh                                  # everything (about 15 minutes)
#   COUNT=3 BENCHTIME=200ms ./run.sh          # a quicker look
#   SERIAL='^BenchmarkRetryHappy$' PARALLEL=- ./run.sh   # a subset
#
# Raw results go to $OUT (bench.txt); benchstat can be re-run on them.
set -euo pipefail
cd "$(dirname "$0")"

count=${COUNT:-10}
benchtime=${BENCHTIME:-500ms}
out=${OUT:-bench.txt}
serial=${SERIAL:-'^Benchmark(RetryHappy|RetryFlaky|BreakerClosed|BreakerOpen|RetryBreakerHappy|RetryBreakerFlaky|HTTPGet|HTTPGetFlaky|Dedup)$'}
parallel=${PARALLEL:-'^Benchmark(RetryHappyParallel|BreakerClosedParallel)$'}
benchstat=(go run golang.org/x/perf/cmd/benchstat@latest)

bin=$(mktemp -d)/bench.test
trap 'rm -rf "$(dirname "$bin")"' EXIT
go test -c -o "$bin" .

# A benchmark that fails (a wrong result, too many connections) fails the
# script, after the tables of what did run.
status=0
commit=$(git describe --always --dirty 2>/dev/null || echo unknown)
echo "# $(go version); $(nproc) CPUs; $(date -u '+%Y-%m-%d %H:%M UTC'); commit $commit" | tee "$out"
# Serial scenarios at the machine's GOMAXPROCS; the parallel ones at 1 and
# 2 CPUs, to see whether the per-call time grows with cores. The $count
# rounds are interleaved (every library once per round, -count 1), rather
# than -count $count, which runs each library's rounds one after the other
# and so lays the machine's drift over those seconds on one library.
for round in $(seq "$count"); do
  echo "# round $round of $count" >&2
  "$bin" -test.run '^$' -test.bench "$serial" -test.benchmem \
    -test.count 1 -test.benchtime "$benchtime" | tee -a "$out" || status=1
  if [ "$parallel" != "-" ]; then
    "$bin" -test.run '^$' -test.bench "$parallel" -test.benchmem \
      -test.count 1 -test.benchtime "$benchtime" -test.cpu 1,2 | tee -a "$out" || status=1
  fi
done

table() { # title, benchmark-name regexp, column order
  echo
  echo "## $1"
  "${benchstat[@]}" -filter ".name:/$2/" -col "/lib@($3)" "$out"
}
table "Retry (scenarios 1, 2)" '^Retry(Happy|HappyParallel|Flaky)$' \
  'resilient direct eapache sethvargo cenkalti avast failsafe'
table "Breaker (scenarios 3, 4, 5)" '^(Breaker|RetryBreaker)' \
  'resilient resilient-allow direct eapache gobreaker failsafe'
table "HTTP GET over loopback (scenario 6)" '^HTTP' \
  'httpx plain retryablehttp failsafehttp'
table "Deduplication (scenario 7)" '^Dedup$' \
  'resilient direct singleflight'
exit $status
