package benchmarks

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// These tests prove that every benchmark body does what its name says: the
// same number of attempts for every library, the value handed back, the
// connections and bodies of the HTTP scenarios accounted for. They run
// the very ops the benchmarks time.

// counted wraps w to count its calls.
func counted(w work) (work, *atomic.Int64) {
	var n atomic.Int64
	return func(ctx context.Context) (int, error) {
		n.Add(1)
		return w(ctx)
	}, &n
}

func TestRetryHappyMakesOneAttempt(t *testing.T) {
	for _, l := range retryHappyLibs {
		t.Run(l.name, func(t *testing.T) {
			w, n := counted(succeed)
			call := l.build(w)
			for i := range 5 {
				v, err := call(context.Background())
				require.NoError(t, err)
				assert.Equal(t, want, v)
				assert.Equal(t, int64(i+1), n.Load(), "attempts after %d calls", i+1)
			}
		})
	}
}

func TestRetryHappyParallelSharesOnePolicy(t *testing.T) {
	for _, l := range retryHappyLibs {
		t.Run(l.name, func(t *testing.T) {
			w, n := counted(succeed)
			call := l.build(w)
			const goroutines, calls = 8, 50
			done := make(chan struct{})
			for range goroutines {
				go func() {
					defer func() { done <- struct{}{} }()
					for range calls {
						v, err := call(context.Background())
						assert.NoError(t, err)
						assert.Equal(t, want, v)
					}
				}()
			}
			for range goroutines {
				<-done
			}
			assert.Equal(t, int64(goroutines*calls), n.Load())
		})
	}
}

func TestRetryFlakyMakesThreeAttempts(t *testing.T) {
	for _, l := range retryFlakyLibs {
		t.Run(l.name, func(t *testing.T) {
			w, n := counted(flaky())
			call := l.build(w)
			for i := range 5 {
				v, err := call(context.Background())
				require.NoError(t, err, "call %d", i+1)
				assert.Equal(t, want, v)
				assert.Equal(t, int64(3*(i+1)), n.Load(), "attempts after %d calls", i+1)
			}
		})
	}
}

// TestRetryFlakyGivesUpAfterThreeAttempts pins the attempt limit: with work
// that always fails, every library stops after exactly three calls.
func TestRetryFlakyGivesUpAfterThreeAttempts(t *testing.T) {
	for _, l := range retryFlakyLibs {
		t.Run(l.name, func(t *testing.T) {
			w, n := counted(func(context.Context) (int, error) { return 0, errTransient })
			call := l.build(w)
			_, err := call(context.Background())
			require.ErrorIs(t, err, errTransient)
			assert.Equal(t, int64(3), n.Load())
		})
	}
}

func TestBreakerClosedCallsOnce(t *testing.T) {
	for _, win := range []window{countWin, timeWin} {
		for _, l := range breakerLibs(win) {
			t.Run(win.String()+"/"+l.name, func(t *testing.T) {
				w, n := counted(succeed)
				call := l.build(w)
				for i := range 5 {
					v, err := call(context.Background())
					require.NoError(t, err)
					assert.Equal(t, want, v)
					assert.Equal(t, int64(i+1), n.Load())
				}
			})
		}
	}
}

func TestBreakerClosedParallelSharesOneBreaker(t *testing.T) {
	for _, win := range []window{countWin, timeWin} {
		for _, l := range breakerLibs(win) {
			t.Run(win.String()+"/"+l.name, func(t *testing.T) {
				w, n := counted(succeed)
				call := l.build(w)
				const goroutines, calls = 8, 50
				done := make(chan struct{})
				for range goroutines {
					go func() {
						defer func() { done <- struct{}{} }()
						for range calls {
							v, err := call(context.Background())
							assert.NoError(t, err)
							assert.Equal(t, want, v)
						}
					}()
				}
				for range goroutines {
					<-done
				}
				assert.Equal(t, int64(goroutines*calls), n.Load())
			})
		}
	}
}

// TestBreakerOpenRefusesWithoutCalling proves that the open-breaker
// benchmark times refusals: every call is refused with the library's own
// error, and the work is never called.
func TestBreakerOpenRefusesWithoutCalling(t *testing.T) {
	for _, l := range breakerLibs(countWin) {
		if l.isOpen == nil {
			continue
		}
		t.Run(l.name, func(t *testing.T) {
			w, n := counted(succeed)
			call, err := tripped(l, w)
			require.NoError(t, err)
			for range 10 {
				_, err := call(context.Background())
				assert.True(t, l.isOpen(err), "want a refusal, got %v", err)
			}
			assert.Zero(t, n.Load(), "an open breaker called the work")
		})
	}
}

// TestBreakerClosedStaysClosedOnSuccess guards the closed benchmarks
// against a breaker that would open on its own.
func TestBreakerClosedStaysClosedOnSuccess(t *testing.T) {
	for _, l := range breakerLibs(countWin) {
		t.Run(l.name, func(t *testing.T) {
			call := l.build(succeed)
			for range 3 * countWindow {
				_, err := call(context.Background())
				require.NoError(t, err)
			}
		})
	}
}

