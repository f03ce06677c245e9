// Package gincache compares routecache's Gin adapter with
// github.com/chenyahui/gin-cache on the same route, body and query string
// as ginadapter's BenchmarkGin. It is a module of its own so that the main
// module does not depend on gin-cache; `make bench` and `make bench-instr`
// run it.
package gincache
