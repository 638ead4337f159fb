package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/resilient-go/resilient"
	resilientredis "github.com/resilient-go/resilient/contrib/redis"
)

// replicaEnv carries a replica's configuration, as JSON, from the
// experiment to the replica process it starts (itself, again).
const replicaEnv = "FLEET_REPLICA"

// replicaConfig is what one replica does.
type replicaConfig struct {
	ID       int
	Shared   bool   // the breaker is shared through Redis; else local
	Redis    string // address
	Upstream string // URL
	Rate     float64
	Start    time.Time // when to send the first call
	Duration time.Duration
	Breaker  breakerConfig
}

// breakerConfig is the breaker every replica builds, shared or local.
type breakerConfig struct {
	MinCalls int
	Window   time.Duration
	Open     time.Duration
	Probes   int
}

// The outcome of a call, as a replica records it.
const (
	served  = 'o' // the upstream answered 200
	failed  = 'f' // the upstream failed it
	refused = 'r' // the breaker refused it
)

// maxInFlight bounds a replica's calls in flight: a call that would go
// beyond is not made, and counted.
const maxInFlight = 256

// runReplica is a replica process: it calls the upstream at its rate from
// cfg.Start for cfg.Duration through an executor with the breaker, and
// writes one line per call to out ("<unix ns> <outcome>"), then a last one:
// "end <goroutines left> <degraded> <recovered> <skipped>".
func runReplica(cfg replicaConfig, out io.Writer, logs io.Writer) error {
	baseline := runtime.NumGoroutine()
	logger := slog.New(slog.NewTextHandler(logs, nil)).With("replica", cfg.ID)
	// A replica is a program: its main may route go-redis's lines.
	goredis.SetLogger(resilientredis.NewLogger(logger))

	var degraded, recovered atomic.Int64
	var policy resilient.Option
	var closeBreaker func()
	var rdb *goredis.Client
	if cfg.Shared {
		rdb = goredis.NewClient(&goredis.Options{Addr: cfg.Redis, ContextTimeoutEnabled: true})
		br, err := resilientredis.NewBreaker(rdb, "upstream",
			resilientredis.WithMinCalls(cfg.Breaker.MinCalls),
			resilientredis.WithWindow(cfg.Breaker.Window, 10),
			resilientredis.WithOpenDuration(cfg.Breaker.Open),
			resilientredis.WithHalfOpenProbes(cfg.Breaker.Probes),
			resilientredis.WithEventHook(func(ev resilientredis.Event) {
				if ev.Kind == resilientredis.EventDegraded {
					degraded.Add(1)
				} else {
					recovered.Add(1)
				}
				logger.Info("redis "+ev.Kind.String(), "op", ev.Op, "err", ev.Err)
			}))
		if err != nil {
			return err
		}
		policy = resilient.WithPolicy(br)
		closeBreaker = func() { _ = br.Close() }
	} else {
		br, err := resilient.NewBreaker(resilient.WithTimeWindow(cfg.Breaker.Window, 10),
			resilient.WithMinCalls(cfg.Breaker.MinCalls), resilient.WithOpenDuration(cfg.Breaker.Open),
			resilient.WithHalfOpenProbes(cfg.Breaker.Probes))
		if err != nil {
			return err
		}
		policy = resilient.WithBreaker(br)
		closeBreaker = func() {}
	}
	ex, err := resilient.New(resilient.WithAttempts(1), policy)
	if err != nil {
		return err
	}
	transport := &http.Transport{MaxIdleConnsPerHost: maxInFlight}
	client := &http.Client{Transport: transport, Timeout: 5 * time.Second}
	call := func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.Upstream, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("upstream: %s", resp.Status)
		}
		return nil
	}

	w := bufio.NewWriter(out)
	var mu sync.Mutex // guards w
	record := func(at time.Time, o byte) {
		mu.Lock()
		fmt.Fprintf(w, "%d %c\n", at.UnixNano(), o)
		mu.Unlock()
	}
	time.Sleep(time.Until(cfg.Start))
	end := cfg.Start.Add(cfg.Duration)
	tick := time.NewTicker(time.Duration(float64(time.Second) / cfg.Rate))
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxInFlight)
	skipped := 0
	for now := range tick.C {
		if now.After(end) {
			break
		}
		select {
		case sem <- struct{}{}:
		default:
			skipped++
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			err := ex.Run(context.Background(), call)
			switch {
			case err == nil:
				record(time.Now(), served)
			case errors.Is(err, resilient.ErrOpen):
				record(time.Now(), refused)
			default:
				record(time.Now(), failed)
			}
		})
	}
	tick.Stop()
	wg.Wait()
	closeBreaker()
	if rdb != nil {
		_ = rdb.Close()
	}
	transport.CloseIdleConnections()
	// What is left after everything is closed: a leak, or go-redis's
	// dial probe, which ends within a second of its client's Close.
	left := runtime.NumGoroutine() - baseline
	for deadline := time.Now().Add(2 * time.Second); left > 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		left = runtime.NumGoroutine() - baseline
	}
	mu.Lock()
	defer mu.Unlock()
	fmt.Fprintf(w, "end %d %d %d %d\n", max(left, 0), degraded.Load(), recovered.Load(), skipped)
	return w.Flush()
}

// replicaFromEnv reads a replica's configuration, if this process is one.
func replicaFromEnv() (replicaConfig, bool, error) {
	v := os.Getenv(replicaEnv)
	if v == "" {
		return replicaConfig{}, false, nil
	}
	var cfg replicaConfig
	if err := json.Unmarshal([]byte(v), &cfg); err != nil {
		return cfg, true, fmt.Errorf("%s: %w", replicaEnv, err)
	}
	return cfg, true, nil
}
