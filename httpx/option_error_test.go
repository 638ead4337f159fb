package httpx

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilient-go/resilient"
)

// optionErrors lists, for each error err joins, the option its
// *resilient.OptionError names and, for one that wraps an error of the
// core's (an option passed on to resilient.New or NewBreakers), the core
// option's name after a slash: "httpx.Recommended/WithFailureRate".
func optionErrors(t *testing.T, err error) []string {
	t.Helper()
	var names []string
	for _, e := range split(err) {
		var oe *resilient.OptionError
		if !assert.True(t, errors.As(e, &oe), "not an *OptionError: %v", e) {
			continue
		}
		name := oe.Option
		var inner *resilient.OptionError
		if errors.As(oe.Err, &inner) {
			name += "/" + inner.Option
		}
		names = append(names, name)
	}
	return names
}

// TestOptionErrors: each invalid option of NewTransport is a
// *resilient.OptionError that names it ("httpx.WithMaxHosts"), matching
// resilient.ErrInvalidOption, with the exact message; the core's options
// passed on are reported within the option that took them, their own
// *OptionError inside. NewClient's requests fail with the same error,
// unsent.
func TestOptionErrors(t *testing.T) {
	var nilEx *resilient.Executor
	for _, tc := range []struct {
		name    string
		opt     Option
		options []string
		want    string
	}{
		{"nil option", nil, []string{"httpx.NewTransport"}, "resilient: httpx.NewTransport: nil option"},
		{"nil executor", WithExecutor(nil), []string{"httpx.WithExecutor"}, "resilient: httpx.WithExecutor: nil executor"},
		{"typed nil executor", WithExecutor(nilEx), []string{"httpx.WithExecutor"}, "resilient: httpx.WithExecutor: nil executor"},
		{"nil executor option", WithExecutorOptions(nil), []string{"httpx.WithExecutorOptions"},
			"resilient: httpx.WithExecutorOptions: nil option"},
		{"an executor among executor options", WithExecutorOptions(resilient.MustNew()), []string{"httpx.WithExecutorOptions"},
			"resilient: httpx.WithExecutorOptions: an *Executor would replace the policy: give options, or use WithExecutor"},
		{"invalid executor option", WithExecutorOptions(resilient.WithAttempts(0)), []string{"httpx.WithExecutorOptions/WithAttempts"},
			"resilient: httpx.WithExecutorOptions: resilient: WithAttempts: n must be >= 1 or Unlimited, got 0"},
		{"attempt timeout zero", WithAttemptTimeout(0), []string{"httpx.WithAttemptTimeout"},
			"resilient: httpx.WithAttemptTimeout: d must be > 0, got 0s"},
		{"attempt timeout negative", WithAttemptTimeout(-time.Second), []string{"httpx.WithAttemptTimeout"},
			"resilient: httpx.WithAttemptTimeout: d must be > 0, got -1s"},
		{"nil host breakers", WithHostBreakers(nil), []string{"httpx.WithHostBreakers"}, "resilient: httpx.WithHostBreakers: nil set"},
		{"nil host policies", WithHostPolicies(nil), []string{"httpx.WithHostPolicies"}, "resilient: httpx.WithHostPolicies: nil function"},
		{"max hosts zero", WithMaxHosts(0), []string{"httpx.WithMaxHosts"}, "resilient: httpx.WithMaxHosts: n must be >= 1, got 0"},
		{"max hosts negative", WithMaxHosts(-3), []string{"httpx.WithMaxHosts"}, "resilient: httpx.WithMaxHosts: n must be >= 1, got -3"},
		{"replay limit negative", WithReplayLimit(-1), []string{"httpx.WithReplayLimit"}, "resilient: httpx.WithReplayLimit: n must be >= 0, got -1"},
		{"invalid breaker option", Recommended(resilient.WithFailureRate(2)), []string{"httpx.Recommended/WithFailureRate"},
			"resilient: httpx.Recommended: resilient: WithFailureRate: rate must be in (0, 1], got 2"},
		{"nil breaker option", Recommended(nil), []string{"httpx.Recommended/NewBreaker"},
			"resilient: httpx.Recommended: resilient: NewBreaker: nil option"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := NewTransport(tc.opt)
			assert.Nil(t, tr)
			require.ErrorIs(t, err, resilient.ErrInvalidOption)
			var oe *resilient.OptionError
			require.ErrorAs(t, err, &oe)
			assert.Equal(t, tc.options, optionErrors(t, err))
			assert.EqualError(t, err, tc.want)

			f := &fakeRT{fn: statuses(200)}
			_, err = NewClient(WithBase(f), tc.opt).Get("http://api.test/")
			assert.ErrorIs(t, err, resilient.ErrInvalidOption)
			assert.ErrorContains(t, err, tc.want)
			assert.Zero(t, f.calls(), "nothing sent")
		})
	}
}

// TestOptionErrorsSeveral: NewTransport reports every invalid option, in
// order, and those the core found among WithExecutorOptions' (checked when
// the other options are done) last; one error of the core's each.
func TestOptionErrorsSeveral(t *testing.T) {
	_, err := NewTransport(
		nil,
		WithMaxHosts(0),
		WithExecutorOptions(resilient.WithAttempts(0), resilient.WithMaxDelay(-1)),
		Recommended(resilient.WithFailureRate(2), resilient.WithCountWindow(0)),
		WithAttemptTimeout(0),
		WithExecutorOptions(nil),
	)
	require.ErrorIs(t, err, resilient.ErrInvalidOption)
	assert.Equal(t, []string{
		"httpx.NewTransport",
		"httpx.WithMaxHosts",
		"httpx.Recommended/WithFailureRate",
		"httpx.Recommended/WithCountWindow",
		"httpx.WithAttemptTimeout",
		"httpx.WithExecutorOptions",
		"httpx.WithExecutorOptions/WithAttempts",
		"httpx.WithExecutorOptions/WithMaxDelay",
	}, optionErrors(t, err))
	// The core's own messages, as the core words them, follow the option.
	_, countWindow := resilient.NewBreaker(resilient.WithCountWindow(0))
	_, maxDelay := resilient.New(resilient.WithMaxDelay(-1))
	assert.EqualError(t, err, "resilient: httpx.NewTransport: nil option\n"+
		"resilient: httpx.WithMaxHosts: n must be >= 1, got 0\n"+
		"resilient: httpx.Recommended: resilient: WithFailureRate: rate must be in (0, 1], got 2\n"+
		"resilient: httpx.Recommended: "+countWindow.Error()+"\n"+
		"resilient: httpx.WithAttemptTimeout: d must be > 0, got 0s\n"+
		"resilient: httpx.WithExecutorOptions: nil option\n"+
		"resilient: httpx.WithExecutorOptions: resilient: WithAttempts: n must be >= 1 or Unlimited, got 0\n"+
		"resilient: httpx.WithExecutorOptions: "+maxDelay.Error())
}
