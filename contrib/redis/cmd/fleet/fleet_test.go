package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestMain lets the test binary be a replica too, as the command is: the
// experiment starts replicas by running its own executable.
func TestMain(m *testing.M) {
	if cfg, ok, err := replicaFromEnv(); ok {
		if err == nil {
			err = runReplica(cfg, os.Stdout, os.Stderr)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "fleet replica:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

func TestBadFlagsExit2(t *testing.T) {
	for _, args := range [][]string{
		{"-replicas", "0"}, {"-heavy", "7"}, {"-heavy-rate", "0"}, {"-light-rate", "NaN"},
		{"-open", "1ms"}, {"-probes", "0"}, {"-scale", "100"}, {"-nope"}, {"extra"},
	} {
		var stderr bytes.Buffer
		assert.Equal(t, 2, run(context.Background(), args, &bytes.Buffer{}, &stderr), "%v", args)
		assert.NotEmpty(t, stderr.String(), "%v", args)
	}
}

// A short run of the whole experiment (about 20s): four replica processes
// against a real redis-server. What is checked is what the shared
// breaker promises, with room for a loaded machine; the comparison with
// local breakers is printed.
func TestShortRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes and runs for about 20s")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server is not on PATH: %v", err)
		}
		t.Skip("redis-server is not on PATH")
	}
	o, err := parse([]string{"-replicas", "4", "-heavy", "1", "-heavy-rate", "100", "-light-rate", "5",
		"-scale", "0.5", "-open", "2s", "-stall", "1s"}, os.Stderr)
	require.NoError(t, err)
	self, err := os.Executable()
	require.NoError(t, err)
	e, err := newExperiment(o, self, os.Stderr)
	require.NoError(t, err)
	defer e.close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	local, shared, err := e.run(ctx)
	require.NoError(t, err)
	var out bytes.Buffer
	report(&out, o, local, shared)
	t.Log("\n" + out.String())

	assert.Zero(t, local.goroutinesLeft+shared.goroutinesLeft, "goroutines left in the replicas")
	require.NotZero(t, shared.stall, "Redis was not stalled")
	assert.Positive(t, shared.inFlightAtStall, "nothing was in flight when Redis stalled")
	// The target: serving again within one open duration of Redis's return.
	assert.LessOrEqual(t, shared.lastRefusalAfter, o.open)
	assert.NotEqual(t, never, shared.allServedAfter)
	assert.LessOrEqual(t, shared.allServedAfter, o.open)
	// The fleet trips once for everyone: every light replica refuses soon
	// after the trip (within a few sync intervals).
	for _, d := range shared.lightRefused {
		assert.NotEqual(t, never, d)
		assert.Less(t, d, time.Second)
	}
	assert.True(t, strings.Contains(out.String(), "shared breaker"))
}
