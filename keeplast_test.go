package resilient

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// ledger hands out values and records which were released, so that a test
// can check that every value is returned or released, exactly once.
type ledger struct {
	mu       sync.Mutex
	made     []*response
	released map[*response]int
}

func (l *ledger) make(status int) *response {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := &response{status: status}
	l.made = append(l.made, r)
	return r
}

func (l *ledger) release(r *response) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.released == nil {
		l.released = map[*response]int{}
	}
	if r != nil {
		l.released[r]++
	}
}

// check asserts that every value made was released exactly once, except
// returned, which was not released at all.
func (l *ledger) check(t *testing.T, returned *response) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, r := range l.made {
		want := 1
		if r == returned {
			want = 0
		}
		assert.Equal(t, want, l.released[r], "value %d of %d (returned: %v)", i+1, len(l.made), r == returned)
	}
	if returned != nil {
		assert.Contains(t, l.made, returned, "the returned value was made by an attempt")
	}
}

var err503 = errors.New("status 503")

// TestRefusedRetryKeepsLastValue: a retry refused after its wait (a policy,
// a breaker that opened meanwhile, the function's own Reject) ends the call
// with the last attempt's value and error, never released; the refusal is
// the cause (the 429 was once lost, ErrOpen returned alone).
func TestRefusedRetryKeepsLastValue(t *testing.T) {
	refusal := errors.New("no more")
	for name, tc := range map[string]struct {
		opts   func(br *Breaker) []Option
		reject bool // fn refuses attempt 2 itself
		do     func(context.Context, func(context.Context) (*response, error), ...Option) (*response, error)
		cause  func(br *Breaker) error
		// took is how long the call takes: the whole wait, or, when the
		// executor's breaker opens during it, until that moment.
		took time.Duration
	}{
		"policy": {
			opts: func(*Breaker) []Option {
				return []Option{WithPolicy(&recorder{refuse: func(n int) error {
					if n > 1 {
						return refusal
					}
					return nil
				}})}
			},
			cause: func(*Breaker) error { return refusal },
			took:  time.Second,
		},
		"breaker opened during the wait": {
			opts:  func(br *Breaker) []Option { return []Option{WithBreaker(br)} },
			cause: func(br *Breaker) error { return br.refusal.Load() },
			took:  500 * time.Millisecond,
		},
		"breaker and another policy": {
			opts:  func(br *Breaker) []Option { return []Option{WithBreaker(br), WithPolicy(&recorder{})} },
			cause: func(br *Breaker) error { return br.refusal.Load() },
			took:  500 * time.Millisecond,
		},
		"Reject": {
			opts:   func(*Breaker) []Option { return nil },
			reject: true,
			cause:  func(*Breaker) error { return hostRefusal },
			took:   time.Second,
		},
		"hedged, breaker": {
			opts:  func(br *Breaker) []Option { return []Option{WithBreaker(br), WithHedge(time.Hour, 2)} },
			do:    DoHedged[*response],
			cause: func(br *Breaker) error { return br.refusal.Load() },
			took:  500 * time.Millisecond,
		},
		"hedged, Reject": {
			opts:   func(*Breaker) []Option { return []Option{WithHedge(time.Hour, 2)} },
			reject: true,
			do:     DoHedged[*response],
			cause:  func(*Breaker) error { return hostRefusal },
			took:   time.Second,
		},
	} {
		t.Run(name, func(t *testing.T) {
			defer goleak.VerifyNone(t)
			synctest.Test(t, func(t *testing.T) {
				br := MustNewBreaker()
				l := &ledger{}
				ex := MustNew(append(tc.opts(br), WithBackoff(Constant(time.Second)), WithJitter(NoJitter),
					OnDiscard(l.release))...)
				// The breaker opens by hand while the call waits.
				time.AfterFunc(500*time.Millisecond, br.ForceOpen)
				calls := 0
				fn := func(context.Context) (*response, error) {
					calls++
					if calls > 1 && tc.reject {
						return nil, Reject(hostRefusal)
					}
					return l.make(503), RetryAfter(err503, time.Second)
				}
				do := tc.do
				if do == nil {
					do = Do[*response]
				}
				start := time.Now()
				v, err := do(t.Context(), fn, ex)
				assert.Equal(t, tc.took, time.Since(start), "one wait at most, and none past an opening")
				require.Len(t, l.made, 1)
				assert.Same(t, l.made[0], v, "the last response is handed back")
				l.check(t, v)
				var rerr *Error
				require.ErrorAs(t, err, &rerr)
				assert.Equal(t, ReasonRejected, rerr.Reason)
				assert.Equal(t, 1, rerr.Attempts)
				assert.Same(t, err503, rerr.Last)
				assert.Equal(t, tc.cause(br), rerr.Cause)
				br.Reset()
			})
		})
	}
}

