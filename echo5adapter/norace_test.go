//go:build !race

package echo5adapter_test

// raceEnabled reports a -race build (see race_test.go).
const raceEnabled = false
