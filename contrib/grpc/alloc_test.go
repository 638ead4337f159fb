package grpc

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// maxExtraAllocs is what the interceptor may add to a successful unary
// call: grpc-go copies the option list once a call has any option (the
// interceptor adds its trailer, for pushback, and, for a call that is not
// safe to repeat, the peer), and copies the trailers into the one the
// interceptor gave. The interceptor's own state is recycled.
const maxExtraAllocs = 2

// The interceptor adds at most maxExtraAllocs allocations to a successful
// unary call, whether the call is safe to repeat or not, over bufconn.
func TestUnaryAllocs(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("measures allocations, which -race makes vary")
	}
	e := startServer(t, bufTransport)
	plain := e.client()
	ours := e.client(MustNew(quick()).DialOptions()...)
	ctx := testCtx(t)
	req, reply := wrapperspb.String("x"), new(wrapperspb.StringValue)
	allocs := func(cc *grpc.ClientConn, method string) float64 {
		for range 100 { // warm: the connection, the route, grpc's pools
			require.NoError(t, cc.Invoke(ctx, method, req, reply))
		}
		return testing.AllocsPerRun(500, func() {
			if err := cc.Invoke(ctx, method, req, reply); err != nil {
				t.Fatal(err)
			}
		})
	}
	for _, m := range []string{mGet, mCreate} {
		base, got := allocs(plain, m), allocs(ours, m)
		t.Logf("%s: %.1f allocs without the interceptor, %.1f with", m, base, got)
		assert.LessOrEqual(t, got-base, float64(maxExtraAllocs)+0.5, m)
	}
}