// TestGateRefusalKeepsValue: a retry gate's refusal, before the wait, ends
// the call with the attempt's value, not released.
func TestGateRefusalKeepsValue(t *testing.T) {
	l := &ledger{}
	g := &gate{allow: func(int) error { return errNo }}
	v, err := Do(context.Background(), func(context.Context) (*response, error) {
		return l.make(503), err503
	}, WithPolicy(g), OnDiscard(l.release))
	assert.ErrorIs(t, err, errNo)
	assert.ErrorIs(t, err, err503)
	require.Len(t, l.made, 1)
	assert.Same(t, l.made[0], v)
	l.check(t, v)
}

// TestContextEndsHeldValue: a context that ends the call between attempts
// (during the wait, or while a policy holds the next attempt back) releases
// the held value, and the call returns the zero value.
func TestContextEndsHeldValue(t *testing.T) {
	for name, opts := range map[string][]Option{
		"during the wait":    {WithBackoff(Constant(time.Hour))},
		"in a policy's wait": {WithBackoff(Constant(time.Millisecond)), WithPolicy(holdRetries{})},
		"hedged":             {WithBackoff(Constant(time.Hour)), WithHedge(time.Hour, 2)},
	} {
		t.Run(name, func(t *testing.T) {
			defer goleak.VerifyNone(t)
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				l := &ledger{}
				ex := MustNew(append(opts, OnDiscard(l.release), WithMaxDelay(2*time.Hour))...)
				v, err := DoHedged(ctx, func(context.Context) (*response, error) {
					time.AfterFunc(time.Second, cancel)
					return l.make(503), err503
				}, ex)
				assert.Nil(t, v)
				assert.ErrorIs(t, err, context.Canceled)
				require.Len(t, l.made, 1)
				l.check(t, nil)
			})
		})
	}
}

// holdRetries admits first attempts, and holds every retry back until the
// context ends, as a rate limiter with no tokens left does.
type holdRetries struct{}

func (holdRetries) Admit(ctx context.Context, n int) (Permit, error) {
	if n > 1 {
		<-ctx.Done()
		return Permit{}, fmt.Errorf("no token: %w", ctx.Err())
	}
	return Permit{}, nil
}
func (holdRetries) Done(Permit, Report) {}

// TestNothingLostOrReleasedTwice drives calls through random mixes of
// outcomes, refusals (before and after waits), hints, hedges and
// cancellations: each value an attempt makes is returned to the caller or
// released, exactly once, never both.
func TestNothingLostOrReleasedTwice(t *testing.T) {
	defer goleak.VerifyNone(t)
	for seed := range uint64(300) {
		synctest.Test(t, func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 7))
			l := &ledger{}
			var calls atomic.Int32
			var mu sync.Mutex // hedges ask from their own goroutines
			refusals := rand.New(rand.NewPCG(seed, 8))
			refuse := func(int) error {
				mu.Lock()
				defer mu.Unlock()
				if refusals.IntN(6) == 0 {
					return errNo
				}
				return nil
			}
			opts := []Option{WithAttempts(1 + r.IntN(5)), WithBackoff(Constant(time.Duration(r.IntN(3)) * time.Second)),
				WithJitter(NoJitter), OnDiscard(l.release), WithPolicy(&recorder{refuse: refuse})}
			if r.IntN(2) == 0 {
				opts = append(opts, WithPolicy(&gate{allow: refuse}))
			}
			hedging := r.IntN(3) == 0
			if hedging {
				opts = append(opts, WithHedge(time.Duration(1+r.IntN(3))*100*time.Millisecond, 2+r.IntN(2)))
			}
			if r.IntN(3) == 0 {
				opts = append(opts, WithBreaker(MustNewBreaker(WithConsecutiveFailures(1+r.IntN(2)), WithOpenDuration(time.Second))))
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if r.IntN(3) == 0 {
				time.AfterFunc(time.Duration(r.IntN(4000))*time.Millisecond, cancel)
			}
			// Each attempt's script is drawn up front, so that hedges on
			// other goroutines do not share the random source.
			type step struct {
				sleep  time.Duration
				status int
				err    error
			}
			var steps []step
			for range 16 {
				s := step{sleep: time.Duration(r.IntN(4)) * 100 * time.Millisecond, status: 503}
				switch r.IntN(6) {
				case 0:
					s.status = 200
				case 1:
					s.err = Permanent(err503)
				case 2:
					s.err = RetryAfter(err503, time.Duration(r.IntN(3))*time.Second)
				case 3:
					s.err = Reject(hostRefusal)
				default:
					s.err = err503
				}
				steps = append(steps, s)
			}
			v, err := DoHedged(ctx, func(ctx context.Context) (*response, error) {
				s := steps[min(int(calls.Add(1)), len(steps))-1]
				select {
				case <-time.After(s.sleep):
				case <-ctx.Done():
				}
				if s.err != nil && errors.As(s.err, new(*rejectError)) {
					return nil, s.err
				}
				return l.make(s.status), s.err
			}, opts...)
			l.check(t, v)
			if err == nil {
				require.NotNil(t, v)
			}
		})
	}
}

