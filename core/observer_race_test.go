//go:build race

package core

// observerTestRace reports a -race build, where sync.Pool drops items at
// random and allocation counts of pooled paths are not reproducible.
const observerTestRace = true
