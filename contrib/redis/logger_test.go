package redis

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// captured is a slog handler that keeps the records it is given.
type captured struct {
	mu      sync.Mutex
	level   slog.Level
	records []slog.Record
}

func (c *captured) Enabled(_ context.Context, l slog.Level) bool { return l >= c.level }
func (c *captured) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.records = append(c.records, r.Clone())
	return nil
}
func (c *captured) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *captured) WithGroup(string) slog.Handler      { return c }

// lines returns each record's message and its "suppressed" count.
func (c *captured) lines() (msgs []string, suppressed []int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.records {
		msgs = append(msgs, r.Message)
		var n int64
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "suppressed" {
				n = a.Value.Int64()
			}
			return true
		})
		suppressed = append(suppressed, n)
	}
	return msgs, suppressed
}

const dialFormat = "redis: connection pool: failed to dial after %d attempts: %v"

func TestLoggerCollapsesRepeatedLines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &captured{}
		g := NewLogger(slog.New(h))
		ctx := context.Background()
		// An outage: a failed dial every 10ms for 25s, and one other line.
		for i := range 2500 {
			g.Printf(ctx, dialFormat, 1, "connect: connection refused")
			if i == 5 {
				g.Printf(ctx, "redis: %s", "something else")
			}
			time.Sleep(10 * time.Millisecond)
		}
		msgs, suppressed := h.lines()
		want := "redis: connection pool: failed to dial after 1 attempts: connect: connection refused"
		assert.Equal(t, []string{want, "redis: something else", want, want}, msgs)
		assert.Equal(t, []int64{0, 0, 999, 999}, suppressed, "each line tells how many of its kind were left out")
	})
}

func TestLoggerLevelsAndDefaults(t *testing.T) {
	h := &captured{level: slog.LevelError}
	NewLogger(slog.New(h)).Printf(context.Background(), dialFormat, 1, "x")
	msgs, _ := h.lines()
	assert.Empty(t, msgs, "a logger that does not enable Warn gets nothing")

	h = &captured{}
	prev := slog.Default()
	t.Cleanup(func() { slog.SetDefault(prev) })
	g := NewLogger(nil)
	slog.SetDefault(slog.New(h)) // nil: slog.Default at the time of the line
	//lint:ignore SA1012 go-redis passes a nil context in places: the input under test
	g.Printf(nil, "redis: %d", 1)
	msgs, _ = h.lines()
	assert.Equal(t, []string{"redis: 1"}, msgs)
}

// The kinds a Logger tells apart are bounded: beyond, lines are written
// as they come.
func TestLoggerKindsAreBounded(t *testing.T) {
	h := &captured{}
	g := NewLogger(slog.New(h))
	for i := range maxLogKinds + 10 {
		g.Printf(context.Background(), "redis: kind %d"+string(rune('a'+i%26))+string(rune('a'+i/26%26)), i)
	}
	g.Printf(context.Background(), "redis: one more %d", 1)
	g.Printf(context.Background(), "redis: one more %d", 2)
	msgs, _ := h.lines()
	assert.Len(t, msgs, maxLogKinds+10+2)
	g.mu.Lock()
	assert.Len(t, g.kinds, maxLogKinds)
	g.mu.Unlock()
}

// Through go-redis itself: a client dialling a Redis that is gone writes
// its "failed to dial" lines through the Logger, collapsed.
func TestLoggerReceivesGoRedisLines(t *testing.T) {
	srv := startRedis(t, false)
	h := &captured{}
	goredis.SetLogger(NewLogger(slog.New(h)))
	t.Cleanup(func() { goredis.SetLogger(testLogger) })
	rdb := srv.Client()
	srv.Stop()
	// Fewer dials than the pool's size (10 per CPU): beyond, go-redis starts
	// a goroutine that probes once a second, and outlives the client by up
	// to a second.
	for range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		require.Error(t, rdb.Ping(ctx).Err())
		cancel()
	}
	msgs, suppressed := h.lines()
	require.NotEmpty(t, msgs)
	dials := 0
	for _, m := range msgs {
		if assert.Contains(t, m, "127.0.0.1:") {
			dials++
		}
	}
	assert.Equal(t, 1, dials, "5 failed dials, one line: %v (suppressed %v)", msgs, suppressed)
}
