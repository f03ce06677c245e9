package core_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/adapter"
)

func keyOf(t testing.TB, rt *core.Route, method, target string, p adapter.Params, hdr ...string) string {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	if p == nil {
		p = noParams
	}
	k, _, ok := core.CanonicalKey(rt, req, p, "/p")
	if !ok {
		t.Fatalf("no key for %s %s", method, target)
	}
	return k
}

func TestDefaultKeyDistinguishesRequests(t *testing.T) {
	rt := testRoute(t, core.RegionConfig{VaryHeaders: []string{"Accept-Language"}})
	pairs := [][2]string{
		{"/a?a=1&b=2", "/a?a=1%26b%3D2"},
		{"/a/b", "/a%2Fb"},
		{"/a?x=1", "/a?x=1&x=2"},
		{"/a?x=1&x=2", "/a?x=2&x=1"},
		{"/a?a=1;b=2", "/a?a=1&b=2"},
		{"/a?a=1;b=2", "/a?a=1%3Bb%3D2"},
		{"/a?", "/a?="},
		{"/a", "/a?x"},
		{"/ab", "/a?b"},
		{"/a%20", "/a+"},
	}
	for _, p := range pairs {
		if k1, k2 := keyOf(t, rt, "GET", p[0], nil), keyOf(t, rt, "GET", p[1], nil); k1 == k2 {
			t.Errorf("%q and %q share key %q", p[0], p[1], k1)
		}
	}
	// Vary header values and forwarded host are keyed; separators in them cannot collide.
	a := keyOf(t, rt, "GET", "/a", nil, "Accept-Language", "en", "Accept-Language", "fr")
	b := keyOf(t, rt, "GET", "/a", nil, "Accept-Language", "en\x00fr")
	c := keyOf(t, rt, "GET", "/a", nil, "Accept-Language", "en")
	if a == b || a == c || b == c {
		t.Errorf("vary values collide: %q %q %q", a, b, c)
	}
	if keyOf(t, rt, "GET", "/a", nil, "X-Forwarded-Host", "evil.example") == keyOf(t, rt, "GET", "/a", nil) {
		t.Error("X-Forwarded-Host is not keyed")
	}
	if keyOf(t, rt, "POST", "/a", nil) == keyOf(t, rt, "GET", "/a", nil) {
		t.Error("method not keyed")
	}
}

func TestDefaultKeyCanonical(t *testing.T) {
	rt := testRoute(t, core.RegionConfig{})
	canon := testRoute(t, core.RegionConfig{CanonicalQuery: true})
	same := [][2]string{
		{"/a?b=2&a=1", "/a?a=1&b=2"},
		{"/a?a=%41", "/a?a=A"},
		{"/a?a=x+y", "/a?a=x%20y"},
	}
	for _, p := range same {
		if k1, k2 := keyOf(t, canon, "GET", p[0], nil), keyOf(t, canon, "GET", p[1], nil); k1 != k2 {
			t.Errorf("CanonicalQuery: %q and %q should share a key: %q vs %q", p[0], p[1], k1, k2)
		}
		// By default the query is keyed as sent: Echo's QueryString
		// tells these apart.
		if k1, k2 := keyOf(t, rt, "GET", p[0], nil), keyOf(t, rt, "GET", p[1], nil); k1 == k2 {
			t.Errorf("%q and %q share a key by default", p[0], p[1])
		}
	}
	if keyOf(t, rt, "HEAD", "/a", nil) != keyOf(t, rt, "GET", "/a", nil) {
		t.Error("HEAD does not share GET's key")
	}
}

func TestTemplateKeyEscapesValues(t *testing.T) {
	rt := testRoute(t, core.RegionConfig{}, core.Key("a:{x}:{y}"))
	k1 := keyOf(t, rt, "GET", "/", mapParams{"x": "1:2", "y": "3"})
	k2 := keyOf(t, rt, "GET", "/", mapParams{"x": "1", "y": "2:3"})
	if k1 == k2 {
		t.Fatalf("param values with separators collide: %q", k1)
	}
	rtq := testRoute(t, core.RegionConfig{}, core.Key("p:{query:page}:{header:X-T}"))
	if keyOf(t, rtq, "GET", "/?page=1", nil, "X-T", "a") == keyOf(t, rtq, "GET", "/?page=1", nil, "X-T", "b") {
		t.Error("header placeholder not keyed")
	}
	if keyOf(t, rtq, "GET", "/?page=1", nil) == keyOf(t, rtq, "GET", "/?page=2", nil) {
		t.Error("query placeholder not keyed")
	}
	// A missing route parameter is a bypass, not an empty value.
	req := httptest.NewRequest("GET", "/", nil)
	if _, _, ok := core.CanonicalKey(rt, req, mapParams{"x": "1"}, "/"); ok {
		t.Error("missing param produced a key")
	}
}

func TestAuthorizationKeyedByHashOnly(t *testing.T) {
	rt := testRoute(t, core.RegionConfig{VaryAuthorization: true})
	a := keyOf(t, rt, "GET", "/me", nil, "Authorization", "Bearer alice-secret")
	b := keyOf(t, rt, "GET", "/me", nil, "Authorization", "Bearer bob-secret")
	if a == b {
		t.Fatal("principals share a key")
	}
	if strings.Contains(a, "alice-secret") {
		t.Fatal("raw credential stored in the key")
	}
}
