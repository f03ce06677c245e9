// Package repocheck holds tests of the repository itself rather than of
// the library: no build output is committed, and the ones `go build`
// leaves in the examples are ignored.
package repocheck
