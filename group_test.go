package resilient_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/resilient-go/resilient"
)

type groupResult struct {
	v      string
	shared bool
	err    error
}

// groupJoin starts n callers of g.DoShared for key in goroutines and waits, in a
// synctest bubble, until each has joined and blocked.
func groupJoin(t *testing.T, g *resilient.Group[string, string], ctxs []context.Context, key string,
	fn func(context.Context) (string, error)) []chan groupResult {
	t.Helper()
	out := make([]chan groupResult, len(ctxs))
	for i, ctx := range ctxs {
		out[i] = make(chan groupResult, 1)
		go func() {
			v, shared, err := g.DoShared(ctx, key, fn)
			out[i] <- groupResult{v, shared, err}
		}()
		synctest.Wait()
	}
	return out
}

func groupContexts(t *testing.T, n int) []context.Context {
	ctxs := make([]context.Context, n)
	for i := range ctxs {
		ctxs[i] = t.Context()
	}
	return ctxs
}

// TestGroupShares: concurrent calls with one key share one execution.
func TestGroupShares(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		var g resilient.Group[string, string]
		var calls atomic.Int32
		release := make(chan struct{})
		fn := func(context.Context) (string, error) {
			calls.Add(1)
			<-release
			return "value", nil
		}
		res := groupJoin(t, &g, groupContexts(t, 10), "k", fn)
		other := groupJoin(t, &g, groupContexts(t, 1), "other key", fn)
		close(release)
		for _, c := range res {
			r := <-c
			assert.NoError(t, r.err)
			assert.Equal(t, "value", r.v)
			assert.True(t, r.shared)
		}
		r := <-other[0]
		assert.NoError(t, r.err)
		assert.False(t, r.shared, "a caller alone does not share")
		assert.Equal(t, int32(2), calls.Load(), "one execution per key")

		// Finished executions are not joined: the next call runs again.
		v, shared, err := g.DoShared(t.Context(), "k", func(context.Context) (string, error) { return "fresh", nil })
		require.NoError(t, err)
		assert.Equal(t, "fresh", v)
		assert.False(t, shared)
	})
}

// TestGroupErrorShared: an error is shared like a value.
func TestGroupErrorShared(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		var g resilient.Group[string, string]
		release := make(chan struct{})
		res := groupJoin(t, &g, groupContexts(t, 3), "k", func(context.Context) (string, error) {
			<-release
			return "partial", errProtectUpstream
		})
		close(release)
		for _, c := range res {
			r := <-c
			assert.ErrorIs(t, r.err, errProtectUpstream)
			assert.Equal(t, "partial", r.v)
		}
	})
}

// TestGroupWaiterLeaves: one waiter's cancellation never cancels or poisons
// the others: the execution goes on, they get its result, and the waiter
// that left gets its own context's error at once.
func TestGroupWaiterLeaves(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		var g resilient.Group[string, string]
		release := make(chan struct{})
		var execCtx context.Context
		fn := func(ctx context.Context) (string, error) {
			execCtx = ctx
			<-release
			return "value", ctx.Err()
		}
		cause := errors.New("user went away")
		leaving, leave := context.WithCancelCause(t.Context())
		ctxs := append([]context.Context{leaving}, groupContexts(t, 4)...) // the first caller leaves
		res := groupJoin(t, &g, ctxs, "k", fn)

		leave(cause)
		r := <-res[0]
		assert.ErrorIs(t, r.err, context.Canceled)
		assert.ErrorIs(t, r.err, cause)
		assert.Empty(t, r.v)
		require.NoError(t, execCtx.Err(), "the execution is not cancelled while others wait")

		close(release)
		for _, c := range res[1:] {
			r := <-c
			assert.NoError(t, r.err)
			assert.Equal(t, "value", r.v)
			assert.True(t, r.shared)
		}
	})
}

