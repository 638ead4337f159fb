package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/resilient-go/resilient"
	"github.com/resilient-go/resilient/chaos"
)

// config is the demo's scenario, from its flags.
type config struct {
	duration time.Duration // total; the timeline is scaled to it
	callers  int
	rate     float64 // logical requests per second, per client
	timeout  time.Duration
	seed     uint64
	timeline chaos.Timeline // the built-in upstream's phases
	spans    spans          // what the figures are given for: timeline's phases, or with -url the whole run
	outage   chaos.OutageMode
	brownout float64 // share of requests answered 503 in the brownout
	unkeyed  float64 // share of requests that are POSTs without a key
	posts    float64 // share of requests that are POSTs with a key
	url      string  // a real upstream; "" for the built-in one
	// network, when set, carries every client's requests to its built-in
	// upstream instead of loopback (tests run the scenario in memory, on
	// fake time).
	network func(*chaos.Upstream) http.RoundTripper
	// stall, when set, is called by caller c before it starts its k-th
	// request (tests make the load fall behind its schedule with it).
	stall    func(c, k int)
	clients  []string
	report   string // HTML path
	jsonPath string // JSON path, "-" for stdout
	quiet    bool   // no progress line
	check    bool   // exit non-zero unless the run is valid and every target met
	// openFor is how long the tuned client's breakers stay open, when
	// -open sets it; 0 keeps the recommended setup's (1s).
	openFor   time.Duration
	hedgeWait time.Duration // 0: no hedging (the recommended setup)
	budget    string        // the httpx client's retry budget per host: one of budgetKinds
	limit     string        // the tuned client's concurrency limiter per host: one of limitKinds
	http2     bool          // unencrypted HTTP/2 between every client and its upstream
	// random, when set, is the library clients' source of jitter (tests
	// compare clients request for request with it).
	random func() float64
	// metricsAddr, when set, serves the library clients' metrics
	// (resilient.TextMetrics, Prometheus text format) at /metrics while the
	// scenario runs; metrics is then their sink.
	metricsAddr string
	metrics     *resilient.TextMetrics
}

