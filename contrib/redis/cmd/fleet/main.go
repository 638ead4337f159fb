// Command fleet is an experiment that shows what a circuit breaker shared
// through Redis (package contrib/redis) does for a fleet of replicas, next
// to a breaker local to each replica: it starts replica processes of
// itself, a redis-server and a flaky HTTP upstream on loopback, runs the
// same schedule once with local breakers and once with the shared one, and
// prints what the fleet sent into an outage, how many requests reached the
// struggling upstream at once, how soon each replica stopped calling it,
// and how the shared fleet gets over a Redis stall with probes in flight.
//
//	go run ./cmd/fleet               # about 30s; needs redis-server on PATH
//	go run ./cmd/fleet -replicas 8 -heavy-rate 300
//
// Replicas: -heavy of them call the upstream -heavy-rate times a second,
// the others -light-rate times. Each call is one attempt through an
// executor with the breaker (no retries), so every request the upstream
// sees is one a breaker let through.
//
// Schedule (seconds from each trial's start; -scale multiplies them, not
// the open duration nor the stall): healthy for 1; an outage for 5 (503s
// after 100ms); healthy again, for 3 in the local trial. The shared trial
// has 2 instead, then a second outage of 3, after which the upstream
// answers slowly (600ms); when the first request reaches it (a probe of the
// half-open fleet), the experiment freezes Redis (SIGSTOP) for -stall with
// that probe in flight, then thaws it. The upstream is fast again an open
// duration, the stall and 1 after the second outage; the trial ends 2
// later.
//
// The README next to this file explains the figures and gives a run's.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"
)

func main() {
	if cfg, ok, err := replicaFromEnv(); ok {
		if err == nil {
			err = runReplica(cfg, os.Stdout, os.Stderr)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "fleet replica:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the experiment's flags.
type options struct {
	replicas, heavy          int
	heavyRate, lightRate     float64
	open, stall              time.Duration
	probes, minCalls         int
	scale                    float64
	redisServer, replicaLogs string
}

func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.replicas, "replicas", 6, "replica processes")
	fs.IntVar(&o.heavy, "heavy", 2, "replicas at -heavy-rate; the others call at -light-rate")
	fs.Float64Var(&o.heavyRate, "heavy-rate", 200, "calls per second of a heavy replica")
	fs.Float64Var(&o.lightRate, "light-rate", 5, "calls per second of a light replica")
	fs.DurationVar(&o.open, "open", 2*time.Second, "the breakers' open duration")
	fs.IntVar(&o.probes, "probes", 2, "half-open probes (fleet-wide when shared, per replica when local)")
	fs.IntVar(&o.minCalls, "min-calls", 20, "calls in the window before it is judged (fleet-wide when shared)")
	fs.DurationVar(&o.stall, "stall", 2*time.Second, "how long Redis is frozen in the shared trial")
	fs.Float64Var(&o.scale, "scale", 1, "multiplies the schedule's durations")
	fs.StringVar(&o.redisServer, "redis-server", "redis-server", "the redis-server to start")
	fs.StringVar(&o.replicaLogs, "replica-logs", "", "a file for the replicas' logs (default: discarded)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	case o.replicas < 1 || o.heavy < 0 || o.heavy > o.replicas:
		return o, fmt.Errorf("-replicas must be >= 1 and -heavy in [0, -replicas]")
	case !(o.heavyRate > 0) || !(o.lightRate > 0) || o.heavyRate > 10000 || o.lightRate > 10000:
		return o, fmt.Errorf("rates must be in (0, 10000]")
	case o.open < 100*time.Millisecond || o.stall < 0:
		return o, fmt.Errorf("-open must be >= 100ms and -stall >= 0")
	case o.probes < 1 || o.minCalls < 1:
		return o, fmt.Errorf("-probes and -min-calls must be >= 1")
	case !(o.scale >= 0.25 && o.scale <= 10):
		return o, fmt.Errorf("-scale must be in [0.25, 10]")
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if err != nil {
		if err != flag.ErrHelp {
			fmt.Fprintln(stderr, "fleet:", err)
		}
		return 2
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "fleet:", err)
		return 1
	}
	e, err := newExperiment(o, self, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "fleet:", err)
		return 1
	}
	defer e.close()
	fmt.Fprintf(stdout, "fleet: %d replicas (%d at %g calls/s, %d at %g), open %v, %d probes, %d min calls; redis-server %s on %s\n",
		o.replicas, o.heavy, o.heavyRate, o.replicas-o.heavy, o.lightRate, o.open, o.probes, o.minCalls, e.redis.version, e.redis.addr)
	local, shared, err := e.run(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "fleet:", err)
		return 1
	}
	report(stdout, o, local, shared)
	return 0
}