// TestGroupDeadlineNotInherited: the execution does not inherit the first
// caller's deadline, but keeps its values.
func TestGroupDeadlineNotInherited(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		var g resilient.Group[string, string]
		type keyT struct{}
		short, cancel := context.WithTimeout(context.WithValue(t.Context(), keyT{}, "trace-1"), time.Second)
		defer cancel()
		fn := func(ctx context.Context) (string, error) {
			_, has := ctx.Deadline()
			assert.False(t, has)
			time.Sleep(2 * time.Second)
			return ctx.Value(keyT{}).(string), ctx.Err()
		}
		res := groupJoin(t, &g, []context.Context{short, t.Context()}, "k", fn)
		start := time.Now()
		r := <-res[0]
		assert.ErrorIs(t, r.err, context.DeadlineExceeded)
		assert.Equal(t, time.Second, time.Since(start))
		r = <-res[1]
		assert.NoError(t, r.err)
		assert.Equal(t, "trace-1", r.v)
		assert.Equal(t, 2*time.Second, time.Since(start))
	})
}

// TestGroupAbandoned: when every waiter has left, the execution is cancelled
// with ErrAbandoned, and a later caller gets a fresh execution, never the
// cancelled one.
func TestGroupAbandoned(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		var g resilient.Group[string, string]
		unblock := make(chan struct{})
		var execs atomic.Int32
		fn := func(ctx context.Context) (string, error) {
			n := execs.Add(1)
			if n == 1 {
				<-ctx.Done()
				<-unblock // the cancelled execution is still running when the next caller comes
				return "stale", context.Cause(ctx)
			}
			return "fresh", nil
		}
		ctx1, cancel1 := context.WithCancel(t.Context())
		ctx2, cancel2 := context.WithCancel(t.Context())
		res := groupJoin(t, &g, []context.Context{ctx1, ctx2}, "k", fn)
		cancel1()
		synctest.Wait()
		assert.Equal(t, int32(1), execs.Load())
		cancel2()
		assert.ErrorIs(t, (<-res[0]).err, context.Canceled)
		assert.ErrorIs(t, (<-res[1]).err, context.Canceled)

		v, shared, err := g.DoShared(t.Context(), "k", fn)
		require.NoError(t, err)
		assert.Equal(t, "fresh", v)
		assert.False(t, shared)
		assert.Equal(t, int32(2), execs.Load())
		close(unblock)
	})
}

// TestGroupAbandonedCause: the abandoned execution's context says why.
func TestGroupAbandonedCause(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		var g resilient.Group[string, string]
		cause := make(chan error, 1)
		ctx, cancel := context.WithCancel(t.Context())
		res := groupJoin(t, &g, []context.Context{ctx}, "k", func(ctx context.Context) (string, error) {
			<-ctx.Done()
			cause <- context.Cause(ctx)
			return "", ctx.Err()
		})
		cancel()
		<-res[0]
		assert.ErrorIs(t, <-cause, resilient.ErrAbandoned)
	})
}

// TestGroupSharedTimeout: the execution's own limit cancels it for every
// waiter, and a caller arriving after it is not handed it.
func TestGroupSharedTimeout(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		g := resilient.MustNewGroup[string, string](resilient.WithSharedTimeout(time.Second))
		unblock := make(chan struct{})
		var execs atomic.Int32
		fn := func(ctx context.Context) (string, error) {
			if execs.Add(1) == 1 {
				<-ctx.Done()
				err := ctx.Err()
				<-unblock
				return "", err
			}
			return "fresh", nil
		}
		res := groupJoin(t, g, groupContexts(t, 2), "k", fn)
		time.Sleep(time.Second)
		synctest.Wait()
		v, err := g.Do(t.Context(), "k", fn)
		require.NoError(t, err, "the timed-out execution was handed on")
		assert.Equal(t, "fresh", v)
		close(unblock)
		for _, c := range res {
			assert.ErrorIs(t, (<-c).err, context.DeadlineExceeded)
		}
	})
}

