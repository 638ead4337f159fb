package resilient_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilient-go/resilient"
)

// requireOptionErrors checks that err reports exactly the invalid options
// named, in order: err matches ErrInvalidOption, errors.As finds the first
// of them, and each error it joins (at any depth) is an *OptionError named
// as listed.
func requireOptionErrors(t *testing.T, err error, options ...string) {
	t.Helper()
	require.Error(t, err)
	assert.ErrorIs(t, err, resilient.ErrInvalidOption)
	var oe *resilient.OptionError
	require.ErrorAs(t, err, &oe)
	assert.Equal(t, options[0], oe.Option, "errors.As finds the first")
	assert.Equal(t, options, optionNames(t, err))
}

// optionNames lists the options of the *OptionErrors err joins, in order.
func optionNames(t *testing.T, err error) []string {
	t.Helper()
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var names []string
		for _, e := range j.Unwrap() {
			names = append(names, optionNames(t, e)...)
		}
		return names
	}
	var oe *resilient.OptionError
	if !errors.As(err, &oe) {
		t.Errorf("not an *OptionError: %v", err)
		return nil
	}
	assert.NotEmpty(t, oe.Err.Error(), "it says what is wrong")
	return []string{oe.Option}
}

// TestBreakerOptionsAllReported: NewBreaker and NewBreakers report every
// problem together, those of options checked against each other included.
func TestBreakerOptionsAllReported(t *testing.T) {
	_, err := resilient.NewBreaker(resilient.WithFailureRate(2), resilient.WithCountWindow(10),
		resilient.WithMinCalls(20), resilient.WithOpenDuration(time.Minute),
		resilient.WithOpenBackoff(time.Second, resilient.FullJitter))
	requireOptionErrors(t, err, "WithFailureRate", "WithMinCalls", "WithOpenBackoff")
	_, err = resilient.NewBreakers(0, 0, resilient.WithHalfOpenProbes(0))
	requireOptionErrors(t, err, "NewBreakers", "NewBreakers", "WithHalfOpenProbes")
}
