package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/resilient-go/resilient/chaos"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestJudgeFidelity(t *testing.T) {
	quiet := Delays{Samples: 100, P50Ms: 0.1, P99Ms: 1, MaxMs: 3}
	figs := func(lag Delays, planned, started int) *Figures {
		return &Figures{TimeoutMs: 2000, Clients: []ClientFigures{{Name: "plain", Lag: lag, Total: PhaseFigures{MaxMs: 1500},
			Phases: []PhaseFigures{{Phase: "healthy", Planned: 300, Requests: 300}, {Phase: "outage", Planned: planned, Requests: started}}}}}
	}
	tests := []struct {
		name    string
		sched   Delays
		f       *Figures
		problem string // "" for a valid run
	}{
		{"quiet", quiet, figs(quiet, 600, 600), ""},
		{"at the tolerance", Delays{Samples: 100, P99Ms: 10, MaxMs: 50}, figs(Delays{Samples: 900, P99Ms: 10, MaxMs: 50}, 600, 612), ""},
		{"one stall in few samples", quiet, figs(Delays{Samples: 48, P99Ms: 17, MaxMs: 17}, 600, 600), ""},
		{"no sample", Delays{}, figs(Delays{}, 0, 0), ""},
		{"scheduler p99", Delays{Samples: 100, P99Ms: 10.01, MaxMs: 20}, figs(quiet, 600, 600), "scheduler delay p99 10ms, max 20ms (tolerance: p99 10ms, max 50ms)"},
		{"scheduler max", Delays{Samples: 100, P99Ms: 1, MaxMs: 50.01}, figs(quiet, 600, 600), "scheduler delay p99 1.0ms, max 50ms"},
		{"lag p99", quiet, figs(Delays{Samples: 100, P99Ms: 34, MaxMs: 40}, 600, 600), "plain: requests started late: p99 34ms, max 40ms"},
		{"lag max", quiet, figs(Delays{Samples: 9, P99Ms: 1, MaxMs: 6680}, 600, 600), "plain: requests started late: p99 1.0ms, max 6.68s"},
		{"lag max in few samples", quiet, figs(Delays{Samples: 9, P99Ms: 51, MaxMs: 51}, 600, 600), "plain: requests started late: p99 51ms, max 51ms"},
		{"too few in a phase", quiet, figs(quiet, 400, 38), "plain: outage: 38 requests started, 400 planned (tolerance ±8)"},
		{"too many in a phase", quiet, figs(quiet, 600, 1036), "plain: outage: 1036 requests started, 600 planned (tolerance ±12)"},
		{"a request past its deadline", quiet, func() *Figures { f := figs(quiet, 600, 600); f.Clients[0].Total.MaxMs = 6680; return f }(),
			"plain: a request took 6.68s under a 2.00s deadline (tolerance 50ms)"},
		{"a request at its deadline and the tolerance", quiet, func() *Figures { f := figs(quiet, 600, 600); f.Clients[0].Total.MaxMs = 2050; return f }(), ""},
		{"a few off a small plan", quiet, figs(quiet, 20, 24), "plain: outage: 24 requests started, 20 planned (tolerance ±3)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			judgeFidelity(tt.f, tt.sched)
			fi := tt.f.Fidelity
			assert.Equal(t, Tolerance{P99Ms: 10, MaxMs: 50, Share: 0.02, Slack: 3}, fi.Tolerance)
			if tt.problem == "" {
				assert.True(t, fi.Valid)
				assert.Empty(t, fi.Problems)
				return
			}
			assert.False(t, fi.Valid)
			require.Len(t, fi.Problems, 1)
			assert.Contains(t, fi.Problems[0], tt.problem)
		})
	}
}

// inMemory parses args and runs the command in memory, inside a bubble:
// on fake time the lab never falls behind unless stall makes it.
func inMemory(t *testing.T, stall func(c, k int), args ...string) (code int, stdout, stderr string) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		var out, errs bytes.Buffer
		cfg, err := parseFlags(append([]string{"-quiet"}, args...), &errs)
		require.NoError(t, err)
		cfg.network = func(up *chaos.Upstream) http.RoundTripper { return memory{up} }
		cfg.stall = stall
		code = execute(context.Background(), cfg, &out, &errs, false)
		stdout, stderr = out.String(), errs.String()
	})
	return code, stdout, stderr
}

