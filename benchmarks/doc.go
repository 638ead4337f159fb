// Package benchmarks runs the same scenarios through resilient and through
// its peer libraries, side by side, in one go test -bench run.
package benchmarks
