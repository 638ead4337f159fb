package main

import (
	"testing"

	"github.com/resilient-go/resilient/chaos"
	"github.com/stretchr/testify/require"
)

func mustTimeline(t *testing.T, s string) chaos.Timeline {
	t.Helper()
	tl, err := chaos.ParseTimeline(s)
	require.NoError(t, err)
	return tl
}