// TestGroupPanic: a panic in the shared function re-panics in every waiter's
// goroutine, with its value and stack, and never crashes the process.
func TestGroupPanic(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		var g resilient.Group[string, string]
		release := make(chan struct{})
		boom := errors.New("boom")
		const n = 5
		panics := make(chan any, n)
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				defer func() { panics <- recover() }()
				_, _ = g.Do(t.Context(), "k", func(context.Context) (string, error) {
					<-release
					panic(boom)
				})
				t.Error("Do returned after a panic")
			})
			synctest.Wait()
		}
		close(release)
		wg.Wait()
		close(panics)
		for p := range panics {
			var pe *resilient.PanicError
			require.ErrorAs(t, p.(error), &pe)
			assert.Equal(t, boom, pe.Value)
			assert.ErrorIs(t, pe, boom)
			assert.Contains(t, string(pe.Stack), "group_test.go")
			assert.Contains(t, pe.Error(), "resilient: shared call panicked: boom")
		}
		v, err := g.Do(t.Context(), "k", func(context.Context) (string, error) { return "after", nil })
		assert.NoError(t, err)
		assert.Equal(t, "after", v)
	})
}

// TestGroupPanicAfterAllLeft: a panic with nobody waiting goes nowhere: it
// does not crash the process.
func TestGroupPanicAfterAllLeft(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		var g resilient.Group[string, string]
		ctx, cancel := context.WithCancel(t.Context())
		res := groupJoin(t, &g, []context.Context{ctx}, "k", func(ctx context.Context) (string, error) {
			<-ctx.Done()
			panic("nobody is listening")
		})
		cancel()
		assert.ErrorIs(t, (<-res[0]).err, context.Canceled)
		synctest.Wait()
	})
}

func TestGroupGoexit(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		var g resilient.Group[string, string]
		_, err := g.Do(t.Context(), "k", func(context.Context) (string, error) {
			runtime.Goexit()
			return "", nil
		})
		assert.ErrorIs(t, err, resilient.ErrGoexit)
	})
}

// TestGroupCopy: WithCopy gives each caller its own copy; the original is
// never handed out.
func TestGroupCopy(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		var copies atomic.Int32
		g := resilient.MustNewGroup[string, []byte](resilient.WithCopy(func(b []byte) []byte {
			copies.Add(1)
			return append([]byte(nil), b...)
		}))
		original := []byte("body")
		release := make(chan struct{})
		const n = 4
		got := make(chan []byte, n)
		for range n {
			go func() {
				v, err := g.Do(t.Context(), "k", func(context.Context) ([]byte, error) {
					<-release
					return original, nil
				})
				assert.NoError(t, err)
				got <- v
			}()
			synctest.Wait()
		}
		close(release)
		seen := map[*byte]bool{&original[0]: true}
		for range n {
			v := <-got
			assert.Equal(t, "body", string(v))
			assert.False(t, seen[&v[0]], "a caller got the original, or another's copy")
			seen[&v[0]] = true
			v[0] = 'X' // each caller may write its own
		}
		assert.Equal(t, "body", string(original))
		assert.Equal(t, int32(n), copies.Load())
	})
}