// TestStalledLoadIsInvalid makes one caller start one request 80ms late,
// on fake time: the run is invalid, it says so at the top and the end of
// the output and at the top of the report, no target is judged, and -check
// exits 3.
func TestStalledLoadIsInvalid(t *testing.T) {
	dir := t.TempDir()
	report, figures := filepath.Join(dir, "r.html"), filepath.Join(dir, "f.json")
	stall := func(c, k int) {
		if c == 3 && k == 20 {
			time.Sleep(80 * time.Millisecond)
		}
	}
	code, stdout, stderr := inMemory(t, stall, "-duration", "4s", "-clients", "plain,tuned", "-check", "-report", report, "-json", figures)
	assert.Equal(t, exitInvalid, code)
	assert.Contains(t, stderr, "-check: the run is invalid")
	banner := "!! INVALID RUN: the lab fell behind its own schedule"
	assert.True(t, strings.HasPrefix(stdout, banner), "the warning comes first:\n%s", stdout)
	assert.Contains(t, stdout, "!!   plain: requests started late: p99 <10µs, max 80ms (tolerance: p99 10ms, max 50ms)\n")
	assert.Contains(t, stdout, "!!   tuned: requests started late: p99 <10µs, max 80ms")
	assert.NotContains(t, stdout, "!!   scheduler delay", "the probe was on time")
	assert.Equal(t, 2, strings.Count(stdout, banner), "and again at the end, after the targets")
	assert.Contains(t, stdout, "targets, tuned: not judged: the run is invalid (see the top)")
	assert.NotContains(t, stdout, "\n  met ")
	assert.NotContains(t, stdout, "NOT MET")
	assert.Contains(t, stdout, "lab fidelity: INVALID;")
	assert.Contains(t, stdout, "\nsummary (INVALID RUN: these figures describe the machine, not the clients)\n")

	page, err := os.ReadFile(report)
	require.NoError(t, err)
	body := string(page[bytes.Index(page, []byte("<body>")):])
	assert.True(t, strings.HasPrefix(body, "<body>\n<h1>resilient-demo</h1>\n<div class=\"banner\"><p><strong>Invalid run"), "the report opens with the warning")
	assert.Contains(t, body, "<strong>Not judged:</strong>")
	assert.NotContains(t, body, `class="met"`)

	raw, err := os.ReadFile(figures)
	require.NoError(t, err)
	var f Figures
	require.NoError(t, json.Unmarshal(raw, &f))
	assert.False(t, f.Fidelity.Valid)
	assert.Len(t, f.Fidelity.Problems, 2)
	require.NotEmpty(t, f.Targets)
	for _, tg := range f.Targets {
		assert.Contains(t, []string{statusNotJudged, statusNA}, tg.Status, tg.ID)
	}
	assert.Equal(t, 80.0, f.Clients[0].Lag.MaxMs)
}

// TestCheck: with -check a valid run whose targets are met exits 0, one
// with a target not met exits 1 and names it.
func TestCheck(t *testing.T) {
	t.Run("met", func(t *testing.T) {
		code, stdout, stderr := inMemory(t, nil, "-check")
		assert.Equal(t, exitOK, code, stderr)
		assert.Contains(t, stdout, "lab fidelity: valid;")
		assert.NotContains(t, stdout, "!!")
		assert.NotContains(t, stdout, "NOT MET")
		assert.NotContains(t, stdout, "not judged")
	})
	t.Run("not met", func(t *testing.T) {
		// A deadline shorter than the brownout's latency spikes: the
		// requests safe to retry cannot all succeed.
		code, stdout, stderr := inMemory(t, nil, "-check", "-timeout", "100ms", "-duration", "8s")
		assert.Equal(t, exitFailed, code)
		assert.Contains(t, stdout, "NOT MET    brownout: at least 99.5% of the requests safe to retry succeed")
		assert.Contains(t, stderr, "resilient-demo: -check: httpx: target not met: brownout")
		assert.NotContains(t, stderr, "invalid")
	})
	t.Run("without -check", func(t *testing.T) {
		code, stdout, _ := inMemory(t, nil, "-timeout", "100ms", "-duration", "8s")
		assert.Equal(t, exitOK, code, "a target not met is a figure, not a failure")
		assert.Contains(t, stdout, "NOT MET")
	})
}

// hog keeps n goroutines busy on the CPU until the returned stop is called
// (once or more).
func hog(n int) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			x := 0
			for {
				select {
				case <-done:
					return
				default:
				}
				for i := range 10000 {
					x += i
				}
			}
		})
	}
	var once sync.Once
	return func() { once.Do(func() { close(done) }); wg.Wait() }
}

