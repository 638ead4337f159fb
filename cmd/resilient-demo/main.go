// Command resilient-demo is a chaos lab: it runs the same load through
// several HTTP clients, side by side, against a misbehaving upstream, and
// shows what each one did to the upstream and to its callers.
//
//	go run ./cmd/resilient-demo                     # about 25s, no network needed
//	go run ./cmd/resilient-demo -report report.html -json figures.json
//	go run ./cmd/resilient-demo -json - | jq .fidelity
//	go run ./cmd/resilient-demo -check              # exit 1 if a target is not met, 3 if the run is invalid
//	go run ./cmd/resilient-demo -url http://localhost:8080 -duration 1m
//	go run ./cmd/resilient-demo -metrics :9090      # Prometheus metrics while it runs
//	go run ./cmd/resilient-demo -budget ratio -brownout 0.3
//
// The clients: a plain http.Client; the retry loop people write by hand
// (4 attempts 100ms apart, no jitter, no Retry-After, no breaker, no
// budget); and the library's two, as a user gets them: httpx is
// httpx.NewClient() and tuned httpx.Recommended(), the README's
// recommended production setup. To compare, -budget puts another retry
// budget in httpx's place, and -hedge, -limit and -open add to tuned; the
// output then says the column is no longer what it stands for.
//
// By default each client gets its own instance of the built-in upstream
// (package chaos), all started together with the same seed: the clients
// run at the same time, meet the same fault schedule, and each upstream
// counts exactly what one client did to it.
//
// The upstream runs a timeline of phases: healthy; brownout (503s, latency
// spikes, slow headers, connection resets mid-body); throttling (429 with
// Retry-After in seconds and as HTTP-dates); a full outage (connections
// refused); recovery. Every caller sends a logical request every
// callers/rate seconds (GETs, POSTs with an Idempotency-Key, and a few
// POSTs without one), each with its own deadline (-timeout).
//
// At the end it prints, per client and phase: the success rate, the
// p50/p99/max latency, the requests sent per logical request
// (amplification), connections opened, requests that came back sooner than
// a Retry-After allowed, duplicate executions of POSTs, breaker
// transitions; then a summary per client with what each figure means, and
// the library's targets, each met or not with its figure. -report writes
// an HTML page (a verdict, the summary, one chart per metric with every
// client overlaid on the phases, the breaker's states), -json the figures
// (-json - writes them alone to standard output; the tables then go to
// standard error).
//
// The lab checks itself. It runs in one process with its upstreams, and a
// busy machine can make it fall behind its schedule: requests sent late,
// in bursts, into the wrong phase, with the scheduler's delays in every
// latency. It measures how late each request started, how late the
// scheduler runs a goroutine whose timer is due, and how many requests
// each client started per phase against the plan; beyond the tolerance
// (fidelity.go) the run is invalid: a warning opens and closes the output
// and the report, and no target is judged on its figures.
//
// With -url the clients share a real upstream instead: what is counted is
// counted on the client side, the figures cover the run as a whole, and
// there are no targets (they are stated for the built-in scenario);
// -phases and -outage are refused.
//
// Clients and upstream speak HTTP/1.1 by default, where a request
// cancelled in flight (a hedge that lost, a timeout) closes its connection;
// -http2 runs the same scenario over HTTP/2 (prior knowledge for http://
// URLs), where it resets only its stream.
//
// Exit status: 0 done; 1 failed, or with -check a target not met; 2 bad
// flags or an output that cannot be written (checked before the run);
// 3 with -check, an invalid run; 130 interrupted (the figures of the part
// that ran are still written).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"time"

	"github.com/resilient-go/resilient"
	"github.com/resilient-go/resilient/chaos"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, isTerminal(os.Stderr))
	stop()
	os.Exit(code)
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Exit statuses.
const (
	exitOK          = 0
	exitFailed      = 1 // the run failed; with -check, a target not met
	exitUsage       = 2 // bad flags, or an output that cannot be written
	exitInvalid     = 3 // with -check: the lab fell behind its schedule
	exitInterrupted = 130
)

