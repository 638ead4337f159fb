package redis

import (
	"context"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/resilient-go/resilient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// within runs fn, and fails the test if it has not returned within limit;
// it returns how long fn took.
func within(t *testing.T, limit time.Duration, what string, fn func()) time.Duration {
	t.Helper()
	done := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		fn()
		done <- time.Since(start)
	}()
	select {
	case d := <-done:
		return d
	case <-time.After(limit):
		t.Fatalf("%s did not return within %v", what, limit)
		return 0
	}
}

// Every call of the package that reaches Redis returns within its timeout
// whatever the server does: frozen (SIGSTOP) before the call, or holding
// the reply of a request it has received (mid-call). A call that waited
// for a reply without a bound would hang here, and fail loudly.
func TestEveryRedisCallIsBoundedWhateverTheServerDoes(t *testing.T) {
	const timeout = 100 * time.Millisecond
	// Generous for a loaded machine; a call with no bound takes forever.
	const bound = timeout + 2*time.Second
	opts := func(extra ...Option) []Option {
		return append([]Option{WithTimeout(timeout), WithSyncInterval(30 * time.Second), WithMinCalls(1),
			WithOpenDuration(time.Millisecond), WithWindow(10*time.Second, 10), WithKeyTTL(time.Minute)}, extra...)
	}
	// halfOpened builds a breaker whose fleet is half-open (probes are
	// then admitted by a Redis call) while Redis answers.
	halfOpened := func(t *testing.T, rdb goredis.UniversalClient) *Breaker {
		b := newTestBreaker(t, rdb, "half-open", opts()...)
		halfOpen(t, b)
		return b
	}
	ops := []struct {
		name string
		// setup runs while Redis answers; the returned op runs once it
		// does not.
		setup func(t *testing.T, rdb goredis.UniversalClient) func()
	}{
		{"NewBreaker", func(t *testing.T, rdb goredis.UniversalClient) func() {
			return func() {
				b, err := NewBreaker(rdb, "new", opts()...)
				if assert.NoError(t, err) {
					t.Cleanup(func() { _ = b.Close() })
				}
			}
		}},
		{"sync", func(t *testing.T, rdb goredis.UniversalClient) func() {
			b := newTestBreaker(t, rdb, "sync", opts()...)
			return func() { _ = b.sync(context.Background()) }
		}},
		{"probe admission", func(t *testing.T, rdb goredis.UniversalClient) func() {
			b := halfOpened(t, rdb)
			return func() {
				p, err := b.Admit(context.Background(), 1)
				if err == nil {
					b.Done(p, resilient.Report{Attempt: 1, Outcome: resilient.Ignore})
				}
			}
		}},
		{"probe report", func(t *testing.T, rdb goredis.UniversalClient) func() {
			b := halfOpened(t, rdb)
			p, err := b.Admit(context.Background(), 1)
			require.NoError(t, err)
			require.NotZero(t, p.Token&tokProbe, "a fleet-wide probe")
			return func() { b.Done(p, resilient.Report{Attempt: 1, Outcome: resilient.Success}) }
		}},
		{"ForceOpen", func(t *testing.T, rdb goredis.UniversalClient) func() {
			b := newTestBreaker(t, rdb, "control", opts()...)
			return func() { _ = b.ForceOpen(context.Background()) }
		}},
		{"Breaker.Close", func(t *testing.T, rdb goredis.UniversalClient) func() {
			b := newTestBreaker(t, rdb, "close", opts()...)
			p, err := b.Admit(context.Background(), 1)
			require.NoError(t, err)
			b.Done(p, resilient.Report{Attempt: 1, Outcome: resilient.Fail, Err: errUpstream})
			return func() { _ = b.Close() }
		}},
		{"AllowRetry", func(t *testing.T, rdb goredis.UniversalClient) func() {
			b := newTestBudget(t, rdb, "retry", WithTimeout(timeout))
			return func() { _ = b.AllowRetry(2) }
		}},
		{"Available", func(t *testing.T, rdb goredis.UniversalClient) func() {
			b := newTestBudget(t, rdb, "available", WithTimeout(timeout))
			return func() { _, _ = b.Available(context.Background()) }
		}},
		{"Budget.Close", func(t *testing.T, rdb goredis.UniversalClient) func() {
			b := newTestBudget(t, rdb, "bclose", WithTimeout(timeout))
			b.Done(resilient.Permit{}, resilient.Report{Attempt: 1, Outcome: resilient.Success})
			return func() { _ = b.Close() }
		}},
		{"Store.Load", func(t *testing.T, rdb goredis.UniversalClient) func() {
			s, err := NewStore(rdb, WithTimeout(timeout))
			require.NoError(t, err)
			return func() { _, _, _ = s.Load(context.Background(), "x") }
		}},
		{"Store.Save", func(t *testing.T, rdb goredis.UniversalClient) func() {
			s, err := NewStore(rdb, WithTimeout(timeout))
			require.NoError(t, err)
			return func() { _ = s.Save(context.Background(), "x", resilient.Snapshot{Version: resilient.SnapshotVersion}) }
		}},
	}
	faults := []struct {
		name string
		// client returns the client the components use, and the fault to
		// make.
		client func(t *testing.T, srv *redisServer) (goredis.UniversalClient, func())
	}{
		{"server frozen", func(t *testing.T, srv *redisServer) (goredis.UniversalClient, func()) {
			return srv.Client(), func() { srv.Freeze(); t.Cleanup(srv.Thaw) }
		}},
		{"replies held", func(t *testing.T, srv *redisServer) (goredis.UniversalClient, func()) {
			p := newFaultProxy(t, srv.Addr())
			return p.Client(srv), func() { p.Hold(); t.Cleanup(p.Release) }
		}},
	}
	srv := startRedis(t, false)
	for _, f := range faults {
		for _, op := range ops {
			t.Run(f.name+"/"+op.name, func(t *testing.T) {
				require.NoError(t, srv.Client().FlushAll(context.Background()).Err())
				rdb, fault := f.client(t, srv)
				run := op.setup(t, rdb)
				fault()
				took := within(t, bound, op.name, run)
				t.Logf("%s returned after %v (timeout %v)", op.name, took, timeout)
			})
		}
	}
}