func TestRetryBreakerAttempts(t *testing.T) {
	for _, l := range retryBreakerLibs(1) {
		t.Run("happy/"+l.name, func(t *testing.T) {
			w, n := counted(succeed)
			call := l.build(w)
			for i := range 5 {
				v, err := call(context.Background())
				require.NoError(t, err)
				assert.Equal(t, want, v)
				assert.Equal(t, int64(i+1), n.Load())
			}
		})
		t.Run("flaky/"+l.name, func(t *testing.T) {
			w, n := counted(flaky())
			call := l.build(w)
			// Many calls: the breaker must stay closed while the work
			// fails two attempts of three.
			const calls = 3 * countWindow
			for i := range calls {
				v, err := call(context.Background())
				require.NoError(t, err, "call %d", i+1)
				assert.Equal(t, want, v)
			}
			assert.Equal(t, int64(3*calls), n.Load())
		})
	}
}

// TestRetryBreakerDoesNotRetryRefusals pins the composition: once the
// breaker is open, a call is refused at once, and the refusal is not
// retried (the work is not called at all).
func TestRetryBreakerDoesNotRetryRefusals(t *testing.T) {
	libs := retryBreakerLibs(failureRate)[1:] // not the direct loop
	open := map[string]func(error) bool{
		"resilient": isResilientOpen, "failsafe": isFailsafeOpen, "eapache": isEapacheOpen,
	}
	for _, l := range libs {
		t.Run(l.name, func(t *testing.T) {
			isOpen := open[l.name]
			require.NotNil(t, isOpen)
			var failing atomic.Bool
			failing.Store(true)
			w, n := counted(func(context.Context) (int, error) {
				if failing.Load() {
					return 0, errTransient
				}
				return want, nil
			})
			call := l.build(w)
			opened := false
			for range 10 * countWindow {
				if _, err := call(context.Background()); isOpen(err) {
					opened = true
					break
				}
			}
			require.True(t, opened, "breaker never opened")
			before := n.Load()
			_, err := call(context.Background())
			assert.True(t, isOpen(err), "want a refusal, got %v", err)
			assert.Equal(t, before, n.Load(), "a refused call ran the work")
		})
	}
}

// TestHTTPGetReusesOneConnection proves what the HTTP benchmarks time: for
// each client, every call ends with a 200 whose body was read and closed,
// the upstream saw exactly the requests the name says (one per call, or
// three on the 503-503-200 path), every response body handed out was
// closed, and no more than maxConns connections served them all (one,
// unless net/http dialled a spare).
func TestHTTPGetReusesOneConnection(t *testing.T) {
	for _, flaky := range []bool{false, true} {
		perCall := int64(1)
		if flaky {
			perCall = 3
		}
		for _, l := range httpLibs {
			t.Run(fmt.Sprintf("flaky=%v/%s", flaky, l.name), func(t *testing.T) {
				defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
				u := newUpstream(flaky)
				defer u.Close()
				base := newTransport()
				defer base.CloseIdleConnections()
				tt := &trackingTransport{base: base}
				call := l.build(u.URL, tt, flaky)
				const calls = 20
				for i := range calls {
					code, err := call(httpCtx(t))
					require.NoError(t, err, "call %d", i+1)
					require.Equal(t, http.StatusOK, code, "call %d", i+1)
				}
				assert.Equal(t, calls*perCall, u.requests.Load(), "requests")
				assert.Equal(t, calls*perCall, tt.opened.Load(), "response bodies handed out")
				assert.Equal(t, tt.opened.Load(), tt.closed.Load(), "response bodies closed")
				assert.LessOrEqual(t, u.conns.Load(), int64(maxConns), "connections")
			})
		}
	}
}

// TestFailsafeHTTPLeavesRetriedResponsesOpen shows why the failsafehttp
// client gets a listener that closes retried responses: without it, the
// bodies of the 503s are never closed and every retry opens a connection.
func TestFailsafeHTTPLeavesRetriedResponsesOpen(t *testing.T) {
	u := newUpstream(true)
	defer u.Close()
	base := newTransport()
	defer base.CloseIdleConnections()
	tt := &trackingTransport{base: base}
	call := failsafeHTTPOp(u.URL, tt, true, false)
	const calls = 5
	for range calls {
		code, err := call(httpCtx(t))
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code)
	}
	assert.Equal(t, int64(3*calls), tt.opened.Load())
	assert.Equal(t, int64(calls), tt.closed.Load(), "only the returned bodies are closed")
	assert.Greater(t, u.conns.Load(), int64(maxConns), "connections")
}

// TestDedupSharesOneCall proves what the dedup benchmark measures: callers
// that ask for the key while a call is in flight share it. In a synctest
// bubble, the upstream call blocks until every caller is blocked waiting
// (synctest.Wait), so the sharing is certain: one upstream call for all the
// callers with the groups, one per caller without.
func TestDedupSharesOneCall(t *testing.T) {
	for _, l := range dedupLibs {
		t.Run(l.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				gate := make(chan struct{})
				w, n := counted(func(context.Context) (int, error) {
					<-gate
					return want, nil
				})
				call := l.build(w)
				results := make(chan int, dedupGoroutines)
				ask := func() {
					v, err := call(context.Background())
					assert.NoError(t, err)
					results <- v
				}
				go ask()
				synctest.Wait() // the first caller's upstream call is in flight
				for range dedupGoroutines - 1 {
					go ask()
				}
				synctest.Wait() // every caller is waiting
				close(gate)
				for range dedupGoroutines {
					assert.Equal(t, want, <-results)
				}
				wantCalls := int64(1)
				if l.name == "direct" {
					wantCalls = dedupGoroutines
				}
				assert.Equal(t, wantCalls, n.Load(), "upstream calls")
			})
		})
	}
}
