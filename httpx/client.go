package httpx

import (
	"context"
	"fmt"
	"net/http"
)

// NewClient returns a plain *http.Client whose Transport is a [Transport]
// built with opts: nothing new to learn, and every library that takes an
// *http.Client gets retries. It follows up to [MaxRedirects] redirects, as
// net/http's default does, then stops with [ErrTooManyRedirects].
//
// NewClient cannot return an error: with an invalid option every request of
// the client fails, without being sent, with the error [NewTransport] would
// have returned (it names the option). Use NewTransport to check options
// when they are built.
func NewClient(opts ...Option) *http.Client {
	t, err := NewTransport(opts...)
	if err != nil {
		t = &Transport{cfg: &config{err: err}}
	}
	return &http.Client{Transport: t, CheckRedirect: checkRedirect}
}

func checkRedirect(_ *http.Request, via []*http.Request) error {
	if len(via) >= MaxRedirects {
		return fmt.Errorf("%w: stopped after %d", ErrTooManyRedirects, MaxRedirects)
	}
	return nil
}

// defaultClient serves Get and Do. Its configuration is never modified;
// its per-host budgets are shared by every caller of Get and Do.
var defaultClient = NewClient()

// Get sends a GET request for url with the default policy (see the package
// doc) over http.DefaultTransport. Like [http.Get], it returns the response
// whatever its status (after retries of the retryable ones); the caller
// must close its body. Get and [Do] share one client, as http.Get and
// http.Post share http.DefaultClient: a host's retry budget is spent and
// earned by every call of either in the process.
func Get(ctx context.Context, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return defaultClient.Do(req)
}

// Do sends req with the default policy (see the package doc) over
// http.DefaultTransport, as [http.Client.Do] does, retrying what is safe to
// retry. A nil req is an error matching [ErrInvalidRequest], never a panic.
func Do(req *http.Request) (*http.Response, error) {
	if req == nil {
		return nil, fmt.Errorf("%w: nil request", ErrInvalidRequest)
	}
	return defaultClient.Do(req)
}