// run is the whole command: it returns the exit status (see the Exit
// statuses; an interrupted run still writes the figures of the part that
// ran).
//
// With -json -, standard output carries the JSON alone; the tables go to
// stderr, with the progress line.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, tty bool) int {
	cfg, err := parseFlags(args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case err != nil:
		fmt.Fprintf(stderr, "resilient-demo: %v\n", err)
		return exitUsage
	}
	return execute(ctx, cfg, stdout, stderr, tty)
}

// execute runs the scenario cfg describes and writes its outputs; it
// returns the exit status.
func execute(ctx context.Context, cfg *config, stdout, stderr io.Writer, tty bool) int {
	var err error
	// Outputs are opened before the run, so that a path that cannot be
	// written fails now rather than after it.
	var report, figures *output
	if cfg.report != "" {
		if report, err = createOutput(cfg.report); err != nil {
			fmt.Fprintf(stderr, "resilient-demo: -report: %v\n", err)
			return exitUsage
		}
		defer report.discard()
	}
	if cfg.jsonPath != "" && cfg.jsonPath != "-" {
		if figures, err = createOutput(cfg.jsonPath); err != nil {
			fmt.Fprintf(stderr, "resilient-demo: -json: %v\n", err)
			return exitUsage
		}
		defer figures.discard()
	}
	tables := stdout
	if cfg.jsonPath == "-" {
		tables = stderr
	}
	if cfg.url != "" && cfg.http2 {
		if err := probeHTTP2(ctx, cfg.url); err != nil {
			fmt.Fprintf(stderr, "resilient-demo: -http2: %v\n", err)
			return exitUsage
		}
	}
	var live io.Writer = stderr
	if cfg.quiet {
		live = nil
	}
	if cfg.metricsAddr != "" {
		stop, addr, err := serveMetrics(cfg)
		if err != nil {
			fmt.Fprintf(stderr, "resilient-demo: -metrics: %v\n", err)
			return exitUsage
		}
		defer stop()
		fmt.Fprintf(stderr, "metrics: http://%s/metrics\n", addr)
	}
	figs, err := scenario(ctx, cfg, live, tty)
	if err != nil {
		fmt.Fprintf(stderr, "resilient-demo: %v\n", err)
		return exitFailed
	}
	writeTables(tables, cfg, figs)
	if report != nil {
		if err := report.commit(func(w io.Writer) error { return writeHTML(w, figs) }); err != nil {
			fmt.Fprintf(stderr, "resilient-demo: -report: %v\n", err)
			return exitFailed
		}
		fmt.Fprintf(tables, "\nHTML report: %s\n", cfg.report)
	}
	if cfg.jsonPath != "" {
		write := func(w io.Writer) error {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(figs)
		}
		if figures == nil {
			err = write(stdout)
		} else {
			err = figures.commit(write)
		}
		if err != nil {
			fmt.Fprintf(stderr, "resilient-demo: -json: %v\n", err)
			return exitFailed
		}
	}
	switch {
	case figs.Interrupts:
		return exitInterrupted
	case !cfg.check:
		return exitOK
	case !figs.Fidelity.Valid:
		fmt.Fprintln(stderr, "resilient-demo: -check: the run is invalid: the lab fell behind its schedule")
		return exitInvalid
	}
	code := exitOK
	for _, t := range figs.Targets {
		if t.Status == statusNotMet {
			fmt.Fprintf(stderr, "resilient-demo: -check: %s: target not met: %s\n", t.Client, t.Want)
			code = exitFailed
		}
	}
	return code
}

