package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// experiment holds what the trials share: the redis-server, the upstream,
// and the replicas' logs.
type experiment struct {
	o        options
	self     string
	redis    *redisServer
	upstream *upstream
	logs     io.Writer
	logFile  *os.File
}

func newExperiment(o options, self string, stderr io.Writer) (*experiment, error) {
	e := &experiment{o: o, self: self, logs: io.Discard}
	if o.replicaLogs != "" {
		f, err := os.Create(o.replicaLogs)
		if err != nil {
			return nil, err
		}
		e.logFile, e.logs = f, f
	}
	var err error
	if e.redis, err = startRedis(o.redisServer); err != nil {
		e.close()
		return nil, fmt.Errorf("%w (install Debian's redis-server package, or give -redis-server)", err)
	}
	if e.upstream, err = startUpstream(); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (e *experiment) close() {
	if e.upstream != nil {
		e.upstream.close()
	}
	if e.redis != nil {
		e.redis.stop()
	}
	if e.logFile != nil {
		_ = e.logFile.Close()
	}
}

// run runs both trials, local breakers first.
func (e *experiment) run(ctx context.Context) (local, shared figures, err error) {
	l, err := e.trial(ctx, false)
	if err != nil {
		return local, shared, err
	}
	s, err := e.trial(ctx, true)
	if err != nil {
		return local, shared, err
	}
	return analyze(l), analyze(s), nil
}

// record is one call as a replica recorded it.
type record struct {
	at      time.Time
	outcome byte
}

// replicaEnd is a replica's last line.
type replicaEnd struct {
	goroutinesLeft, degraded, recovered, skipped int
}

// trialResult is what one trial recorded, with its schedule.
type trialResult struct {
	o      options
	shared bool
	start  time.Time
	// The first outage, and (shared trial) the second one, the slow
	// period after it, and the Redis stall.
	outageStart, outageEnd   time.Time
	outage2Start, outage2End time.Time
	slowEnd                  time.Time
	stallStart, stallEnd     time.Time
	inFlightAtStall          int
	end                      time.Time
	records                  [][]record // per replica
	ends                     []replicaEnd
	arrivals                 []arrival
}

func (e *experiment) scaled(seconds float64) time.Duration {
	return time.Duration(seconds * e.o.scale * float64(time.Second))
}

// trial runs the schedule once, with breakers shared through Redis or
// local to each replica.
func (e *experiment) trial(ctx context.Context, shared bool) (*trialResult, error) {
	o := e.o
	r := &trialResult{o: o, shared: shared}
	// Replicas need a moment to start; they all begin at once.
	r.start = time.Now().Add(1500 * time.Millisecond)
	r.outageStart = r.start.Add(e.scaled(1))
	r.outageEnd = r.outageStart.Add(e.scaled(5))
	r.end = r.outageEnd.Add(e.scaled(3))
	if shared {
		r.outage2Start = r.outageEnd.Add(e.scaled(2))
		r.outage2End = r.outage2Start.Add(e.scaled(3))
		// Slow long enough for the half-open fleet's probes (an open
		// duration after the trip) and the stall, then fast again.
		r.slowEnd = r.outage2End.Add(o.open + o.stall + e.scaled(1))
		r.end = r.slowEnd.Add(e.scaled(2))
	}
	var stallOnce sync.Once
	var stalled sync.WaitGroup
	onSlow := func() {}
	if shared && o.stall > 0 {
		onSlow = func() {
			stallOnce.Do(func() {
				// The first probe of the half-open fleet is at the upstream:
				// Redis stalls while it is in flight.
				r.inFlightAtStall = int(e.upstream.inFlight.Load())
				e.redis.freeze()
				r.stallStart = time.Now()
				stalled.Go(func() {
					time.Sleep(o.stall)
					e.redis.thaw()
					r.stallEnd = time.Now()
				})
			})
		}
	}
	e.upstream.set(healthy)
	e.upstream.reset(onSlow)

	procs := make([]*exec.Cmd, o.replicas)
	r.records = make([][]record, o.replicas)
	r.ends = make([]replicaEnd, o.replicas)
	readErrs := make([]error, o.replicas)
	var readers sync.WaitGroup
	for i := range procs {
		rate := o.lightRate
		if i < o.heavy {
			rate = o.heavyRate
		}
		cfg, err := json.Marshal(replicaConfig{
			ID: i, Shared: shared, Redis: e.redis.addr, Upstream: e.upstream.URL(), Rate: rate,
			Start: r.start, Duration: r.end.Sub(r.start),
			Breaker: breakerConfig{MinCalls: o.minCalls, Window: 10 * time.Second, Open: o.open, Probes: o.probes},
		})
		if err != nil {
			return nil, err
		}
		cmd := exec.CommandContext(ctx, e.self)
		cmd.Env = append(os.Environ(), replicaEnv+"="+string(cfg))
		cmd.Stderr = e.logs
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("starting replica %d: %w", i, err)
		}
		procs[i] = cmd
		readers.Go(func() { r.records[i], r.ends[i], readErrs[i] = readReplica(out) })
	}

	// The schedule.
	type step struct {
		at time.Time
		m  mode
	}
	steps := []step{{r.outageStart, down}, {r.outageEnd, healthy}}
	if shared {
		steps = append(steps, step{r.outage2Start, down}, step{r.outage2End, slow}, step{r.slowEnd, healthy})
	}
	for _, s := range steps {
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(s.at)):
			e.upstream.set(s.m)
		}
	}

	readers.Wait()
	var failed []string
	for i, cmd := range procs {
		if err := cmd.Wait(); err != nil {
			failed = append(failed, fmt.Sprintf("replica %d: %v", i, err))
		} else if readErrs[i] != nil {
			failed = append(failed, fmt.Sprintf("replica %d: %v", i, readErrs[i]))
		}
	}
	stalled.Wait()
	r.arrivals = e.upstream.seen()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(failed) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(failed, "; "))
	}
	return r, nil
}

// readReplica reads a replica's records and its last line.
func readReplica(out io.Reader) ([]record, replicaEnd, error) {
	var recs []record
	var end replicaEnd
	ended := false
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 5 && f[0] == "end" {
			n := make([]int, 4)
			for i := range n {
				v, err := strconv.Atoi(f[i+1])
				if err != nil {
					return recs, end, fmt.Errorf("bad last line %q", sc.Text())
				}
				n[i] = v
			}
			end, ended = replicaEnd{n[0], n[1], n[2], n[3]}, true
			continue
		}
		if len(f) != 2 || len(f[1]) != 1 {
			return recs, end, fmt.Errorf("bad line %q", sc.Text())
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return recs, end, fmt.Errorf("bad line %q", sc.Text())
		}
		recs = append(recs, record{at: time.Unix(0, ns), outcome: f[1][0]})
	}
	if err := sc.Err(); err != nil {
		return recs, end, err
	}
	if !ended {
		return recs, end, fmt.Errorf("no last line")
	}
	return recs, end, nil
}
