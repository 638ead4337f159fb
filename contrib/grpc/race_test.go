//go:build race

package grpc

// raceEnabled: the race detector's instrumentation makes grpc-go's own
// allocations vary by a few from one run to the next, so allocation counts
// are checked without it (CI runs every module's tests without -race too).
const raceEnabled = true