// TestStarvedRunIsInvalid runs the lab for real, on loopback, with one
// processor shared with goroutines that keep it busy, as a machine that
// runs other work does: the lab notices that it fell behind, and -check
// exits 3. The hogs are preempted every 10ms or so; eight of them keep any
// other goroutine waiting for tens of milliseconds at a time, well past the
// tolerance whatever else the machine is doing.
func TestStarvedRunIsInvalid(t *testing.T) {
	if testing.Short() {
		t.Skip("real time")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	stop := hog(8)
	defer stop()
	var stdout, stderr strings.Builder
	code := run(context.Background(), []string{"-phases", "healthy=400ms,brownout=400ms,outage=400ms,recovery=400ms",
		"-clients", "plain,httpx", "-callers", "4", "-rate", "100", "-quiet", "-check"}, &stdout, &stderr, false)
	stop()
	assert.Equal(t, exitInvalid, code, "%s\n%s", stdout.String(), stderr.String())
	assert.True(t, strings.HasPrefix(stdout.String(), "!! INVALID RUN"), stdout.String())
	t.Log(stdout.String()[:strings.Index(stdout.String(), "!! Run it again")])
}

// TestQuietRunIsValid runs a light scenario for real, on loopback: when
// the machine lets the lab keep up, the lab says so. What the machine does
// besides (other tests, other builds) is measured by the lab's own probe of
// the scheduler: a run whose scheduler kept within tolerance must be valid
// (the load generator adds no lag of its own); runs where it did not are
// rightly invalid and are tried again, up to five; if the machine never let
// the scheduler keep up, the test is skipped and says so.
func TestQuietRunIsValid(t *testing.T) {
	if testing.Short() {
		t.Skip("real time")
	}
	var busy []string
	for range 5 {
		path := filepath.Join(t.TempDir(), "f.json")
		var stdout, stderr strings.Builder
		code := run(context.Background(), []string{"-phases", "healthy=300ms,brownout=300ms,outage=300ms,recovery=300ms",
			"-clients", "plain", "-callers", "2", "-rate", "40", "-quiet", "-json", path}, &stdout, &stderr, false)
		require.Equal(t, exitOK, code, stderr.String())
		raw, err := os.ReadFile(path)
		require.NoError(t, err)
		var f Figures
		require.NoError(t, json.Unmarshal(raw, &f))
		if s := f.Fidelity.Scheduler.outOf(); s != "" {
			require.False(t, f.Fidelity.Valid)
			busy = append(busy, s)
			continue
		}
		require.True(t, f.Fidelity.Valid, "the scheduler kept up, the load did not: %v", f.Fidelity.Problems)
		assert.NotContains(t, stdout.String(), "!!")
		assert.Contains(t, stdout.String(), "lab fidelity: valid;")
		assert.Equal(t, 48, f.Clients[0].Total.Requests)
		return
	}
	t.Skipf("the machine is too busy for the lab to keep up: scheduler delays %v", busy)
}

// TestOutputsAreCheckedFirst: an output path that cannot be written fails
// before the run, with the flag's name, and leaves nothing behind.
func TestOutputsAreCheckedFirst(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"report in a missing directory", []string{"-report", filepath.Join(dir, "no", "r.html")}, "resilient-demo: -report: cannot write " + filepath.Join(dir, "no", "r.html") + ": no such file or directory"},
		{"json in a missing directory", []string{"-json", filepath.Join(dir, "no", "f.json")}, "resilient-demo: -json: cannot write"},
		{"report is a directory", []string{"-report", dir}, "resilient-demo: -report: cannot write " + dir + ": it is a directory"},
		{"report to standard output", []string{"-report", "-"}, "-report writes to a file; - (standard output) is for -json"},
		{"the same file twice", []string{"-report", filepath.Join(dir, "x"), "-json", filepath.Join(dir, ".", "x")}, "-report and -json name the same file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			start := time.Now()
			code := run(context.Background(), append([]string{"-duration", "1m", "-quiet"}, tt.args...), &stdout, &stderr, false)
			assert.Equal(t, exitUsage, code)
			assert.Contains(t, stderr.String(), tt.want)
			assert.Empty(t, stdout.String(), "nothing ran")
			assert.Less(t, time.Since(start), 10*time.Second, "before the run")
		})
	}
	left, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, left, "no temporary file left behind")
}

// TestJSONToStandardOutput: with -json -, standard output is the JSON
// alone, so that it can be piped into jq; the tables go to stderr. The
// report is written in place of its temporary file.
func TestJSONToStandardOutput(t *testing.T) {
	dir := t.TempDir()
	report := filepath.Join(dir, "r.html")
	require.NoError(t, os.WriteFile(report, []byte("an earlier report"), 0o644))
	var code int
	var stdout, stderr bytes.Buffer
	synctest.Test(t, func(t *testing.T) {
		cfg, err := parseFlags([]string{"-json", "-", "-report", report, "-duration", "3s", "-clients", "plain,httpx"}, &stderr)
		require.NoError(t, err)
		cfg.network = func(up *chaos.Upstream) http.RoundTripper { return memory{up} }
		code = execute(context.Background(), cfg, &stdout, &stderr, false)
	})
	require.Equal(t, exitOK, code, stderr.String())
	var f Figures
	dec := json.NewDecoder(&stdout)
	require.NoError(t, dec.Decode(&f), "standard output is JSON")
	_, err := dec.Token()
	assert.ErrorIs(t, err, io.EOF, "and nothing else")
	assert.Len(t, f.Clients, 2)
	assert.Contains(t, stderr.String(), "\nsummary\n", "the tables went to stderr")
	assert.Contains(t, stderr.String(), "HTML report: "+report)
	page, err := os.ReadFile(report)
	require.NoError(t, err)
	assert.True(t, bytes.HasPrefix(page, []byte("<!DOCTYPE html>")), "the earlier report was replaced")
	left, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, left, 1, "no temporary file left behind")
}