// parseFlags reads the command line. Errors name the flag.
func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("resilient-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: resilient-demo [flags]\n\n"+
			"Runs the same load through several HTTP clients, side by side, against a flaky\n"+
			"upstream (built in, on loopback, one instance per client with the same seed),\n"+
			"and prints what each client did to the upstream and to its callers.\n\n"+
			"Exit status: 0 done; 1 failed, or with -check a target not met; 2 bad flags;\n"+
			"3 with -check, the run is invalid (the lab fell behind its schedule); 130 interrupted.\n\nflags:\n")
		fs.PrintDefaults()
	}
	fs.DurationVar(&c.duration, "duration", 0, "total `duration` of the scenario; the phases are scaled to it (default: the sum of -phases; with -url, 23s)")
	fs.IntVar(&c.callers, "callers", 10, "concurrent callers per client (>= 1)")
	fs.Float64Var(&c.rate, "rate", 100, "logical requests per second per client, shared by its callers (> 0)")
	fs.DurationVar(&c.timeout, "timeout", 2*time.Second, "deadline of each logical request, retries included (> 0)")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the fault schedule and of the request mix")
	phases := fs.String("phases", chaos.DefaultTimeline().String(), "the upstream's `timeline`: kind=duration,... with kinds healthy, brownout, throttling, outage, recovery")
	outage := fs.String("outage", "refuse", "what the built-in upstream does during an outage: refuse (connections refused) or 503")
	fs.Float64Var(&c.brownout, "brownout", chaos.DefaultConfig(0).Profiles[chaos.Brownout].Unavailable, "share of requests the built-in upstream answers 503 during the brownout, in [0, 0.9]; with 4 attempts a client can rescue 1-share^4 of those safe to retry (0.3: 99.19%)")
	fs.Float64Var(&c.posts, "posts", 0.38, "share of requests that are POSTs with an Idempotency-Key, in [0, 1]")
	fs.Float64Var(&c.unkeyed, "unkeyed", 0.02, "share of requests that are POSTs without an Idempotency-Key, in [0, 1]; the rest are GETs")
	fs.StringVar(&c.url, "url", "", "base `URL` of a real upstream to aim at instead of the built-in one: the clients share it, requests go to URL/items/<id>, the figures are counted on the client side, and no target is judged (-phases, -outage and -brownout do not apply)")
	clients := fs.String("clients", strings.Join(clientNames(), ","), "comma-separated clients to run: "+strings.Join(clientNames(), ", "))
	fs.StringVar(&c.report, "report", "", "write a self-contained HTML report to this `file`")
	fs.StringVar(&c.jsonPath, "json", "", "write the raw figures as JSON to this `file` (- for standard output)")
	fs.BoolVar(&c.quiet, "quiet", false, "no live progress line")
	fs.BoolVar(&c.check, "check", false, "exit 1 if a target is not met and 3 if the run is invalid (the lab fell behind its schedule)")
	fs.DurationVar(&c.openFor, "open", 0, "how long the tuned client's breakers stay open before a probe (> 0; default: the recommended setup's, 1s)")
	fs.DurationVar(&c.hedgeWait, "hedge", 0, "add hedging to the tuned client: how long it waits for an answer before it sends a second attempt (a hedge) of a request safe to repeat, such as 500ms (>= 0; 0: no hedging, as the recommended setup)")
	fs.StringVar(&c.budget, "budget", budgetAdaptive, "the httpx client's retry budget per host: adaptive (httpx's default), ratio (Finagle's: 20% of requests + 10 retries/s), grpc (gRPC's retry throttling: 10 tokens, ratio 0.1) or none")
	fs.StringVar(&c.limit, "limit", limitNone, "add an adaptive concurrency limiter per host to the tuned client: none (the recommended setup), gradient2 or aimd")
	fs.StringVar(&c.metricsAddr, "metrics", "", "serve the library clients' metrics in the Prometheus text format at http://`address`/metrics (such as :9090) while the scenario runs")
	fs.BoolVar(&c.http2, "http2", false, "speak unencrypted HTTP/2 (prior knowledge) to the upstream instead of HTTP/1.1, for every client")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags only; see -h)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if c.url != "" {
		// Decision: refuse what cannot apply rather than ignore it, so
		// that nobody reads an outage into figures of an upstream that had
		// none.
		switch {
		case set["outage"]:
			return nil, errors.New("-outage applies to the built-in upstream only; with -url the upstream is yours and does what it does")
		case set["phases"]:
			return nil, errors.New("-phases is the built-in upstream's timeline; with -url there are no phases: set the length of the run with -duration")
		case set["brownout"]:
			return nil, errors.New("-brownout applies to the built-in upstream only; with -url the upstream is yours and does what it does")
		}
	}

	tl, err := chaos.ParseTimeline(*phases)
	if err != nil {
		return nil, fmt.Errorf("-phases: %w", err)
	}
	switch {
	case c.duration < 0 || (set["duration"] && c.duration == 0):
		return nil, fmt.Errorf("-duration must be > 0, got %v", c.duration)
	case c.duration > 0:
		tl = tl.Scale(c.duration)
	}
	c.timeline = tl
	c.duration = tl.Total()
	c.spans = spansOf(tl)
	if c.url != "" {
		c.spans = spans{{urlSpan, c.duration}}
	}
	switch *outage {
	case "refuse":
		c.outage = chaos.Refuse
	case "503":
		c.outage = chaos.Fail503
	default:
		return nil, fmt.Errorf("-outage must be refuse or 503, got %q", *outage)
	}
	switch {
	case c.callers < 1:
		return nil, fmt.Errorf("-callers must be >= 1, got %d", c.callers)
	case !(c.rate > 0) || c.rate > 1e6:
		return nil, fmt.Errorf("-rate must be in (0, 1e6], got %v", c.rate)
	case c.timeout <= 0:
		return nil, fmt.Errorf("-timeout must be > 0, got %v", c.timeout)
	case !(c.posts >= 0 && c.posts <= 1):
		return nil, fmt.Errorf("-posts must be in [0, 1], got %v", c.posts)
	case !(c.brownout >= 0 && c.brownout <= 0.9):
		return nil, fmt.Errorf("-brownout must be in [0, 0.9], got %v", c.brownout)
	case !(c.unkeyed >= 0 && c.unkeyed <= 1):
		return nil, fmt.Errorf("-unkeyed must be in [0, 1], got %v", c.unkeyed)
	case c.posts+c.unkeyed > 1:
		return nil, fmt.Errorf("-posts plus -unkeyed must be at most 1, got %v", c.posts+c.unkeyed)
	case set["open"] && c.openFor <= 0:
		return nil, fmt.Errorf("-open must be > 0, got %v", c.openFor)
	case c.hedgeWait < 0:
		return nil, fmt.Errorf("-hedge must be >= 0 (0: no hedging), got %v", c.hedgeWait)
	case !slices.Contains(budgetNames(), c.budget):
		return nil, fmt.Errorf("-budget must be one of %s, got %q", strings.Join(budgetNames(), ", "), c.budget)
	case !slices.Contains(limitNames(), c.limit):
		return nil, fmt.Errorf("-limit must be one of %s, got %q", strings.Join(limitNames(), ", "), c.limit)
	}
	if c.url != "" {
		u, err := url.Parse(c.url)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("-url must be an absolute http or https URL, got %q", c.url)
		}
		c.url = strings.TrimRight(c.url, "/")
	}
	for name := range strings.SplitSeq(*clients, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if !slices.Contains(clientNames(), name) {
			return nil, fmt.Errorf("-clients: unknown client %q (want some of %s)", name, strings.Join(clientNames(), ", "))
		}
		if slices.Contains(c.clients, name) {
			return nil, fmt.Errorf("-clients: %q given twice", name)
		}
		c.clients = append(c.clients, name)
	}
	if len(c.clients) == 0 {
		return nil, errors.New("-clients: name at least one client")
	}
	for _, f := range [][2]string{{"budget", "httpx"}, {"open", "tuned"}, {"hedge", "tuned"}, {"limit", "tuned"}} {
		if set[f[0]] && !slices.Contains(c.clients, f[1]) {
			return nil, fmt.Errorf("-%s applies to the %s client, which -clients leaves out", f[0], f[1])
		}
	}
	switch {
	case c.report == "-":
		return nil, errors.New("-report writes to a file; - (standard output) is for -json")
	case c.report != "" && c.jsonPath != "" && filepath.Clean(c.report) == filepath.Clean(c.jsonPath):
		return nil, fmt.Errorf("-report and -json name the same file %q", c.report)
	}
	return c, nil
}
