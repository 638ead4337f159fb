// Command resilient-demo is a chaos lab: it runs the same load through
// several HTTP clients, side by side, against a misbehaving upstream, and
// shows what each one did to the upstream and to its callers.
//
//	go run ./cmd/resilient-demo                     # 23s, no network needed
//	go run ./cmd/resilient-demo -report report.html -json figures.json
//	go run ./cmd/resilient-demo -url http://localhost:8080 -duration 1m
//	go run ./cmd/resilient-demo -metrics :9090      # Prometheus metrics while it runs
//
// The clients: a plain http.Client; the retry loop people write by hand
// (4 attempts 100ms apart, no jitter, no Retry-After, no breaker, no
// budget); and the library's clients (see -h for the list).
//
// By default each client gets its own instance of the built-in upstream
// (package chaos), all started together with the same seed: the clients
// run at the same time, meet the same fault schedule, and each upstream
// counts exactly what one client did to it. With -url the clients share
// the real upstream, and what is counted is counted on the client side.
//
// The upstream runs a timeline of phases: healthy; brownout (503s, latency
// spikes, slow headers, connection resets mid-body); throttling (429 with
// Retry-After in seconds and as HTTP-dates); a full outage (connections
// refused); recovery. Every caller sends a logical request every
// callers/rate seconds (GETs, POSTs with an Idempotency-Key, and a few
// POSTs without one), each with its own deadline (-timeout).
//
// At the end it prints, per client and phase: the success rate, the
// p50/p99/max latency, the requests the upstream received per logical
// request (amplification), requests that came back sooner than a
// Retry-After allowed, duplicate executions of POSTs, breaker transitions;
// then a summary per client. -report writes the same as an HTML page with
// a chart per client, -json the raw figures. Bad flags exit with status 2.
//
// Clients and upstream speak HTTP/1.1 by default, where a request
// cancelled in flight (a hedge that lost, a timeout) closes its connection;
// -http2 runs the same scenario over unencrypted HTTP/2, where it resets
// only its stream.
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

// run is the whole command: it returns the exit status (0 done, 1 failed,
// 2 bad flags, 130 interrupted: the figures of the part that ran are still
// written).
func run(ctx context.Context, args []string, stdout, stderr io.Writer, tty bool) int {
	cfg, err := parseFlags(args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "resilient-demo: %v\n", err)
		return 2
	}
	var live io.Writer = stderr
	if cfg.quiet {
		live = nil
	}
	if cfg.metricsAddr != "" {
		stop, addr, err := serveMetrics(cfg)
		if err != nil {
			fmt.Fprintf(stderr, "resilient-demo: -metrics: %v\n", err)
			return 2
		}
		defer stop()
		fmt.Fprintf(stderr, "metrics: http://%s/metrics\n", addr)
	}
	figs, err := scenario(ctx, cfg, live, tty)
	if err != nil {
		fmt.Fprintf(stderr, "resilient-demo: %v\n", err)
		return 1
	}
	writeTables(stdout, cfg, figs)
	if cfg.report != "" {
		if err := writeFile(cfg.report, func(w io.Writer) error { return writeHTML(w, figs) }); err != nil {
			fmt.Fprintf(stderr, "resilient-demo: -report: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "\nHTML report: %s\n", cfg.report)
	}
	if cfg.jsonPath != "" {
		write := func(w io.Writer) error {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(figs)
		}
		if cfg.jsonPath == "-" {
			err = write(stdout)
		} else {
			err = writeFile(cfg.jsonPath, write)
		}
		if err != nil {
			fmt.Fprintf(stderr, "resilient-demo: -json: %v\n", err)
			return 1
		}
	}
	if figs.Interrupts {
		return 130
	}
	return 0
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

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// scenario runs every client's load at the same time and returns the
// figures. live, if not nil, gets the progress line.
func scenario(ctx context.Context, cfg *config, live io.Writer, tty bool) (*Figures, error) {
	figs := &Figures{
		Seed: cfg.seed, Callers: cfg.callers, Rate: cfg.rate, TimeoutMs: ms(cfg.timeout),
		Timeline: cfg.timeline.String(), Upstream: "built-in", Protocol: "HTTP/1.1",
	}
	if cfg.http2 {
		figs.Protocol = "HTTP/2"
	}
	n := len(cfg.clients)
	ups := make([]*chaos.Upstream, n)
	recs := make([]*recorder, n)
	bases := make([]string, n)
	if cfg.url == "" {
		figs.Outage = cfg.outage.String()
		cc := chaos.DefaultConfig(cfg.seed)
		cc.Timeline = cfg.timeline
		cc.Outage = cfg.outage
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
		// Started together: each client's clock is its upstream's.
		for i, up := range ups {
			if cfg.network != nil {
				recs[i] = newRecorder(up.Started())
				bases[i] = "http://upstream.test"
				continue
			}
			if err := up.Start(); err != nil {
				return nil, fmt.Errorf("built-in upstream: %w", err)
			}
			recs[i] = newRecorder(up.Started())
			bases[i] = up.URL()
		}
	} else {
		figs.Upstream = cfg.url
		start := time.Now()
		for i := range recs {
			recs[i] = newRecorder(start)
			bases[i] = cfg.url
		}
	}

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

	pctx, stopProgress := context.WithCancel(ctx)
	var pwg sync.WaitGroup
	if live != nil {
		pwg.Go(func() { progress(pctx, live, tty, cfg, cfg.clients, recs, recs[0].start) })
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { runLoad(ctx, cfg, bases[i], dos[i], recs[i]) })
	}
	wg.Wait()
	stopProgress()
	pwg.Wait()
	figs.Interrupts = ctx.Err() != nil

	for i, name := range cfg.clients {
		var st *chaos.Stats
		if ups[i] != nil {
			ups[i].Close()
			s := ups[i].Stats()
			st = &s
		}
		figs.Clients = append(figs.Clients, summarize(name, kindOf(name).desc, cfg.timeline, recs[i], st))
	}
	return figs, nil
}
