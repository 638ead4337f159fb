package chaos_test

import (
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/resilient-go/resilient/chaos"
)

// The fault schedule is a pure function of the seed: the same logical
// request meets the same faults at every upstream built with that seed.
func ExampleConfig_Decide() {
	cfg := chaos.DefaultConfig(1)
	cfg.Timeline = chaos.Timeline{{Kind: chaos.Throttling, Duration: time.Minute}}
	cfg.Profiles[chaos.Throttling] = chaos.Profile{Throttled: 0.5}
	for n := 1; n <= 4; n++ {
		d := cfg.Decide(0, "order-17", n)
		fmt.Println(n, d.Fault, d.RetryAfter, d.HTTPDate)
	}
	// Output:
	// 1 none 0s false
	// 2 none 0s false
	// 3 throttled 2s false
	// 4 throttled 4s false
}

// An Upstream is an http.Handler: tests can serve it in memory (inside a
// testing/synctest bubble, its phases run on fake time) or on loopback
// with Start.
func ExampleUpstream() {
	cfg := chaos.DefaultConfig(1)
	cfg.Timeline = chaos.Timeline{{Kind: chaos.Healthy, Duration: time.Minute}}
	up, err := chaos.New(cfg)
	if err != nil {
		panic(err)
	}
	for range 2 {
		req := httptest.NewRequest("POST", "/orders", nil)
		req.Header.Set(chaos.RequestIDHeader, "order-17") // the same logical request, twice
		rec := httptest.NewRecorder()
		up.ServeHTTP(rec, req)
		fmt.Println(rec.Code)
	}
	s := up.Stats().Total
	fmt.Println("received", s.Received, "executed", s.Executed, "duplicates", s.Duplicates)
	// Output:
	// 200
	// 200
	// received 2 executed 2 duplicates 1
}
