package resilient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

type hinted struct{ d time.Duration }

func (h hinted) Error() string             { return "slow down" }
func (h hinted) RetryAfter() time.Duration { return h.d }
func wrapf(err error) error                { return fmt.Errorf("call: %w", err) }

func TestClassify(t *testing.T) {
	alive := context.Background()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	errStop := errors.New("stop")
	byClassifier := MustNew(WithClassifier(Classifiers(nil, FailOn(errStop), RetryOn(io.EOF), func(error) Outcome { return Unclassified })))
	plain := MustNew()
	cases := []struct {
		name   string
		ex     *Executor
		parent context.Context
		err    error
		want   Outcome
	}{
		{"nil is success", plain, alive, nil, Success},
		{"nil is success even when done", plain, done, nil, Success},
		{"any error is retried", plain, alive, errFlaky, Retry},
		{"caller's cancellation is ignored", plain, done, context.Canceled, Ignore},
		{"any error after the caller's cancellation is ignored", plain, done, errFlaky, Ignore},
		{"attempt timeout with caller alive is retried", plain, alive, context.DeadlineExceeded, Retry},
		{"permanent fails", plain, alive, Permanent(errFlaky), Fail},
		{"wrapped permanent fails", plain, alive, wrapf(Permanent(errFlaky)), Fail},
		{"permanent beats classifier", byClassifier, alive, Permanent(io.EOF), Fail},
		{"classifier fails", byClassifier, alive, wrapf(errStop), Fail},
		{"classifier retries", byClassifier, alive, io.EOF, Retry},
		{"unclassified falls back to retry", byClassifier, alive, errFlaky, Retry},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.ex.classify(tc.parent, tc.err))
		})
	}
}

func TestMarkers(t *testing.T) {
	assert.NoError(t, Permanent(nil))
	assert.NoError(t, RetryAfter(nil, time.Second))
	assert.Equal(t, "flaky", Permanent(errFlaky).Error())
	assert.ErrorIs(t, Permanent(errFlaky), errFlaky)
	assert.Same(t, errFlaky, stripMarkers(Permanent(RetryAfter(errFlaky, time.Second))))
	wrapped := wrapf(errFlaky)
	assert.Same(t, wrapped, stripMarkers(wrapped), "only markers at the top are removed")

	assert.Equal(t, time.Second, hintOf(RetryAfter(errFlaky, time.Second)))
	assert.Equal(t, time.Second, hintOf(wrapf(RetryAfter(errFlaky, time.Second))))
	assert.Equal(t, 2*time.Second, hintOf(wrapf(hinted{2 * time.Second})), "other packages' errors can carry hints")
	assert.Zero(t, hintOf(RetryAfter(errFlaky, -time.Second)))
	assert.Zero(t, hintOf(errFlaky))
	// A joined error is searched depth first, as errors.As does: the first
	// hint found wins, also when it is not positive.
	assert.Equal(t, 3*time.Second, hintOf(errors.Join(errFlaky, wrapf(RetryAfter(errFlaky, 3*time.Second)))))
	assert.Equal(t, time.Second, hintOf(wrapf(errors.Join(hinted{time.Second}, hinted{2 * time.Second}))))
	assert.Zero(t, hintOf(errors.Join(hinted{-time.Second}, hinted{2 * time.Second})), "the first hint found is the one")
	assert.Zero(t, hintOf(errors.Join(errFlaky, wrapf(errFlaky))))
}

func TestOutcomeAndReasonNames(t *testing.T) {
	assert.Equal(t, "retry", Retry.String())
	assert.Equal(t, "outcome(9)", Outcome(9).String())
	assert.Equal(t, "retry-after too long", ReasonHintTooLong.String())
	assert.Equal(t, "reason(99)", Reason(99).String())
	assert.Equal(t, "hint", FromHint.String())
}

func TestErrorMessages(t *testing.T) {
	cases := []struct {
		err  *Error
		want string
	}{
		{&Error{Reason: ReasonRejected, Cause: errNo}, "resilient: no attempt made (rejected): no"},
		{&Error{Name: "users", Attempts: 1, Reason: ReasonPermanent, Last: errFlaky}, "resilient: users: stopped after 1 attempt (permanent): flaky"},
		{&Error{Attempts: 2, Reason: ReasonCanceled, Cause: context.Canceled, Last: errFlaky}, "resilient: gave up after 2 attempts (canceled): context canceled: flaky"},
	}
	for _, tc := range cases {
		assert.EqualError(t, tc.err, tc.want)
	}
	assert.ErrorIs(t, &Error{Reason: ReasonDeadline}, context.DeadlineExceeded)
	assert.NotErrorIs(t, &Error{Reason: ReasonExhausted}, context.DeadlineExceeded)
}
