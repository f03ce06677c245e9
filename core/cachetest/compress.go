package cachetest

import (
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/routecache/routecache/core"
)

// GzipPlacement says where a route's gzip middleware runs (Route.Gzip).
type GzipPlacement int

const (
	// GzipNone: no gzip middleware.
	GzipNone GzipPlacement = iota
	// GzipOutside runs the gzip middleware before (outside) the cache: the
	// cache sees the handler's identity response.
	GzipOutside
	// GzipInside runs it after (inside) the cache, next to the handler:
	// the cache records the compressed response.
	GzipInside
)

func (p GzipPlacement) String() string {
	switch p {
	case GzipOutside:
		return "outside"
	case GzipInside:
		return "inside"
	}
	return "none"
}

// jsonBody is a compressible JSON document of about n bytes.
func jsonBody(n int) string {
	var b strings.Builder
	b.WriteString(`{"items":[`)
	for i := 0; b.Len() < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"title":"Article number %d","tags":["news","go","cache"],"published":true}`, i, i)
	}
	b.WriteString("]}")
	return b.String()
}

// decoded returns a response's body in identity coding, failing the test
// when its Content-Encoding is one the client did not accept.
func decoded(t *testing.T, r resp, acceptsGzip bool) string {
	t.Helper()
	switch ce := r.Header.Get("Content-Encoding"); ce {
	case "":
		return r.Body
	case "gzip":
		if !acceptsGzip {
			t.Fatalf("a client that does not accept gzip got Content-Encoding gzip: %v", r)
		}
		zr, err := gzip.NewReader(strings.NewReader(r.Body))
		if err != nil {
			t.Fatalf("gzip body does not decode: %v (%v)", err, r)
		}
		b, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("gzip body does not decode: %v (%v)", err, r)
		}
		return string(b)
	default:
		t.Fatalf("unexpected Content-Encoding %q: %v", ce, r)
	}
	return ""
}

// aeClient is a client by its Accept-Encoding lines.
type aeClient struct {
	lines []string
	gzip  bool // accepts gzip
}

func (c aeClient) hdr() []string {
	var h []string
	for _, l := range c.lines {
		h = append(h, "Accept-Encoding", l)
	}
	return h
}

// aeClients are varied spellings of the two codings the gzip middlewares
// produce; each must get a body it accepts.
var aeClients = []aeClient{
	{[]string{"gzip, deflate, br, zstd"}, true},
	{[]string{"GZIP;q=1.0"}, true},
	{[]string{"br;q=0.9, gzip;q=0.8"}, true},
	{[]string{"deflate", "gzip"}, true},
	{[]string{"*"}, true},
	{[]string{"deflate"}, false},
	{[]string{"identity"}, false},
	{[]string{"gzip;q=0"}, false},
	{[]string{"gzip;q=0.000, identity"}, false},
	{[]string{"*;q=0, identity"}, false},
}

// compression: with the front's gzip middleware outside or inside the
// cache, a route is cached and every client gets a body in a coding it
// accepted; the stored variants are bounded by the codings, not by the
// spellings of Accept-Encoding.
func (s *suite) compression(t *testing.T) {
	for _, place := range []GzipPlacement{GzipOutside, GzipInside} {
		t.Run("middleware-"+place.String(), func(t *testing.T) { s.gzipPlacement(t, place, false) })
	}
	for _, place := range []GzipPlacement{GzipNone, GzipOutside, GzipInside} {
		t.Run("region-middleware-"+place.String(), func(t *testing.T) { s.gzipPlacement(t, place, true) })
	}
	t.Run("region-not-compressed", s.compressSkips)
}

// gzipPlacement: a gzip and a plain client each get a HIT with the right
// body, in a coding they accept, whatever the placement; compress sets
// the region's Compress.
func (s *suite) gzipPlacement(t *testing.T, place GzipPlacement, compress bool) {
	want := jsonBody(4 << 10)
	var calls counter
	e := s.setup(t, map[string]core.RegionConfig{"gz": {Compress: compress}}, App{Routes: []Route{
		{Method: "GET", Path: "/gz", Cache: Cached("gz"), Gzip: place, Handler: func(w http.ResponseWriter, r *http.Request, _ func(string) string) {
			calls.inc()
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, want)
		}},
	}})
	gz := aeClient{[]string{"gzip"}, true}
	plain := aeClient{}
	check := func(c aeClient, r resp, xcache string) resp {
		t.Helper()
		if r.Status != 200 || r.cache() != xcache {
			t.Fatalf("Accept-Encoding %q: got %v, want 200 %s", c.lines, r, xcache)
		}
		// Outside, the middleware encodes every response as it sees fit
		// (the usual ones only look for "gzip" in Accept-Encoding).
		accepts := c.gzip || place == GzipOutside && strings.Contains(strings.Join(c.lines, ","), "gzip")
		if got := decoded(t, r, accepts); got != want {
			t.Fatalf("Accept-Encoding %q: %s body differs after decoding (%d bytes, want %d)", c.lines, xcache, len(got), len(want))
		}
		return r
	}
	// A gzip client then a plain one: each fills at most once.
	check(gz, e.get("/gz", gz.hdr()...), "MISS")
	gzHit := check(gz, e.get("/gz", gz.hdr()...), "HIT")
	if r := e.get("/gz"); r.cache() != "HIT" {
		check(plain, r, "MISS")
	}
	plainHit := check(plain, e.get("/gz"), "HIT")
	maxCalls := int64(2) // inside: one entry per coding
	if compress || place == GzipOutside {
		maxCalls = 1 // one entry serves both
	}
	if n := calls.load(); n > maxCalls {
		t.Fatalf("origin ran %d times for a gzip and a plain client, want at most %d", n, maxCalls)
	}
	if place != GzipOutside {
		if gzHit.Header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("the gzip client's HIT is not compressed: %v", gzHit)
		}
		if ce := plainHit.Header.Get("Content-Encoding"); ce != "" {
			t.Fatalf("the plain client's HIT has Content-Encoding %q", ce)
		}
		for _, r := range []resp{gzHit, plainHit} {
			if got := r.Header.Get("Content-Length"); got != strconv.Itoa(len(r.Body)) {
				t.Fatalf("HIT Content-Length %q for a %d-byte body", got, len(r.Body))
			}
		}
	}
	if compress {
		for _, r := range []resp{gzHit, plainHit} {
			if !strings.Contains(strings.Join(r.Header.Values("Vary"), ","), "Accept-Encoding") {
				t.Fatalf("HIT of a compressing region without Vary: Accept-Encoding: %v", r.Header)
			}
		}
	}
	// Every other spelling hits one of those entries.
	for _, c := range aeClients {
		check(c, e.get("/gz", c.hdr()...), "HIT")
	}
	// Many distinct Accept-Encoding values: no new entry, no origin call.
	before := calls.load()
	for i := range 40 {
		c := aeClient{[]string{fmt.Sprintf("gzip;q=0.%d, identity;q=0.%d, x-custom-%d", i%9+1, i%7+1, i)}, true}
		check(c, e.get("/gz", c.hdr()...), "HIT")
	}
	if n := calls.load(); n != before {
		t.Fatalf("distinct Accept-Encoding values called the origin %d more times", n-before)
	}
	if st := e.stats("gz"); st.Stores > uint64(maxCalls) {
		t.Fatalf("%d entries stored, want at most %d", st.Stores, maxCalls)
	}
	// HEAD and 304 answer from the client's own variant.
	for _, c := range []struct {
		cl  aeClient
		hit resp
	}{{gz, gzHit}, {plain, plainHit}} {
		hd := e.do(http.MethodHead, "/gz", c.cl.hdr()...)
		if hd.Status != 200 || hd.cache() != "HIT" || hd.Body != "" {
			t.Fatalf("HEAD %q: %v, want an empty 200 HIT", c.cl.lines, hd)
		}
		if place != GzipOutside {
			if got, want := hd.Header.Get("Content-Length"), strconv.Itoa(len(c.hit.Body)); got != want {
				t.Fatalf("HEAD %q: Content-Length %q, want the GET's %q", c.cl.lines, got, want)
			}
		}
		if et := c.hit.Header.Get("ETag"); et != "" {
			nm := e.get("/gz", append(c.cl.hdr(), "If-None-Match", et)...)
			if nm.Status != http.StatusNotModified || nm.cache() != "HIT" || nm.Body != "" {
				t.Fatalf("If-None-Match %s (%q): %v, want 304 HIT", et, c.cl.lines, nm)
			}
		}
	}
	// Outside, the validators are the middleware's business.
	if place != GzipOutside && gzHit.Header.Get("ETag") == plainHit.Header.Get("ETag") &&
		gzHit.Header.Get("Content-Encoding") != plainHit.Header.Get("Content-Encoding") &&
		!strings.HasPrefix(gzHit.Header.Get("ETag"), "W/") {
		t.Fatalf("one strong ETag %s for two encodings", gzHit.Header.Get("ETag"))
	}
}

// compressSkips: a compressing region stores small bodies and binary
// types as written, and a miss says Vary: Accept-Encoding too.
func (s *suite) compressSkips(t *testing.T) {
	small := `{"ok":true}`
	png := strings.Repeat("\x89PNG fake image bytes ", 100)
	e := s.setup(t, map[string]core.RegionConfig{"gz": {Compress: true}}, App{Routes: []Route{
		{Method: "GET", Path: "/small", Cache: Cached("gz"), Handler: func(w http.ResponseWriter, r *http.Request, _ func(string) string) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, small)
		}},
		{Method: "GET", Path: "/png", Cache: Cached("gz"), Handler: func(w http.ResponseWriter, r *http.Request, _ func(string) string) {
			w.Header().Set("Content-Type", "image/png")
			_, _ = io.WriteString(w, png)
		}},
	}})
	for path, want := range map[string]string{"/small": small, "/png": png} {
		miss := e.get(path, "Accept-Encoding", "gzip")
		e.expect(miss, 200, "MISS", want)
		for _, r := range []resp{miss, e.get(path, "Accept-Encoding", "gzip"), e.get(path)} {
			if r.Body != want || r.Header.Get("Content-Encoding") != "" {
				t.Fatalf("%s: %v, want the body as written", path, r)
			}
			if !strings.Contains(strings.Join(r.Header.Values("Vary"), ","), "Accept-Encoding") {
				t.Fatalf("%s: no Vary: Accept-Encoding on %v", path, r)
			}
		}
	}
}
