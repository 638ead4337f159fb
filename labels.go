package resilient

import "strconv"

// Metric label values.
//
// Every metrics sink of the library (TextMetrics here, and the
// contrib/prometheus and contrib/otel modules) labels its series with
// these values, so that one dashboard serves them all. Prometheus and
// OpenTelemetry both want label values in snake_case, lower case with
// underscores; the String forms are for people (messages, logs, JSON
// snapshots) and keep their spaces and dashes.
//
// The values are stable: a release may add values (for a new Reason,
// say) but never renames one. They are here, exported, rather than in each
// adapter, so that an adapter built against one version of this module
// labels as the core of any later version does (see RELEASING.md).

var reasonLabels = [...]string{
	ReasonSuccess:     "success",
	ReasonExhausted:   "exhausted",
	ReasonPermanent:   "permanent",
	ReasonCanceled:    "canceled",
	ReasonDeadline:    "deadline",
	ReasonMaxElapsed:  "max_elapsed",
	ReasonHintTooLong: "retry_after_too_long",
	ReasonRejected:    "rejected",
}

// Label returns the reason as a metric label value: "success",
// "exhausted", "permanent", "canceled", "deadline", "max_elapsed",
// "retry_after_too_long" or "rejected"; "reason_N" for a value the
// package does not define.
func (r Reason) Label() string {
	if int(r) < len(reasonLabels) {
		return reasonLabels[r]
	}
	return "reason_" + strconv.Itoa(int(r))
}

var outcomeLabels = [...]string{
	Unclassified: "unclassified",
	Success:      "success",
	Retry:        "retry",
	Fail:         "fail",
	Ignore:       "ignore",
}

// Label returns the outcome as a metric label value: "success", "retry",
// "fail" or "ignore" ("unclassified" never labels an attempt); "outcome_N"
// for a value the package does not define.
func (o Outcome) Label() string {
	if int(o) < len(outcomeLabels) {
		return outcomeLabels[o]
	}
	return "outcome_" + strconv.Itoa(int(o))
}

// Label returns the delay source as a metric label value: "backoff" or
// "hint".
func (s DelaySource) Label() string {
	if s == FromHint {
		return "hint"
	}
	return "backoff"
}

var stateLabels = [...]string{
	StateClosed:     "closed",
	StateOpen:       "open",
	StateHalfOpen:   "half_open",
	StateForcedOpen: "forced_open",
	StateDisabled:   "disabled",
}

// Label returns the state as a metric label value: "closed", "open",
// "half_open", "forced_open" or "disabled"; "state_N" for a value the
// package does not define.
func (s State) Label() string {
	if s < numStates {
		return stateLabels[s]
	}
	return "state_" + strconv.Itoa(int(s))
}
