//go:build race

package otelcache_test

// raceEnabled reports a -race build.
const raceEnabled = true
