//go:build !race

package core

// observerTestRace reports a -race build (see observer_race_test.go).
const observerTestRace = false
