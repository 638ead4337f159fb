package redis

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// testLogger takes go-redis's lines for the whole test binary (a test's
// main is the program's, and may set process-wide state): the tests stop
// servers on purpose, and each stop would otherwise print a line per
// failed dial.
var testLogger = NewLogger(slog.New(slog.NewTextHandler(os.Stderr, nil)))

func TestMain(m *testing.M) {
	goredis.SetLogger(testLogger)
	goleak.VerifyTestMain(m)
}

// redisServer is a redis-server process of the test's own, on a free
// loopback port, that the test can stop and start again on the same port
// (and, with persistence, the same data directory).
type redisServer struct {
	t       testing.TB
	port    int
	dir     string
	persist bool
	cmd     *exec.Cmd
	exited  chan struct{}
}

// startRedis starts a redis-server. Without one on PATH the test fails
// when CI is set (the CI must provide it), and is skipped otherwise.
func startRedis(t testing.TB, persist bool) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server is not on PATH (install Debian's redis-server package): %v", err)
		}
		t.Skipf("redis-server is not on PATH; install Debian's redis-server package to run this test")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	s := &redisServer{t: t, port: port, dir: t.TempDir(), persist: persist}
	// Before Start: a server that fails to answer in time is stopped too.
	t.Cleanup(s.Stop)
	s.Start()
	return s
}

func (s *redisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Start starts the server and waits until it answers PING.
func (s *redisServer) Start() {
	s.t.Helper()
	args := []string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--dir", s.dir,
		"--save", "", "--appendonly", "no", "--logfile", ""}
	if s.persist {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	}
	s.cmd = exec.Command("redis-server", args...)
	// A test binary killed by go test's timeout runs no cleanup: the
	// server goes with it instead of living on.
	s.cmd.SysProcAttr = dieWithParent()
	require.NoError(s.t, s.cmd.Start())
	s.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(s.cmd, s.exited)

	// Polled with plain dials first: a go-redis client that failed as many
	// dials as its pool's size stops dialling, and retries once a second.
	// The bound is generous for a loaded machine, and fails loudly.
	start := time.Now()
	deadline := start.Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", s.Addr(), 100*time.Millisecond)
		if err == nil {
			_ = conn.Close()
			break
		}
		select {
		case <-s.exited:
			s.t.Fatalf("redis-server on port %d exited at start", s.port)
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on port %d did not listen within %v: %v", s.port, time.Since(start), err)
		}
		time.Sleep(10 * time.Millisecond) // polling interval of a bounded wait
	}
	c := goredis.NewClient(s.options())
	defer c.Close()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on port %d did not answer within %v: %v", s.port, time.Since(start), err)
		}
		time.Sleep(10 * time.Millisecond) // polling interval of a bounded wait
	}
}

// Stop stops the server (a clean shutdown, which flushes the append-only
// file) and waits for it to exit. A frozen server is thawed first, since a
// stopped process does not act on SIGTERM.
func (s *redisServer) Stop() {
	s.t.Helper()
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT)
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			s.t.Errorf("redis-server on port %d did not exit after SIGKILL", s.port)
		}
	}
	s.cmd = nil
}

// Freeze stops the server process (SIGSTOP) until Thaw: the kernel still
// accepts connections and requests, which the server serves once thawed,
// but nothing answers meanwhile. The test's end thaws it.
func (s *redisServer) Freeze() {
	s.t.Helper()
	require.NotNil(s.t, s.cmd, "the server is not running")
	require.NoError(s.t, s.cmd.Process.Signal(syscall.SIGSTOP))
}

// Thaw resumes a frozen server (SIGCONT).
func (s *redisServer) Thaw() {
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(syscall.SIGCONT)
	}
}

func (s *redisServer) options() *goredis.Options {
	return &goredis.Options{
		Addr:                  s.Addr(),
		ContextTimeoutEnabled: true,
		// Far above a loopback dial, even on a loaded machine; the
		// components' own timeouts bound their calls.
		DialTimeout:              2 * time.Second,
		MaxRetries:               -1,
		DialerRetries:            1,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
}

// Client returns a client of the server, closed when the test ends.
func (s *redisServer) Client() *goredis.Client {
	c := goredis.NewClient(s.options())
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// blackHole listens on a loopback port, accepts connections and never
// answers: a Redis that hangs. It stops when the test ends.
func blackHole(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				for _, c := range conns {
					_ = c.Close()
				}
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("the black hole's goroutine did not stop within 10s")
		}
	})
	return l.Addr().String()
}

// waitGroup waits for wg for at most d, and fails the test loudly if that
// is not enough: a goroutine of the test is stuck.
func waitGroup(t testing.TB, wg *sync.WaitGroup, d time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not finish within %v", what, d)
	}
}

// eventLog records what a component's event hook is told.
//
// Tests wait for the events themselves, never infer them from the
// component's flag: Degraded turns before the hook is told, on another
// goroutine. And they read the log through copies, never holding its lock
// while they assert: a failed assertion that held it (a panic, or
// require's Goexit) would leave the component's goroutine stuck in the
// hook, and the test's cleanup (Close waits for that goroutine) stuck for
// ever. Both together hung a CI run for ten minutes.
type eventLog struct {
	// slow makes the hook take that long before it records an event: the
	// window between the flag and the event that a loaded machine opens,
	// made wide.
	slow time.Duration

	mu     sync.Mutex
	events []Event
}

// hook is the option that feeds the log.
func (l *eventLog) hook() Option {
	return WithEventHook(func(ev Event) {
		time.Sleep(l.slow) // a slow hook, not synchronisation
		l.mu.Lock()
		l.events = append(l.events, ev)
		l.mu.Unlock()
	})
}

// all returns a copy of the events so far.
func (l *eventLog) all() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Event(nil), l.events...)
}

// kinds returns the kinds of the events so far.
func (l *eventLog) kinds() []EventKind {
	var k []EventKind
	for _, ev := range l.all() {
		k = append(k, ev.Kind)
	}
	return k
}

// waitFor waits until the log holds n events, for at most d, and returns
// them.
func (l *eventLog) waitFor(t *testing.T, n int, d time.Duration) []Event {
	t.Helper()
	eventually(t, d, func() bool { return len(l.all()) >= n }, "the hook was not told")
	return l.all()
}
