package resilient

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// The success path of every protection policy takes no lock that it waits
// for: successful attempts go on, directly and through an executor, while
// each policy's every mutex is held by someone else. Enough attempts run
// to close the batches and windows that take a lock by TryLock (a
// throttle's batch of 32 accepts, a concurrency limiter's window of 50
// samples), which then leave the work to whoever holds it.
func TestPoliciesSuccessPathTakesNoLock(t *testing.T) {
	const attempts = 1000
	ok := func(context.Context) (int, error) { return 1, nil }
	// Each case builds a policy and names the mutexes it has.
	cases := []struct {
		name  string
		build func() (Policy, []*sync.Mutex)
	}{
		{"budget", func() (Policy, []*sync.Mutex) {
			b := MustNewBudget()
			return b, []*sync.Mutex{&b.mu}
		}},
		{"adaptive budget", func() (Policy, []*sync.Mutex) {
			b := MustNewAdaptiveBudget()
			return b, []*sync.Mutex{&b.mu}
		}},
		{"throttle", func() (Policy, []*sync.Mutex) {
			th := MustNewThrottle()
			return th, []*sync.Mutex{&th.mu}
		}},
		{"bulkhead", func() (Policy, []*sync.Mutex) {
			b := MustNewBulkhead(10, WithSlotWait(time.Second))
			return b, []*sync.Mutex{&b.mu}
		}},
		{"concurrency gradient2", func() (Policy, []*sync.Mutex) {
			l := MustNewConcurrencyLimiter(WithLimitWait(time.Second))
			return l, []*sync.Mutex{&l.mu, &l.queue.mu}
		}},
		{"concurrency aimd", func() (Policy, []*sync.Mutex) {
			l := MustNewConcurrencyLimiter(WithAIMD(AIMD{}), WithLimitWait(time.Second))
			return l, []*sync.Mutex{&l.mu, &l.queue.mu}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			policy, locks := c.build()
			ex := MustNew(WithPolicy(policy))
			for _, mu := range locks {
				mu.Lock()
			}
			done := make(chan error, 1)
			go func() {
				ctx := context.Background()
				report := Report{Attempt: 1, Outcome: Success}
				for range attempts {
					p, err := policy.Admit(ctx, 1)
					if err != nil {
						done <- err
						return
					}
					policy.Done(p, report)
					if _, err := Do(ctx, ok, ex); err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
			select {
			case err := <-done:
				assert.NoError(t, err)
				for _, mu := range locks {
					mu.Unlock()
				}
			case <-time.After(10 * time.Second):
				for _, mu := range locks {
					mu.Unlock()
				}
				<-done // returns once the locks are free
				t.Fatalf("%d successful attempts did not finish while the policy's locks were held", attempts)
			}
		})
	}
}
