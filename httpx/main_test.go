package httpx

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: a
// connection left in use, a shared execution, a timer's goroutine.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