// serveMetrics serves cfg.metrics at /metrics on cfg.metricsAddr until stop
// is called.
func serveMetrics(cfg *config) (stop func(), addr string, err error) {
	cfg.metrics = resilient.NewTextMetrics()
	ln, err := net.Listen("tcp", cfg.metricsAddr)
	if err != nil {
		return nil, "", err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", resilient.TextMetricsContentType)
		_, _ = cfg.metrics.WriteTo(w)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	return func() { _ = srv.Close(); <-done }, ln.Addr().String(), nil
}

// scenario runs every client's load at the same time and returns the
// figures, with the lab's fidelity and the targets judged. live, if not
// nil, gets the progress line.
func scenario(ctx context.Context, cfg *config, live io.Writer, tty bool) (*Figures, error) {
	figs := &Figures{
		Seed: cfg.seed, Callers: cfg.callers, Rate: cfg.rate, TimeoutMs: ms(cfg.timeout),
		Timeline: cfg.spans.String(), Upstream: "built-in", Protocol: "HTTP/1.1",
		Setup: Setup{Budget: cfg.budget, OpenMs: ms(recommendedOpen), HedgeMs: ms(cfg.hedgeWait), Limit: cfg.limit,
			Recommended: cfg.recommended()},
	}
	if cfg.openFor > 0 {
		figs.Setup.OpenMs = ms(cfg.openFor)
	}
	if cfg.http2 {
		figs.Protocol = "HTTP/2"
	}
	n := len(cfg.clients)
	ups := make([]*chaos.Upstream, n)
	recs := make([]*recorder, n)
	bases := make([]string, n)
	for i := range recs {
		recs[i] = newRecorder(time.Time{}) // started below
	}
	if cfg.url == "" {
		figs.Outage = cfg.outage.String()
		figs.Brownout = cfg.brownout
		cc := chaos.DefaultConfig(cfg.seed)
		cc.Timeline = cfg.timeline
		cc.Outage = cfg.outage
		cc.Profiles[chaos.Brownout].Unavailable = cfg.brownout
		cc.HTTP2 = cfg.http2
		for i := range ups {
			up, err := chaos.New(cc)
			if err != nil {
				return nil, err
			}
			ups[i] = up
		}
		defer func() {
			for _, up := range ups {
				up.Close()
			}
		}()
	}
	// The clients are built before the upstreams start, so that the time
	// they take does not count as the load's lag.
	dos := make([]doFunc, n)
	for i, name := range cfg.clients {
		base, tr := newBase(recs[i], cfg.http2)
		defer tr.CloseIdleConnections()
		if cfg.network != nil {
			base.base = cfg.network(ups[i])
		}
		do, err := kindOf(name).build(cfg, base, recs[i])
		if err != nil {
			return nil, fmt.Errorf("client %s: %w", name, err)
		}
		dos[i] = do
	}
	if cfg.url == "" {
		// Started together: each client's clock is its upstream's. In
		// memory (tests), an upstream's clock started when it was built.
		for i, up := range ups {
			bases[i] = "http://upstream.test"
			if cfg.network == nil {
				if err := up.Start(); err != nil {
					return nil, fmt.Errorf("built-in upstream: %w", err)
				}
				bases[i] = up.URL()
			}
			recs[i].start = up.Started()
		}
	} else {
		figs.Upstream = cfg.url
		start := time.Now()
		for i := range recs {
			recs[i].start = start
			bases[i] = cfg.url
		}
	}

	start := recs[0].start
	probe := newSchedProbe()
	pctx, stopProbes := context.WithCancel(ctx)
	var pwg sync.WaitGroup
	pwg.Go(func() { probe.run(pctx, start) })
	if live != nil {
		pwg.Go(func() { progress(pctx, live, tty, cfg.spans, cfg.clients, recs, probe, start) })
	}
	// An interrupted run is judged on what it was to do until then.
	cancelled := make(chan time.Duration, 1)
	stopCutoff := context.AfterFunc(ctx, func() { cancelled <- time.Since(start) })
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { runLoad(ctx, cfg, bases[i], dos[i], recs[i]) })
	}
	wg.Wait()
	cutoff := cfg.duration
	if !stopCutoff() {
		cutoff = min(cutoff, <-cancelled)
	}
	stopProbes()
	pwg.Wait()
	figs.Interrupts = ctx.Err() != nil

	plan := planned(cfg, cfg.spans, cutoff)
	for i, name := range cfg.clients {
		var st *chaos.Stats
		if ups[i] != nil {
			ups[i].Close()
			s := ups[i].Stats()
			st = &s
		}
		c := summarize(kindOf(name), cfg.spans, recs[i], st, plan)
		c.Description = kindOf(name).desc(cfg)
		figs.Clients = append(figs.Clients, c)
	}
	judgeFidelity(figs, probe.delays())
	judgeTargets(figs)
	return figs, nil
}
