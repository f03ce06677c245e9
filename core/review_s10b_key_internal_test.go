package core

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
)

// Two request targets Go's server accepts, for the same host and query,
// share a default key only if their handlers see the same path in every
// form (Path, RawPath, EscapedPath, RequestURI), and share a key counter
// exactly when their decoded paths are equal (InvalidateKey of that path
// reaches every spelling).
func TestReviewS10bDefaultKeyOneToOneOverTargets(t *testing.T) {
	rt := testRoute(t, RegionConfig{})
	parts := []string{"a", "%61", "%2F", "/", "%25", "%2525", "%", "\xe9", "%e9", "%E9", "%C3%A9", "+", "%2B", ";", "%3B", "//", ".", "..", "#", "%23", "%20", "~", "%7E", "%7e", ":", "%3A", "@", "%40", "!", "%00"}
	type seen struct{ uri, path string }
	keys := map[string]seen{}
	counters := map[string]string{}
	n := 0
	for _, a := range parts {
		for _, b := range parts {
			for _, c := range []string{"", "x"} {
				target := "/" + a + b + c
				req, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + target + " HTTP/1.1\r\nHost: h\r\n\r\n")))
				if err != nil {
					continue // refused by the server
				}
				n++
				key, _, ok := rt.canonicalKey(req, nil, "/*")
				if !ok {
					t.Fatalf("%q: no key", target)
				}
				uri := req.RequestURI
				if s, ok := keys[key]; ok && s.uri != uri {
					t.Errorf("targets %q and %q share a key", s.uri, uri)
				}
				keys[key] = seen{uri, req.URL.Path}
				cp := canonicalPath(req.URL)
				if p, ok := counters[cp]; ok && p != req.URL.Path {
					t.Errorf("paths %q and %q share the key counter %q", p, req.URL.Path, cp)
				}
				counters[cp] = req.URL.Path
			}
		}
	}
	if n < 100 {
		t.Fatalf("only %d targets accepted", n)
	}
}
