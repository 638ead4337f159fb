package benchmarks

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/resilient-go/resilient"
	"github.com/resilient-go/resilient/httpx"
)

// Growth: HTTP GET over loopback under 64 and 256 concurrent requests.
//
// The scenario 6 job (GET a small resource, read the body, close it), made
// by conc goroutines at once through one client. Each client gets a fresh
// server and its own http.Transport (a clone of http.DefaultTransport)
// with conc connections, dialled before the timer starts and reused for
// every request (see concTransport). ns/op is the wall time per request,
// the inverse of the throughput (reported as req/s); B/op and allocs/op
// count the client's and the server's allocations alike (the server is in
// the same process), which is the same for every client.
//
//   - plain: http.Client on the transport.
//   - httpx: NewClient(WithBase(tr), WithExecutor(ex)), ex the executor of
//     scenario 1 (3 attempts, jittered exponential backoff).
//   - httpx-breakers: the same with a breaker per host
//     (WithHostBreakers), which every request looks up and reports to.
//
// conns is the connections the server accepted: conc (the benchmark fails
// beyond 2·conc).

// growthConcurrency are the numbers of requests in flight measured.
var growthConcurrency = []int{64, 256}

type concHTTPLib struct {
	name  string
	build func(rt http.RoundTripper) *http.Client
}

var concHTTPLibs = []concHTTPLib{
	{"plain", func(rt http.RoundTripper) *http.Client { return &http.Client{Transport: rt} }},
	{"httpx", func(rt http.RoundTripper) *http.Client {
		return httpx.NewClient(httpx.WithBase(rt), httpx.WithExecutor(scenario1Executor()))
	}},
	{"httpx-breakers", func(rt http.RoundTripper) *http.Client {
		return httpx.NewClient(httpx.WithBase(rt), httpx.WithExecutor(scenario1Executor()),
			httpx.WithHostBreakers(resilient.MustNewBreakers(100, time.Minute)))
	}},
}

func scenario1Executor() *resilient.Executor {
	return resilient.MustNew(
		resilient.WithAttempts(attempts),
		resilient.WithBackoff(resilient.Exponential(base, capDelay)),
	)
}

// concTransport is a transport that opens at most conc connections
// (MaxConnsPerHost) and keeps them all idle between requests: a request
// that finds none idle waits for one to come back rather than dial. So
// every client has the same conc connections, however the race between a
// request and the return of a connection to the pool goes (without the
// bound, net/http dials a spare whenever a request wins it, and the
// clients' numbers of dials, each a TCP handshake, differ from run to run).
func concTransport(conc int) *http.Transport {
	tr := newTransport()
	tr.MaxConnsPerHost = conc
	tr.MaxIdleConns = conc
	tr.MaxIdleConnsPerHost = conc
	return tr
}

// maxConcConns is how many connections a client of conc goroutines may
// open in all: the transport holds conc at once, and the bound leaves room
// for a connection that breaks (on this loaded machine) to be replaced. A
// client that leaves a body open holds its connection, and stalls once it
// holds them all: the benchmark's context then ends it.
func maxConcConns(conc int) int { return 2 * conc }

// concGet makes one GET through c and checks its status.
func concGet(ctx context.Context, c *http.Client, url string) error {
	resp, err := get(ctx, c, url)
	if err != nil {
		return err
	}
	code, err := readAndClose(resp)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("status %d", code)
	}
	return err
}

// warm makes rounds of conc requests at once, so that every connection the
// benchmark needs is dialled before it starts.
func warm(ctx context.Context, c *http.Client, url string, conc, rounds int) error {
	errs := make(chan error, conc)
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for range rounds {
				if err := concGet(ctx, c, url); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// BenchmarkGrowthHTTP is GET over loopback with 64 and 256 requests in
// flight at once, through a plain http.Client and through httpx.
func BenchmarkGrowthHTTP(b *testing.B) {
	for _, conc := range growthConcurrency {
		for _, l := range concHTTPLibs {
			b.Run(fmt.Sprintf("conc=%d/lib=%s", conc, l.name), func(b *testing.B) {
				u := newUpstream(false)
				defer u.Close()
				tr := concTransport(conc)
				defer tr.CloseIdleConnections()
				c := l.build(tr)
				// Bounds a client that stalls (see maxConcConns).
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				if err := warm(ctx, c, u.URL, conc, 10); err != nil {
					b.Fatal(err)
				}
				runtime.GC()
				b.SetParallelism(max(1, conc/runtime.GOMAXPROCS(0)))
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := concGet(ctx, c, u.URL); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
				b.ReportMetric(float64(u.conns.Load()), "conns")
				if got, limit := u.conns.Load(), int64(maxConcConns(conc)); got > limit {
					b.Fatalf("%d connections for %d requests in flight, want at most %d", got, conc, limit)
				}
			})
		}
	}
}
