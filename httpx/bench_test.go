package httpx

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/resilient-go/resilient"
)

// Benchmarks compare a plain http.Client with an httpx client over
// loopback, each with its own http.Transport, on two paths: success at
// once, and 503, 503, 200 (the plain client retrying by hand, at once, as
// the httpx client is told to with Constant(0)). Compare with
//
//	go test -run '^$' -bench Loopback -benchmem -count 10 ./httpx > bench.txt
//	go run golang.org/x/perf/cmd/benchstat@latest -col /client bench.txt

func BenchmarkLoopback(b *testing.B) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/flaky" && hits.Add(1)%3 != 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "busy")
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()

	zero := resilient.MustNew(resilient.WithBackoff(resilient.Constant(0)))
	clients := []struct {
		name string
		new  func(*http.Transport) *http.Client
		do   func(*http.Client, string) (*http.Response, error)
	}{
		{"plain", func(t *http.Transport) *http.Client { return &http.Client{Transport: t} }, plainRetry},
		{"httpx", func(t *http.Transport) *http.Client { return NewClient(WithBase(t), WithExecutor(zero)) },
			func(c *http.Client, url string) (*http.Response, error) { return c.Get(url) }},
	}
	for _, path := range []struct{ name, url string }{
		{"success", srv.URL + "/ok"},
		{"503-503-200", srv.URL + "/flaky"},
	} {
		for _, c := range clients {
			b.Run("path="+path.name+"/client="+c.name, func(b *testing.B) {
				tr := &http.Transport{}
				defer tr.CloseIdleConnections()
				client := c.new(tr)
				hits.Store(0)
				b.ReportAllocs()
				for b.Loop() {
					resp, err := c.do(client, path.url)
					if err != nil {
						b.Fatal(err)
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Fatal(resp.Status)
					}
				}
			})
		}
	}
}

// plainRetry is what a plain client does by hand: retry a 503 at once,
// draining and closing the discarded response.
func plainRetry(c *http.Client, url string) (*http.Response, error) {
	for {
		resp, err := c.Get(url)
		if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
			return resp, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
}

// BenchmarkTransportOverhead measures the Transport alone, over an
// in-memory base that allocates nothing.
func BenchmarkTransportOverhead(b *testing.B) {
	base := &staticRT{resp: http.Response{StatusCode: 200, Body: http.NoBody}}
	req, err := http.NewRequest(http.MethodGet, "http://api.test/x", nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"base", base},
		{"httpx", &Transport{Base: base}},
		{"httpx-no-host-budget", mustTransport(WithBase(base), WithoutHostBudget())},
		{"httpx-host-breakers", mustTransport(WithBase(base), WithHostBreakers(resilient.MustNewBreakers(8, 1<<40)))},
		{"httpx-recommended", mustTransport(WithBase(base), Recommended())},
	} {
		b.Run("rt="+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.rt.RoundTrip(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func mustTransport(opts ...Option) *Transport {
	t, err := NewTransport(opts...)
	if err != nil {
		panic(err)
	}
	return t
}

// BenchmarkHosts measures the per-host policies (the default budget) as the
// hosts grow: requests cycle through hosts distinct hosts. Within the bound
// (DefaultMaxHosts) each request finds its host's policies; beyond it, a
// request to a host forgotten meanwhile builds them again. B/host is the
// memory one host's policies take.
func BenchmarkHosts(b *testing.B) {
	base := &staticRT{resp: http.Response{StatusCode: 200, Body: http.NoBody}}
	for _, hosts := range []int{1, 100, DefaultMaxHosts, 2 * DefaultMaxHosts} {
		b.Run(fmt.Sprintf("hosts=%d", hosts), func(b *testing.B) {
			reqs := make([]*http.Request, hosts)
			for i := range reqs {
				var err error
				if reqs[i], err = http.NewRequest(http.MethodGet, fmt.Sprintf("http://host-%d.test/x", i), nil); err != nil {
					b.Fatal(err)
				}
			}
			tr := mustTransport(WithBase(base))
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			for _, req := range reqs[:min(hosts, DefaultMaxHosts)] {
				if _, err := tr.RoundTrip(req); err != nil {
					b.Fatal(err)
				}
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			perHost := float64(after.HeapAlloc-before.HeapAlloc) / float64(min(hosts, DefaultMaxHosts))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := tr.RoundTrip(reqs[i]); err != nil {
					b.Fatal(err)
				}
				if i++; i == hosts {
					i = 0
				}
			}
			b.ReportMetric(perHost, "B/host")
		})
	}
}
