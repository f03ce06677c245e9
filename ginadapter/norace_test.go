//go:build !race

package ginadapter_test

// raceEnabled reports a -race build (see race_test.go).
const raceEnabled = false
