package core

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/routecache/routecache/core/backend"
)

type mapParams map[string]string

func (m mapParams) Get(n string) (string, bool) { v, ok := m[n]; return v, ok }

func testRoute(t testing.TB, rc RegionConfig, opts ...RouteOption) *Route {
	t.Helper()
	c, err := New(Config{Regions: map[string]RegionConfig{"r": rc}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rt, err := c.Route("r", opts...)
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

func TestParseTemplateErrors(t *testing.T) {
	for _, bad := range []string{"", "a{", "a}", "{}", "{query:}", "{header:}", "{foo:bar}", "{a b}"} {
		if _, err := parseTemplate(bad); err == nil {
			t.Errorf("parseTemplate(%q): no error", bad)
		} else if bad != "" && !strings.HasPrefix(err.Error(), "routecache: ") {
			t.Errorf("error %q lacks prefix", err)
		}
	}
	tp, err := parseTemplate("{{lit}}:{id}")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := tp.expand(httptest.NewRequest("GET", "/", nil), mapParams{"id": "7"})
	if got != "{lit}:7" {
		t.Fatalf("got %q", got)
	}
}

// FuzzKey checks that two different requests never share a key: a key
// must determine the request's method class, path, canonical query and
// keyed header values.
func FuzzKey(f *testing.F) {
	f.Add("/a", "a=1&b=2", "/a", "a=1%26b%3D2", "en", "en")
	f.Add("/a/b", "", "/a%2Fb", "", "", "")
	f.Add("/a", "a=1;b=2", "/a", "a=1&b=2", "x", "y")
	f.Add("/x", "p=%zz", "/x", "p=%25zz", "", "")
	f.Add("/1:2", "", "/1", ":2", "a\x00b", "a")
	f.Add("/a", "a=1&a=2&b=x+y~", "/a", "b=x+y~&a=1&a=2", "", "")
	f.Add("/a/<%41", "", "/a/%3CA", "", "", "")
	f.Add("/a/%41", "q=1", "/a/A", "q=1", "", "")
	rt := testRoute(f, RegionConfig{VaryHeaders: []string{"X-V"}})
	canon := testRoute(f, RegionConfig{VaryHeaders: []string{"X-V"}, CanonicalQuery: true})
	f.Fuzz(func(t *testing.T, p1, q1, p2, q2, h1, h2 string) {
		r1, ok1 := fuzzReq(p1, q1, h1)
		r2, ok2 := fuzzReq(p2, q2, h2)
		if !ok1 || !ok2 {
			return
		}
		// The path as sent (Path and RawPath: what any router reads), the
		// query as sent (or canonical with CanonicalQuery), the keyed
		// header lines.
		samePath := r1.URL.Path == r2.URL.Path && r1.URL.RawPath == r2.URL.RawPath
		sameHeader := reflect.DeepEqual(r1.Header.Values("X-V"), r2.Header.Values("X-V"))
		for _, c := range []struct {
			rt        *Route
			sameQuery bool
		}{
			{rt, r1.URL.RawQuery == r2.URL.RawQuery},
			{canon, canonicalQuery(r1.URL.RawQuery) == canonicalQuery(r2.URL.RawQuery)},
		} {
			k1, _, _ := c.rt.canonicalKey(r1, noParams, "/p")
			k2, _, _ := c.rt.canonicalKey(r2, noParams, "/p")
			if same := samePath && c.sameQuery && sameHeader; (k1 == k2) != same {
				t.Fatalf("key equality %v but requests equal %v:\n%q\n%q", k1 == k2, same, k1, k2)
			}
		}
		// The allocation-free fast path agrees with the full canonicaliser.
		if isCanonicalQuery(q1) && canonicalQuerySlow(q1) != q1 {
			t.Fatalf("fast path kept %q, slow path gives %q", q1, canonicalQuerySlow(q1))
		}
		if got, want := isCanonicalQuery(q1), isCanonicalQueryRef(q1); got != want {
			t.Fatalf("isCanonicalQuery(%q) = %v, reference says %v", q1, got, want)
		}
		// A canonical query that parses must describe the same values.
		if v1, err := parseQ(q1); err == nil {
			if v2, err := parseQ(canonicalQuery(q1)); err != nil || v1 != v2 {
				t.Fatalf("canonical query changed values: %q -> %q", q1, canonicalQuery(q1))
			}
		}
	})
}

func fuzzReq(path, query, hv string) (*http.Request, bool) {
	if path == "" || path[0] != '/' || strings.ContainsAny(path, "?# \t\r\n") || strings.ContainsAny(query, "# \t\r\n") {
		return nil, false
	}
	target := path
	if query != "" {
		target += "?" + query
	}
	req, err := http.NewRequest("GET", "http://h"+target, nil)
	if err != nil {
		return nil, false
	}
	if hv != "" {
		for _, v := range strings.Split(hv, "\x00") {
			req.Header.Add("X-V", v)
		}
	}
	return req, true
}

// parseQ renders parsed values sorted by name with per-name order kept.
func parseQ(q string) (string, error) {
	vals, err := url.ParseQuery(q)
	if err != nil {
		return "", err
	}
	names := make([]string, 0, len(vals))
	for k := range vals {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, k := range names {
		b.WriteString(strconv.Quote(k))
		for _, v := range vals[k] {
			b.WriteString("," + strconv.Quote(v))
		}
		b.WriteString(";")
	}
	return b.String(), nil
}

// FuzzEscapeFastPaths checks the key builder's table-driven shortcuts
// against the standard library they stand in for.
func FuzzEscapeFastPaths(f *testing.F) {
	for _, s := range []string{"", "/articles/42", "/a b", "/a%2Fb", "*", "/x?y", "/é", "a+b", "/$&+,:;=@", "~-_.", "/a//b/../c"} {
		f.Add(s, "")
		f.Add(s, "/raw")
	}
	f.Fuzz(func(t *testing.T, s, raw string) {
		if got, want := string(appendQueryEscaped(nil, s)), url.QueryEscape(s); got != want {
			t.Fatalf("appendQueryEscaped(%q) = %q, want %q", s, got, want)
		}
		u := &url.URL{Path: s, RawPath: raw}
		if got, want := canonicalPath(u), (&url.URL{Path: s}).EscapedPath(); got != want {
			t.Fatalf("canonicalPath(%q, raw %q) = %q, want %q", s, raw, got, want)
		}
	})
}

// isCanonicalQueryRef is the plain statement of what isCanonicalQuery
// decides in one pass: name=value pairs split on '&' (no empty pair, no
// trailing '&'), exactly one '=' and a non-empty name in each, names and
// values of unreserved characters and '+', names in sorted order.
func isCanonicalQueryRef(raw string) bool {
	prev := ""
	for _, pair := range strings.Split(raw, "&") {
		if raw == "" {
			return true
		}
		name, value, ok := strings.Cut(pair, "=")
		if !ok || name == "" || strings.Contains(value, "=") || !allOf(name, classQuery) || !allOf(value, classQuery) || name < prev {
			return false
		}
		prev = name
	}
	return true
}

func TestIsCanonicalQuery(t *testing.T) {
	for _, q := range []string{"", "a=1", "a=1&b=2", "b=2&a=1", "a=1&", "&a=1", "a", "=1", "a=1=2", "a=&b=", "a=1&a=0",
		"a=1&&b=2", "a+b=c+d", "a=%20", "a=1;b=2", "page=2&sort=title", "a=1&b"} {
		if got, want := isCanonicalQuery(q), isCanonicalQueryRef(q); got != want {
			t.Errorf("isCanonicalQuery(%q) = %v, want %v", q, got, want)
		}
	}
}

// FuzzRemoteCounterNames checks build's shortcut for remote counter names
// (escaped values and pre-checked fixed parts skip the printable scan)
// against Region.counterName applied to the logical names.
func FuzzRemoteCounterNames(f *testing.F) {
	f.Add("p", "article:{id}", "42", "/articles/42")
	f.Add("p q", "a b:{id}", "x y", "/a b/\x01")
	f.Add("p", "t:{method}", "é", "/"+strings.Repeat("x", 230))
	f.Add("", "{header:X-V}:{query:q}:{path}", "%", "/%2F")
	f.Fuzz(func(t *testing.T, prefix, tag, param, path string) {
		if strings.ContainsAny(prefix, ":") || prefix == "" {
			prefix = "p" + strings.ReplaceAll(prefix, ":", "")
		}
		c, err := New(Config{Regions: map[string]RegionConfig{"r": {Backend: "redis://127.0.0.1:1/0", Prefix: prefix}}})
		if err != nil {
			t.Skip(err)
		}
		defer c.Close()
		rt, err := c.Route("r", Tags(tag))
		if err != nil {
			return
		}
		req := httptest.NewRequest("GET", "/", nil)
		req.URL.Path, req.URL.RawPath = path, ""
		req.URL.RawQuery = "q=" + url.QueryEscape(param)
		req.Header.Set("X-V", param)
		req.SetPathValue("id", param)
		st := getState()
		defer putState(st)
		if !rt.build(st, req, pathValues{R: req}, "/p") {
			return
		}
		r := rt.r
		built := []span{st.keyName}
		idx := []int{1}
		j := 0
		for i, tg := range rt.tags {
			if !tg.static {
				built, idx = append(built, st.tagNames[j]), append(idx, 2+i)
				j++
			}
		}
		for k, sp := range built {
			i := idx[k]
			logical := string(st.nbuf[sp.s:sp.e])
			if want := r.counterName(logical); st.names[i] != want {
				t.Fatalf("name %d: built %q, counterName gives %q", i, st.names[i], want)
			}
		}
	})
}

// TestStorageKeyIn checks the allocation-free storage key against the
// plain one, on a remote and an in-process region.
func TestStorageKeyIn(t *testing.T) {
	for _, beURL := range []string{"redis://127.0.0.1:1/0", ""} {
		c, err := New(Config{Regions: map[string]RegionConfig{"r": {Backend: beURL, Prefix: "p"}}})
		if err != nil {
			t.Fatal(err)
		}
		r := c.regions["r"]
		for _, canonical := range []string{"", "k", strings.Repeat("\x00é", 300)} {
			st := getState()
			if got, want := r.storageKeyIn(st, canonical), r.storageKey(canonical); got != want {
				t.Errorf("backend %q: storageKeyIn(%q) = %q, want %q", beURL, canonical, got, want)
			}
			putState(st)
			if got, want := backend.EntryKey("p:", canonical), "p:e:"+hashKey(canonical); got != want {
				t.Errorf("entryKey = %q, want %q", got, want)
			}
		}
		c.Close()
	}
}

// The keyed headers are encoded the same whichever way they are looked up
// (none, a few request headers, more request headers than keyed ones).
func TestKeyedHeadersEncoding(t *testing.T) {
	rt := testRoute(t, RegionConfig{VaryHeaders: []string{"X-V", "Accept-Language"}})
	r := rt.r
	naive := func(h http.Header) []byte {
		kb := keyBuilder{}
		for _, name := range r.keyedHeaders {
			kb.values(h[name])
		}
		return kb.b
	}
	many := http.Header{}
	for i := 0; i < 40; i++ {
		many.Add(fmt.Sprintf("X-Filler-%d", i), "v")
	}
	many["X-Forwarded-For"] = []string{"a", "b"}
	for _, h := range []http.Header{
		nil,
		{"Accept": {"*/*"}},
		{"X-V": {""}, "Accept": {"*/*"}},
		{"X-Real-Ip": {"1", "2"}, "Accept-Language": {"en", "fr"}, "Forwarded": {"for=x"}},
		many,
	} {
		kb := keyBuilder{}
		r.appendKeyedHeaders(&kb, h)
		if want := naive(h); string(kb.b) != string(want) {
			t.Fatalf("%v: %q, want %q", h, kb.b, want)
		}
	}
}
