//go:build race

package echo5adapter_test

// raceEnabled reports a -race build, under which sync.Pool drops items at
// random: allocation counts of the hit path are checked without it.
const raceEnabled = true
