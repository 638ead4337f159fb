package resilient_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/resilient-go/resilient"
)

// snake is what a label value of ours looks like: lower case words joined
// by underscores.
var snake = regexp.MustCompile(`^[a-z]+(_[a-z]+)*$`)

// TestLabels pins every label value, which dashboards depend on: each is
// snake_case, distinct within its kind, and spells the String form with
// underscores for its spaces and dashes.
func TestLabels(t *testing.T) {
	type value struct {
		label, str string
	}
	var reasons, outcomes, sources, states []value
	for r := resilient.ReasonSuccess; r <= resilient.ReasonRejected; r++ {
		reasons = append(reasons, value{r.Label(), r.String()})
	}
	for o := resilient.Success; o <= resilient.Ignore; o++ {
		outcomes = append(outcomes, value{o.Label(), o.String()})
	}
	for _, s := range []resilient.DelaySource{resilient.FromBackoff, resilient.FromHint} {
		sources = append(sources, value{s.Label(), s.String()})
	}
	for s := resilient.StateClosed; s <= resilient.StateDisabled; s++ {
		states = append(states, value{s.Label(), s.String()})
	}
	labels := func(vs []value) []string {
		var out []string
		for _, v := range vs {
			out = append(out, v.label)
		}
		return out
	}
	assert.Equal(t, []string{"success", "exhausted", "permanent", "canceled", "deadline", "max_elapsed", "retry_after_too_long", "rejected"}, labels(reasons))
	assert.Equal(t, []string{"success", "retry", "fail", "ignore"}, labels(outcomes))
	assert.Equal(t, []string{"backoff", "hint"}, labels(sources))
	assert.Equal(t, []string{"closed", "open", "half_open", "forced_open", "disabled"}, labels(states))

	underscores := strings.NewReplacer(" ", "_", "-", "_")
	for _, vs := range [][]value{reasons, outcomes, sources, states} {
		seen := map[string]bool{}
		for _, v := range vs {
			assert.Regexp(t, snake, v.label)
			assert.False(t, seen[v.label], "%q twice", v.label)
			seen[v.label] = true
			assert.Equal(t, underscores.Replace(v.str), v.label, "the label of %q", v.str)
		}
	}
	for _, p := range []string{resilient.PolicyBreaker, resilient.PolicyBudget, resilient.PolicyThrottle, resilient.PolicyBulkhead, resilient.PolicyOther} {
		assert.Regexp(t, snake, p, "policy names are label values too")
	}
}

// TestLabelsOutOfRange: a value the package does not define still gets a
// snake_case label, never a panic.
func TestLabelsOutOfRange(t *testing.T) {
	assert.Equal(t, "reason_200", resilient.Reason(200).Label())
	assert.Equal(t, "outcome_200", resilient.Outcome(200).Label())
	assert.Equal(t, "state_200", resilient.State(200).Label())
	assert.Equal(t, "backoff", resilient.DelaySource(200).Label())
}

func ExampleState_Label() {
	fmt.Println(resilient.StateHalfOpen.String(), resilient.StateHalfOpen.Label())
	fmt.Println(resilient.ReasonMaxElapsed.String()+",", resilient.ReasonMaxElapsed.Label())
	// Output:
	// half-open half_open
	// max elapsed, max_elapsed
}
