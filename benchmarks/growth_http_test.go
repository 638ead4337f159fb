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
// server and its own http.Transport (a clone of http.DefaultTransport) that
// keeps up to two idle connections for every goroutine (MaxIdleConns and
// MaxIdleConnsPerHost = 2·conc), so that connections are reused rather
// than dialled and closed. ns/op is the wall time per request, the inverse of
// the throughput (reported as req/s); B/op and allocs/op count the
// client's and the server's allocations alike (the server is in the same
// process), which is the same for every client.
//
//   - plain: http.Client on the transport.
//   - httpx: NewClient(WithBase(tr), WithExecutor(ex)), ex the executor of
//     scenario 1 (3 attempts, jittered exponential backoff).
//   - httpx-breakers: the same with a breaker per host
//     (WithHostBreakers), which every request looks up and reports to.
//
// conns is the connections the server accepted: each client must keep them
// within 2·conc, or it is dialling instead of reusing.

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

// concTransport is a transport that keeps idle every connection that conc
// goroutines open.
func concTransport(conc int) *http.Transport {
	tr := newTransport()
	tr.MaxIdleConns = maxConcConns(conc)
	tr.MaxIdleConnsPerHost = maxConcConns(conc)
	return tr
}

// maxConcConns is how many connections conc goroutines may open: one each,
// and spares, which net/http dials when a request comes just before a
// connection is handed back to the pool. A transport that keeps fewer idle
// closes the spares, and dials again, all the time.
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
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
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
