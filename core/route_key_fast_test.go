package core

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// The bytes build encodes once (Region.keyHeadGETt, keyHeadGETd and
// keyTailPlain) are the ones the general encoding gives: a key built
// through the fast paths, build's and the stack key of a keyed hit
// (appendStackKey), equals the key built field by field.
func TestKeyFastPathsEqualGeneralEncoding(t *testing.T) {
	configs := []struct {
		name string
		rc   RegionConfig
		opts []RouteOption
	}{
		{"plain", RegionConfig{}, nil},
		{"template", RegionConfig{}, []RouteOption{Key("a:{query:x}"), Tags("t:{id}", "s")}},
		{"vary", RegionConfig{VaryHeaders: []string{"X-V"}}, nil},
		{"coding", RegionConfig{VaryHeaders: []string{"Accept-Encoding"}}, nil},
		{"cookies", RegionConfig{VaryCookies: []string{"sid"}}, nil},
		{"authorization", RegionConfig{VaryAuthorization: true}, nil},
		{"keyfunc", RegionConfig{}, []RouteOption{KeyFunc(func(*http.Request) string { return "tenant" })}},
	}
	many := http.Header{}
	for i := 0; i < 20; i++ {
		many.Add(fmt.Sprintf("X-Filler-%d", i), "v")
	}
	headers := []http.Header{
		nil,
		{"Accept": {"*/*"}, "User-Agent": {"x"}},
		{"X-V": {"1"}},
		{"X-Forwarded-Host": {"evil.example"}},
		{"Accept-Encoding": {"gzip"}},
		{"Cookie": {"sid=1"}},
		{"Authorization": {"Bearer t"}},
		many,
	}
	// Paths that need escaping, spelled as sent or not: the key holds the
	// decoded path (URL.Path) and RawPath, on every path alike. A target in
	// absolute form is keyed as sent, never on the stack.
	targets := []string{"/a/42?x=1&y=2", "/a/4%32", "/a/caf%C3%A9?q=%20", "/a/x%20y", "/a/x%2520y", "/a/x%2Fy", "/a/%7e", "http://h.example/a/42?x=1&y=2"}
	for _, cfg := range configs {
		rt := testRoute(t, cfg.rc, cfg.opts...)
		for _, method := range []string{"GET", "HEAD", "POST"} {
			for _, h := range headers {
				for _, withTLS := range []bool{false, true} {
					for _, target := range targets {
						keyFastPaths(t, cfg.name, rt, method, target, h, withTLS)
					}
				}
			}
		}
	}
}

// keyFastPaths is TestKeyFastPathsEqualGeneralEncoding's check of one
// request.
func keyFastPaths(t *testing.T, name string, rt *Route, method, target string, h http.Header, withTLS bool) {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	req.Header = h.Clone()
	if withTLS {
		req.TLS = &tls.ConnectionState{}
	}
	p := mapParams{"id": "42"}
	fast, _, ok := rt.canonicalKey(req, p, "/a/:id")
	if !ok {
		t.Fatalf("%s: no key", name)
	}
	want := generalKey(t, rt, req, p, "/a/:id")
	if fast != want {
		t.Errorf("%s %s %s %v tls=%v:\n fast    %q\n general %q", name, method, target, h, withTLS, fast, want)
	}
	// The key a keyed hit builds on the stack (serveKeyed, for a route
	// of the default key), when it builds one: always for a plain request.
	if rt.key != nil {
		return
	}
	var buf [stackKeyBytes]byte
	sk, ok := rt.appendStackKey(buf[:0], req, "/a/:id")
	if ok && string(sk) != want {
		t.Errorf("%s %s %s %v tls=%v:\n stack   %q\n general %q", name, method, target, h, withTLS, sk, want)
	}
	never := withTLS || !rt.plainTail || target[0] != '/'
	plain := name == "plain" && !withTLS && target[0] == '/' && (h == nil || h["User-Agent"] != nil)
	if ok && never || !ok && plain {
		t.Errorf("%s %s %s %v tls=%v: stack key built %v", name, method, target, h, withTLS, ok)
	}
}

// generalKey is build's key with every part encoded field by field, as
// before the fast paths: the head and kind, then (for the default key)
// the request's parts, then appendTail.
func generalKey(t *testing.T, rt *Route, req *http.Request, p params, pattern string) string {
	t.Helper()
	r := rt.r
	kb := keyBuilder{b: append([]byte(nil), r.keyHead...)}
	kb.field(cacheMethod(req.Method))
	if rt.key != nil {
		kb.field("t")
		v, ok := rt.key.expand(req, p)
		if !ok {
			t.Fatal("template does not expand")
		}
		kb.field(v)
		if rt.key.exact {
			rt.key.appendExact(&kb, req)
		}
	} else {
		kb.field("d")
		kb.field(req.Host)
		kb.field(pattern)
		kb.field(req.URL.Path)
		kb.field(req.URL.RawPath)
		kb.field(req.URL.RawQuery)
	}
	keyed, masked := r.keyedMask(req.Header)
	rt.appendTail(&kb, req, keyed, masked)
	return string(kb.b)
}

// keyedMask agrees with a lookup of every keyed header, whichever of the
// two maps it iterates.
func TestKeyedMask(t *testing.T) {
	rt := testRoute(t, RegionConfig{VaryHeaders: []string{"X-V"}})
	r := rt.r
	naive := func(h http.Header) (m uint64) {
		for i, name := range r.keyedHeaders {
			if _, ok := h[name]; ok {
				m |= 1 << i
			}
		}
		return m
	}
	many := http.Header{}
	for i := 0; i < 40; i++ {
		many.Add(fmt.Sprintf("X-Filler-%d", i), "v")
	}
	manyKeyed := many.Clone()
	manyKeyed["X-V"] = []string{""}
	manyKeyed["Forwarded"] = []string{"for=x"}
	for _, h := range []http.Header{
		nil,
		{"Accept": {"*/*"}},
		{"X-V": {""}},
		{"X-Real-Ip": {"1"}, "Accept": {"*/*"}, "X-Forwarded-For": {"a", "b"}},
		many,
		manyKeyed,
	} {
		got, masked := r.keyedMask(h)
		if want := naive(h); got != want || !masked {
			t.Errorf("%v: keyedMask %b (%v), want %b", h, got, masked, want)
		}
	}
}