// Each invalid option of NewGroup is an *OptionError that names it, with
// the exact message; several are all reported, a copy or release function
// of another type than the group's values included.
func TestGroupInvalid(t *testing.T) {
	defer goleak.VerifyNone(t)
	tests := []struct {
		name   string
		opt    resilient.GroupOption
		option string
		want   string // after "resilient: option: "
	}{
		{"copy of another type", resilient.WithCopy(func(s string) string { return s }),
			"WithCopy", "copy is a func(string) string, the group's values are []uint8"},
		{"release of another type", resilient.WithRelease(func(string) {}),
			"WithRelease", "release is a func(string), the group's values are []uint8"},
		{"timeout zero", resilient.WithSharedTimeout(0), "WithSharedTimeout", "d must be > 0, got 0s"},
		{"timeout negative", resilient.WithSharedTimeout(-time.Second), "WithSharedTimeout", "d must be > 0, got -1s"},
		{"nil listener", resilient.WithGroupListener(nil), "WithGroupListener", "nil listener"},
		{"nil option", nil, "NewGroup", "nil option"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := resilient.NewGroup[int, []byte](tt.opt)
			assert.Nil(t, g)
			requireOptionErrors(t, err, tt.option)
			assert.EqualError(t, err, "resilient: "+tt.option+": "+tt.want)
			assert.Panics(t, func() { resilient.MustNewGroup[int, []byte](tt.opt) })
		})
	}
	t.Run("several", func(t *testing.T) {
		g, err := resilient.NewGroup[int, []byte](resilient.WithCopy(func(s string) string { return s }),
			resilient.WithSharedTimeout(0), nil, resilient.WithRelease(func(int) {}))
		assert.Nil(t, g)
		requireOptionErrors(t, err, "WithSharedTimeout", "NewGroup", "WithCopy", "WithRelease")
	})
	g, err := resilient.NewGroup[int, []byte](resilient.WithCopy[[]byte](nil))
	require.NoError(t, err, "a nil copy is no copy")
	require.NotNil(t, g)
}

func TestGroupBadArguments(t *testing.T) {
	defer goleak.VerifyNone(t)
	var g resilient.Group[string, int]
	var calls int
	fn := func(context.Context) (int, error) { calls++; return 1, nil }
	//lint:ignore SA1012 a nil context is what is tested
	_, err := g.Do(nil, "k", fn) //nolint:staticcheck
	assert.ErrorIs(t, err, resilient.ErrNilContext)
	_, err = g.Do(t.Context(), "k", nil)
	assert.ErrorIs(t, err, resilient.ErrNilFunc)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = g.Do(ctx, "k", fn)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Zero(t, calls, "nothing is called for a done context")
}

// TestGroupCountsOnce: a whole resilient.Do inside the group counts once
// against the executor's policies, however many callers share it.
func TestGroupCountsOnce(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		b := resilient.MustNewBudget(resilient.WithRetryBurst(1), resilient.WithMinRetryRate(0))
		require.NoError(t, b.AllowRetry(2)) // empty: each request that reaches the upstream deposits 0.1
		var admits atomic.Int32
		ex := resilient.MustNew(resilient.WithBudget(b), resilient.WithPolicy(groupCountingPolicy{&admits}))
		var g resilient.Group[string, string]
		release := make(chan struct{})
		res := groupJoin(t, &g, groupContexts(t, 8), "k", func(ctx context.Context) (string, error) {
			return resilient.Do(ctx, func(context.Context) (string, error) {
				<-release
				return "v", nil
			}, ex)
		})
		close(release)
		for _, c := range res {
			assert.NoError(t, (<-c).err)
		}
		assert.Equal(t, int32(1), admits.Load())
		assert.InDelta(t, 0.1, b.Available(), 1e-9, "one deposit, not eight")
	})
}

type groupCountingPolicy struct{ n *atomic.Int32 }

func (p groupCountingPolicy) Admit(context.Context, int) (resilient.Permit, error) {
	p.n.Add(1)
	return resilient.Permit{}, nil
}
func (p groupCountingPolicy) Done(resilient.Permit, resilient.Report) {}

