#!/usr/bin/env bash
# Runs the benchmarks of this module, 10 interleaved rounds, and prints
# benchstat tables: for the side-by-side scenarios, one per group of
# scenarios with a column per library, each compared with this library's
# column (the base); for the growth set, one per part, each by size.
#
#   ./run.sh                                  # everything (about 45 minutes)
#   ./run.sh peers                            # the side-by-side scenarios 1-8 (about 25 minutes)
#   ./run.sh growth                           # the growth set alone (about 20 minutes)
#   COUNT=3 BENCHTIME=200ms ./run.sh growth   # a quicker look
#   SERIAL='^BenchmarkRetryHappy$' PARALLEL=- ./run.sh peers   # a subset
#   GROWTH='Group HTTP' GROWTH_PARALLEL=- ./run.sh growth        # a subset
#
# Raw results go to $OUT (bench.txt, or growth.txt for the growth set
# alone); benchstat can be re-run on them.
set -euo pipefail
cd "$(dirname "$0")"

part=${1:-all}
case "$part" in
all | peers | growth) ;;
*)
  echo "usage: $0 [all|peers|growth]" >&2
  exit 2
  ;;
esac
count=${COUNT:-10}
benchtime=${BENCHTIME:-500ms}
default_out=bench.txt
[ "$part" = growth ] && default_out=growth.txt
out=${OUT:-$default_out}
# The side-by-side scenarios: serial ones at the machine's GOMAXPROCS,
# parallel ones at 1 and 2 CPUs.
serial=${SERIAL:-'^Benchmark(RetryHappy|RetryFlaky|BreakerClosed|BreakerOpen|RetryBreakerHappy|RetryBreakerFlaky|HTTPGet|HTTPGetFlaky|Dedup|GRPCUnary|GRPCUnaryFlaky)$'}
parallel=${PARALLEL:-'^Benchmark(RetryHappyParallel|BreakerClosedParallel)$'}
# The growth set: the same split, each benchmark in a process of its own,
# so that none is slowed by the memory another left behind (a set of
# 100,000 breakers stays reachable until its idle timer forgets them).
growth=${GROWTH:-'BreakersGet KeyedGet BreakersChurn KeyedChurn BreakersMemory Group Policies HTTP'}
growth_parallel=${GROWTH_PARALLEL:-'BreakersGetParallel KeyedGetParallel PoliciesParallel'}
if [ "$part" = growth ]; then
  serial=- parallel=-
elif [ "$part" = peers ]; then
  growth=- growth_parallel=-
fi
benchstat=(go run golang.org/x/perf/cmd/benchstat@latest)

bin=$(mktemp -d)/bench.test
trap 'rm -rf "$(dirname "$bin")"' EXIT
go test -c -o "$bin" .

# A benchmark that fails (a wrong result, too many connections) fails the
# script, after the tables of what did run.
status=0
commit=$(git describe --always --dirty 2>/dev/null || echo unknown)
echo "# $(go version); $(nproc) CPUs; $(date -u '+%Y-%m-%d %H:%M UTC'); commit $commit; load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)" | tee "$out"
# bench REGEXP [ARGS...] runs the benchmarks REGEXP matches, once each,
# unless REGEXP is "-".
bench() {
  local re=$1
  shift
  [ "$re" = "-" ] && return 0
  "$bin" -test.run '^$' -test.bench "$re" -test.benchmem \
    -test.count 1 -test.benchtime "$benchtime" "$@" | tee -a "$out" || status=1
}
# The $count rounds are interleaved (every library once per round, -count
# 1), rather than -count $count, which runs each library's rounds one after
# the other and so lays the machine's drift over those seconds on one
# library. Parallel scenarios run at 1 and 2 CPUs, to see whether the time
# per call grows with cores.
for round in $(seq "$count"); do
  echo "# round $round of $count" >&2
  bench "$serial"
  bench "$parallel" -test.cpu 1,2
  if [ "$growth" != "-" ]; then
    for name in $growth; do bench "^BenchmarkGrowth$name\$"; done
  fi
  if [ "$growth_parallel" != "-" ]; then
    for name in $growth_parallel; do bench "^BenchmarkGrowth$name\$" -test.cpu 1,2; done
  fi
done

table() { # title, benchmark-name regexp, benchstat options...
  local title=$1 names=$2
  shift 2
  echo
  echo "## $title"
  "${benchstat[@]}" -filter ".name:/$names/" "$@" "$out"
}
if [ "$part" != growth ]; then
  table "Retry (scenarios 1, 2)" '^Retry(Happy|HappyParallel|Flaky)$' \
    -col '/lib@(resilient direct eapache sethvargo cenkalti avast failsafe)'
  table "Breaker (scenarios 3, 4, 5)" '^(Breaker|RetryBreaker)' \
    -col '/lib@(resilient resilient-allow direct eapache gobreaker failsafe)'
  table "HTTP GET over loopback (scenario 6)" '^HTTP' \
    -col '/lib@(httpx plain retryablehttp failsafehttp)'
  table "Deduplication (scenario 7)" '^Dedup$' \
    -col '/lib@(resilient direct singleflight)'
  table "gRPC unary call over loopback (scenario 8)" '^GRPCUnary' \
    -col '/lib@(resilient plain middleware serviceconfig)'
fi
if [ "$part" != peers ]; then
  table "Growth: keyed sets, lookup of a key held (vs a plain map)" '^Growth(Breakers|Keyed)Get$' \
    -col '/lib@(resilient map)'
  table "Growth: keyed sets, lookup from every goroutine, 1 vs 2 CPUs" '^Growth(Breakers|Keyed)GetParallel$' \
    -col /gomaxprocs
  table "Growth: keyed sets, a new key in a full set" '^Growth(Breakers|Keyed)Churn$'
  table "Growth: memory and build time per idle breaker" '^GrowthBreakersMemory$'
  table "Growth: Group, per waiter (direct: the harness alone)" '^GrowthGroup$' \
    -col '/lib@(resilient direct)'
  table "Growth: policies, one goroutine" '^GrowthPolicies$'
  table "Growth: policies, every goroutine sharing one, 1 vs 2 CPUs" '^GrowthPoliciesParallel$' \
    -col /gomaxprocs
  table "Growth: HTTP GET with 64 and 256 requests in flight" '^GrowthHTTP$' \
    -col '/lib@(plain httpx httpx-breakers)'
fi
exit $status