// TestWaitEndsWhenBreakerOpens: a call waiting out a server's hint ends
// the moment a breaker it retries through opens, with the response it
// has, instead of sitting out a wait that can only end in a refusal; any
// other change of the breaker's state (a Reset, half-open) leaves the wait
// as it was. Two breakers are watched at once.
func TestWaitEndsWhenBreakerOpens(t *testing.T) {
	for name, tc := range map[string]struct {
		change func(a, b *Breaker)
		took   time.Duration
		opened bool
	}{
		"the first breaker opens":  {change: func(a, _ *Breaker) { a.ForceOpen() }, took: 300 * time.Millisecond, opened: true},
		"the second breaker opens": {change: func(_, b *Breaker) { b.ForceOpen() }, took: 300 * time.Millisecond, opened: true},
		"a reset changes nothing":  {change: func(a, b *Breaker) { a.Reset(); b.Reset() }, took: 2 * time.Second},
		"disabled changes nothing": {change: func(a, _ *Breaker) { a.Disable() }, took: 2 * time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			defer goleak.VerifyNone(t)
			synctest.Test(t, func(t *testing.T) {
				a, b := MustNewBreaker(), MustNewBreaker()
				l := &ledger{}
				ex := MustNew(WithBreaker(a), WithBreaker(b), WithAttempts(2), WithJitter(NoJitter),
					WithBackoff(Constant(0)), OnDiscard(l.release))
				time.AfterFunc(300*time.Millisecond, func() { tc.change(a, b) })
				start := time.Now()
				v, err := Do(t.Context(), func(context.Context) (*response, error) {
					return l.make(429), RetryAfter(err503, 2*time.Second)
				}, ex)
				assert.Equal(t, tc.took, time.Since(start))
				var rerr *Error
				require.ErrorAs(t, err, &rerr)
				if tc.opened {
					assert.Equal(t, ReasonRejected, rerr.Reason)
					assert.ErrorIs(t, err, ErrOpen)
					assert.Equal(t, 1, rerr.Attempts)
					require.Len(t, l.made, 1)
				} else {
					assert.Equal(t, ReasonExhausted, rerr.Reason)
					assert.Equal(t, 2, rerr.Attempts)
					require.Len(t, l.made, 2)
				}
				assert.Same(t, l.made[len(l.made)-1], v, "the last response is handed back")
				l.check(t, v)
			})
		})
	}
}

// TestWaitEndsWhenBreakerOpensManyCallers: many calls waiting through one
// breaker all end when it opens, none before, under -race.
func TestWaitEndsWhenBreakerOpensManyCallers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		br := MustNewBreaker(WithCountWindow(1000), WithMinCalls(1000)) // opens by hand only
		ex := MustNew(WithBreaker(br), WithJitter(NoJitter), WithBackoff(Constant(time.Second)))
		const callers = 64
		var wg sync.WaitGroup
		var early atomic.Int32
		for range callers {
			wg.Go(func() {
				start := time.Now()
				_, err := Do(t.Context(), func(context.Context) (int, error) { return 0, err503 }, ex)
				if time.Since(start) != 700*time.Millisecond || !errors.Is(err, ErrOpen) {
					early.Add(1)
				}
			})
		}
		time.Sleep(700 * time.Millisecond)
		br.ForceOpen()
		wg.Wait()
		assert.Zero(t, early.Load(), "every caller ends when the breaker opens, with ErrOpen")
	})
}