// TestGroupHammer: many goroutines, few keys, waiters leaving at random.
// Every caller that stays gets the value of its own key; at most one live
// (not cancelled) execution runs per key at any time; nothing hangs or
// leaks.
func TestGroupHammer(t *testing.T) {
	defer goleak.VerifyNone(t)
	const (
		goroutines = 64
		each       = 200
		keys       = 4
	)
	var g resilient.Group[int, string]
	var mu sync.Mutex
	live := make(map[int][]context.Context) // running executions per key
	var execs, sharedN, left atomic.Int64
	var wg sync.WaitGroup
	for i := range goroutines {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), 7))
			for range each {
				key := r.IntN(keys)
				ctx, cancel := context.WithCancel(context.Background())
				if r.IntN(4) == 0 {
					go func() {
						runtime.Gosched()
						cancel()
					}()
				}
				v, shared, err := g.DoShared(ctx, key, func(ctx context.Context) (string, error) {
					execs.Add(1)
					mu.Lock()
					// Checked only by a live execution: a cancelled one may
					// start after its successor (its goroutine ran late).
					for _, other := range live[key] {
						if ctx.Err() == nil {
							assert.Error(t, other.Err(), "two live executions for key %d", key)
						}
					}
					live[key] = append(live[key], ctx)
					mu.Unlock()
					for range 3 {
						runtime.Gosched()
					}
					mu.Lock()
					for j, c := range live[key] {
						if c == ctx {
							live[key] = append(live[key][:j], live[key][j+1:]...)
							break
						}
					}
					mu.Unlock()
					return fmt.Sprint("value-", key), nil
				})
				cancel()
				switch {
				case err == nil:
					assert.Equal(t, fmt.Sprint("value-", key), v)
					if shared {
						sharedN.Add(1)
					}
				case errors.Is(err, context.Canceled):
					left.Add(1)
				default:
					t.Errorf("unexpected error: %v", err)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("calls %d, executions %d, shared results %d, left %d", goroutines*each, execs.Load(), sharedN.Load(), left.Load())
	assert.Less(t, execs.Load(), int64(goroutines*each), "nothing was shared")
	assert.Positive(t, sharedN.Load())
	// The background executions of callers that left finish on their own.
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, l := range live {
			if len(l) > 0 {
				return false
			}
		}
		return true
	}, 5*time.Second, time.Millisecond)
}

// TestGroupRelease: a value nobody takes goes to the release hook, once;
// a value that callers take does not.
func TestGroupRelease(t *testing.T) {
	defer goleak.VerifyNone(t)
	tests := []struct {
		name     string
		copy     bool
		leave    bool // every caller leaves before fn ends
		released int
		copies   int
	}{
		{"taken", false, false, 0, 0},
		{"abandoned", false, true, 1, 0},
		{"copied, original released", true, false, 1, 3},
		{"copied but abandoned", true, true, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var released []string
				var copies atomic.Int32
				opts := []resilient.GroupOption{resilient.WithRelease(func(v string) { released = append(released, v) })}
				if tt.copy {
					opts = append(opts, resilient.WithCopy(func(v string) string { copies.Add(1); return v + "'" }))
				}
				g := resilient.MustNewGroup[string, string](opts...)
				release := make(chan struct{})
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				ctxs := []context.Context{ctx, ctx, ctx}
				res := groupJoin(t, g, ctxs, "k", func(context.Context) (string, error) {
					<-release
					return "body", nil
				})
				if tt.leave {
					cancel()
					for _, c := range res {
						assert.ErrorIs(t, (<-c).err, context.Canceled)
					}
				}
				close(release)
				synctest.Wait()
				if !tt.leave {
					for _, c := range res {
						r := <-c
						require.NoError(t, r.err)
						assert.True(t, r.v == "body" || tt.copy && r.v == "body'")
					}
				}
				assert.Len(t, released, tt.released)
				for _, v := range released {
					assert.Equal(t, "body", v)
				}
				assert.Equal(t, int32(tt.copies), copies.Load())
			})
		})
	}
	_, err := resilient.NewGroup[int, []byte](resilient.WithRelease(func(string) {}))
	require.Error(t, err)
	assert.Equal(t, "resilient: WithRelease: release is a func(string), the group's values are []uint8", err.Error())
}

