package difftest

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// fuzzPairs are the in-process apps the fuzzer drives: every front,
// cached on the memory backend and uncached, built once per process and
// reset (every region invalidated) before each input.
var (
	fuzzOnce  sync.Once
	fuzzPairs []*pair
)

func fuzzSetup(tb testing.TB) []*pair {
	fuzzOnce.Do(func() {
		for _, f := range fronts {
			rc := newCache(tb, "") // lives as long as the process
			fuzzPairs = append(fuzzPairs, &pair{
				front: f.name, backend: "memory", rc: rc,
				cached:    handlerDoer(recovering(f.build(tb, rc, false))),
				plain:     handlerDoer(recovering(f.build(tb, nil, false))),
				inProcess: true,
			})
		}
	})
	if len(fuzzPairs) != len(fronts) {
		tb.Fatal("routecache: fuzz apps failed to build")
	}
	return fuzzPairs
}

// recovering answers 599 for a handler panic, as a server would drop the
// connection: a panic is then a response like any other, compared
// between the apps, instead of ending the fuzzer.
func recovering(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				w.WriteHeader(599)
				fmt.Fprintf(w, "panic: %v", v)
			}
		}()
		h.ServeHTTP(w, r)
	})
}

// fuzzLines turns a fuzzed header block into at most 8 raw header lines.
func fuzzLines(block string) []string {
	if block == "" {
		return nil
	}
	lines := strings.Split(block, "\n")
	if len(lines) > 8 {
		lines = lines[:8]
	}
	return lines
}

// FuzzTransparency checks the transparency property on fuzzed request
// pairs: a request-target and a block of raw header lines ("\n"
// separated, kept verbatim: duplicates, lowercase names, empty values)
// for each of two requests, and whether each is a HEAD (bits 0 and 1 of
// heads). On every front, from an empty cache, the pair is sent in both
// orders (the first request stored, then the other possibly served its
// entry) to the cached and the uncached app, parsed from the raw bytes by
// http.ReadRequest, and every pair of answers must agree. The seed corpus
// is the TCP corpus's case/partner pairs.
func FuzzTransparency(f *testing.F) {
	byName := caseByName(corpus)
	for _, c := range corpus {
		p, ok := byName[c.partner]
		if !ok {
			continue
		}
		var heads byte
		if c.verb() == http.MethodHead {
			heads |= 1
		}
		if p.verb() == http.MethodHead {
			heads |= 2
		}
		f.Add(heads, c.target, strings.Join(c.lines, "\n"), p.target, strings.Join(p.lines, "\n"))
	}
	f.Fuzz(func(t *testing.T, heads byte, target1, lines1, target2, lines2 string) {
		if len(target1)+len(lines1)+len(target2)+len(lines2) > 4096 {
			return
		}
		a := reqCase{name: "fuzz-1", target: target1, lines: fuzzLines(lines1)}
		b := reqCase{name: "fuzz-2", target: target2, lines: fuzzLines(lines2)}
		if heads&1 != 0 {
			a.method = http.MethodHead
		}
		if heads&2 != 0 {
			b.method = http.MethodHead
		}
		for _, p := range fuzzSetup(t) {
			report(t, p.front, runPair(t, p, a, b))
		}
	})
}
