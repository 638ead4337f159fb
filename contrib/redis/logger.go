package redis

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// LogInterval is how often a [Logger] writes a line of one kind at most.
const LogInterval = 10 * time.Second

// maxLogKinds bounds the kinds of line a [Logger] tells apart; lines of
// further kinds are written without being collapsed.
const maxLogKinds = 256

// Logger writes go-redis's log lines through a [slog.Logger], collapsed:
// at most one line of each kind (go-redis's format string, such as its
// "failed to dial" line) per [LogInterval], at [slog.LevelWarn]; the next
// line of that kind carries, as "suppressed", how many were left out
// meanwhile. A Redis outage then costs a line per interval and kind
// instead of one per failed dial.
//
// go-redis logs through one process-wide logger, set by redis.SetLogger.
// Decision: this package never calls it. A library must not change
// process-wide state that the application owns: the application's own
// go-redis clients log through that logger too, and the application (or
// another library) setting it later would silently undo the change. The
// application routes the lines itself, once, in main:
//
//	goredis.SetLogger(resilientredis.NewLogger(slog.Default()))
//
// A Logger is safe for concurrent use.
type Logger struct {
	l *slog.Logger

	mu    sync.Mutex
	kinds map[string]*logKind // by format string
}

type logKind struct {
	last       time.Time // when a line of the kind was last written
	suppressed int       // lines left out since
}

// NewLogger returns a Logger that writes through l (nil means
// slog.Default() at the time of each line).
func NewLogger(l *slog.Logger) *Logger {
	return &Logger{l: l, kinds: make(map[string]*logKind)}
}

// Printf implements go-redis's logging interface (see redis.SetLogger).
func (g *Logger) Printf(ctx context.Context, format string, v ...any) {
	l := g.l
	if l == nil {
		l = slog.Default()
	}
	if ctx == nil {
		ctx = context.Background()
	}
	if !l.Enabled(ctx, slog.LevelWarn) {
		return
	}
	suppressed, ok := g.admit(format, time.Now())
	if !ok {
		return
	}
	msg := fmt.Sprintf(format, v...)
	if suppressed > 0 {
		l.LogAttrs(ctx, slog.LevelWarn, msg, slog.Int("suppressed", suppressed))
		return
	}
	l.LogAttrs(ctx, slog.LevelWarn, msg)
}

// admit decides whether a line of kind format is written now, and returns
// how many of its kind were left out since the last one written.
func (g *Logger) admit(format string, now time.Time) (suppressed int, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	k := g.kinds[format]
	if k == nil {
		if len(g.kinds) >= maxLogKinds {
			return 0, true
		}
		k = &logKind{}
		g.kinds[format] = k
	} else if now.Sub(k.last) < LogInterval {
		k.suppressed++
		return 0, false
	}
	suppressed, k.suppressed, k.last = k.suppressed, 0, now
	return suppressed, true
}