// TestGroupNothingLost: under many goroutines and random departures, every
// value an execution returns is taken by a caller or released, never both,
// never twice. Executions that every caller left run on (their function
// ignores its context) after the last call has returned: the test waits for
// every execution's goroutine to end before it counts, rather than for the
// counts to look complete, which they can do while an abandoned execution
// has not produced its value yet.
func TestGroupNothingLost(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, withCopy := range []bool{false, true} {
		t.Run(fmt.Sprint("copy=", withCopy), func(t *testing.T) {
			before := goleak.IgnoreCurrent()
			var mu sync.Mutex
			taken := map[int64]int{}
			released := map[int64]int{}
			var produced atomic.Int64
			opts := []resilient.GroupOption{resilient.WithRelease(func(v *int64) {
				mu.Lock()
				released[*v]++
				mu.Unlock()
			})}
			if withCopy {
				opts = append(opts, resilient.WithCopy(func(v *int64) *int64 { c := *v; return &c }))
			}
			g := resilient.MustNewGroup[int, *int64](opts...)
			var wg sync.WaitGroup
			for i := range 32 {
				wg.Go(func() {
					r := rand.New(rand.NewPCG(uint64(i), 11))
					for range 200 {
						ctx, cancel := context.WithCancel(context.Background())
						if r.IntN(3) == 0 {
							go cancel()
						}
						v, err := g.Do(ctx, r.IntN(3), func(context.Context) (*int64, error) {
							runtime.Gosched()
							id := produced.Add(1)
							return &id, nil
						})
						cancel()
						if err == nil {
							mu.Lock()
							taken[*v]++
							mu.Unlock()
						}
					}
				})
			}
			wg.Wait()
			// Every execution has been started (its goroutine exists) once
			// the calls have returned; each releases what it must before its
			// goroutine ends.
			deadline := time.Now().Add(10 * time.Second)
			for goleak.Find(before) != nil {
				require.False(t, time.Now().After(deadline), "executions still running after 10s")
			}
			mu.Lock()
			defer mu.Unlock()
			n := produced.Load()
			for id := int64(1); id <= n; id++ {
				if withCopy {
					assert.Equal(t, 1, released[id], "the original of value %d is released exactly once", id)
					continue
				}
				switch {
				case taken[id] > 0:
					assert.Zero(t, released[id], "value %d both taken and released", id)
				default:
					assert.Equal(t, 1, released[id], "value %d nobody took is released exactly once", id)
				}
			}
			for id := range released {
				assert.True(t, id >= 1 && id <= n, "released value %d was produced", id)
			}
			t.Logf("produced %d, taken %d distinct, released %d", n, len(taken), len(released))
		})
	}
}

func TestGroupListener(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		var events []resilient.Event
		var mu sync.Mutex
		g := resilient.MustNewGroup[string, int](resilient.WithGroupName("users"), resilient.ObserveGroup(func(e resilient.Event) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, e)
		}))
		release := make(chan struct{})
		fn := func(ctx context.Context) (int, error) {
			select {
			case <-release:
				return 7, nil
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() {
				v, err := g.Do(t.Context(), "k", fn)
				assert.NoError(t, err)
				assert.Equal(t, 7, v)
			})
		}
		synctest.Wait()
		time.Sleep(time.Second) // fake time: the execution's duration
		close(release)
		wg.Wait()

		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(time.Second, cancel)
		_, err := g.Do(ctx, "k", func(ctx context.Context) (int, error) {
			<-ctx.Done()
			return 0, ctx.Err()
		})
		assert.ErrorIs(t, err, context.Canceled)
		synctest.Wait()

		mu.Lock()
		defer mu.Unlock()
		require.Len(t, events, 2)
		assert.Equal(t, resilient.GroupEvent{Name: "users", Joined: 3, Elapsed: time.Second}, events[0])
		abandoned := events[1].(resilient.GroupEvent)
		assert.True(t, abandoned.Abandoned)
		assert.Equal(t, 1, abandoned.Joined)
		assert.ErrorIs(t, abandoned.Err, context.Canceled)
	})
	_, err := resilient.NewGroup[string, int](resilient.WithGroupListener(nil))
	assert.EqualError(t, err, "resilient: WithGroupListener: nil listener")
}
