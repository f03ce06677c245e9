package core_test

import (
	"compress/gzip"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/routecache/routecache/core"
)

// storeSizes counts the bytes of stored bodies.
type storeSizes struct {
	core.NopObserver
	bytes atomic.Int64
}

func (s *storeSizes) Store(_ string, n int) { s.bytes.Add(int64(n)) }

// words draws n pseudo-random words (seeded: the same text every run), so
// that the bodies below compress like real text, not like a repeated line.
func words(r *rand.Rand, n int) string {
	vocab := strings.Fields(`cache region entry invalidation counter tag route handler origin
		request response header body stale fresh lease backend redis memcached memory
		latency throughput article author title summary list page update delete create
		version snapshot key value hash template query path host scheme proxy client
		server timeout retry breaker window budget bytes seconds minutes hours the a of
		to and in for with on at by from is are was were be been will can may should
		new old first last next previous quick slow large small many few every each`)
	out := make([]string, n)
	for i := range out {
		out[i] = vocab[r.IntN(len(vocab))]
	}
	return strings.Join(out, " ")
}

// realisticJSON is a list page of about n bytes: varied titles, names,
// ids, dates and summaries.
func realisticJSON(n int) string {
	r := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	b.WriteString(`{"articles":[`)
	for i := 0; b.Len() < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"title":%q,"author":{"id":%d,"name":%q},"tags":[%q,%q],"summary":%q,"views":%d,"published":"2026-%02d-%02dT%02d:%02d:%02dZ"}`,
			r.IntN(1e6), words(r, 6), r.IntN(5000), words(r, 2), words(r, 1), words(r, 1), words(r, 24), r.IntN(1e5),
			r.IntN(12)+1, r.IntN(28)+1, r.IntN(24), r.IntN(60), r.IntN(60))
	}
	b.WriteString("]}")
	return b.String()
}

// realisticHTML is a page of about n bytes.
func realisticHTML(n int) string {
	r := rand.New(rand.NewPCG(3, 4))
	var b strings.Builder
	b.WriteString("<!doctype html><html><head><title>Articles</title></head><body><ul>")
	for b.Len() < n {
		fmt.Fprintf(&b, `<li class="article"><a href="/articles/%d">%s</a> <span class="by">by %s</span><p>%s</p></li>`,
			r.IntN(1e6), words(r, 7), words(r, 2), words(r, 30))
	}
	b.WriteString("</ul></body></html>")
	return b.String()
}

func gunzipString(t testing.TB, s string) string {
	t.Helper()
	zr, err := gzip.NewReader(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// compressApp serves body on /page through a region on backend.
func compressApp(t testing.TB, backend string, compress bool, ct, body string, obs core.Observer) (http.Handler, *int) {
	t.Helper()
	rc, err := core.New(core.Config{Observer: obs, Regions: map[string]core.RegionConfig{
		"r": {Backend: backend, Prefix: uniquePrefix(t), Compress: compress},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rc.Close() })
	mw, err := rc.Middleware("r")
	if err != nil {
		t.Fatal(err)
	}
	calls := new(int)
	mux := http.NewServeMux()
	mux.Handle("GET /page", mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*calls++
		w.Header().Set("Content-Type", ct)
		_, _ = io.WriteString(w, body)
	})))
	return mux, calls
}

func serveAE(h http.Handler, method, ae string, hdr ...string) *http.Response {
	req := httptest.NewRequest(method, "/page", nil)
	if ae != "" {
		req.Header.Set("Accept-Encoding", ae)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

// TestCompressMemorySaved: the bytes a region stores for a realistic
// 20 KiB JSON list and HTML page, with and without Compress.
func TestCompressMemorySaved(t *testing.T) {
	for _, tc := range []struct{ name, ct, body string }{
		{"json", "application/json", realisticJSON(20 << 10)},
		{"html", "text/html; charset=utf-8", realisticHTML(20 << 10)},
	} {
		var sizes [2]int64
		for i, compress := range []bool{false, true} {
			obs := &storeSizes{}
			h, _ := compressApp(t, "", compress, tc.ct, tc.body, obs)
			serveAE(h, http.MethodGet, "")
			if res := serveAE(h, http.MethodGet, ""); res.Header.Get("X-Cache") != "HIT" {
				t.Fatalf("%s: not stored (compress %v)", tc.name, compress)
			}
			sizes[i] = obs.bytes.Load()
		}
		t.Logf("%s body %d B: stored %d B without Compress, %d B with (%.1f%%)", tc.name, len(tc.body), sizes[0], sizes[1], 100*float64(sizes[1])/float64(sizes[0]))
		if sizes[0] != int64(len(tc.body)) || sizes[1]*2 > sizes[0] {
			t.Fatalf("%s: stored %d then %d bytes, want the body then under half of it", tc.name, sizes[0], sizes[1])
		}
	}
}

// TestCompressBackends: a gzip and a plain client both HIT a compressing
// region with the right body, on memory and on Redis (the stored value
// decoded per request), with HEAD and 304 per representation.
func TestCompressBackends(t *testing.T) {
	body := realisticJSON(8 << 10)
	backends := map[string]string{"memory": ""}
	if addr := testServerOptional(t, "ROUTECACHE_TEST_REDIS"); addr != "" {
		backends["redis"] = "redis://" + addr + "/0?timeout=2s"
	}
	for name, url := range backends {
		t.Run(name, func(t *testing.T) {
			h, calls := compressApp(t, url, true, "application/json", body, nil)
			if res := serveAE(h, http.MethodGet, ""); res.Header.Get("X-Cache") != "MISS" {
				t.Fatalf("first: %q", res.Header.Get("X-Cache"))
			}
			gz := serveAE(h, http.MethodGet, "gzip, deflate, br")
			plain := serveAE(h, http.MethodGet, "")
			gzBody, _ := io.ReadAll(gz.Body)
			plainBody, _ := io.ReadAll(plain.Body)
			if gz.Header.Get("X-Cache") != "HIT" || gz.Header.Get("Content-Encoding") != "gzip" || gunzipString(t, string(gzBody)) != body {
				t.Fatalf("gzip client: %v", gz.Header)
			}
			if plain.Header.Get("X-Cache") != "HIT" || plain.Header.Get("Content-Encoding") != "" || string(plainBody) != body {
				t.Fatalf("plain client: %v", plain.Header)
			}
			if gz.Header.Get("Content-Length") != fmt.Sprint(len(gzBody)) || plain.Header.Get("Content-Length") != fmt.Sprint(len(body)) {
				t.Fatalf("Content-Length %q / %q for %d / %d bytes", gz.Header.Get("Content-Length"), plain.Header.Get("Content-Length"), len(gzBody), len(body))
			}
			gzTag, plainTag := gz.Header.Get("ETag"), plain.Header.Get("ETag")
			if gzTag == plainTag || !strings.HasSuffix(gzTag, `-gzip"`) {
				t.Fatalf("ETags %s (gzip) and %s (identity)", gzTag, plainTag)
			}
			for _, tc := range []struct{ ae, inm string }{{"gzip", gzTag}, {"", plainTag}} {
				if res := serveAE(h, http.MethodGet, tc.ae, "If-None-Match", tc.inm); res.StatusCode != http.StatusNotModified {
					t.Fatalf("If-None-Match %s with Accept-Encoding %q: %d", tc.inm, tc.ae, res.StatusCode)
				}
			}
			// Another representation's ETag does not match.
			if res := serveAE(h, http.MethodGet, "", "If-None-Match", gzTag); res.StatusCode != http.StatusOK {
				t.Fatalf("the gzip ETag matched the identity representation: %d", res.StatusCode)
			}
			for _, tc := range []struct{ ae, cl string }{{"gzip", fmt.Sprint(len(gzBody))}, {"", fmt.Sprint(len(body))}} {
				res := serveAE(h, http.MethodHead, tc.ae)
				b, _ := io.ReadAll(res.Body)
				if res.Header.Get("X-Cache") != "HIT" || len(b) != 0 || res.Header.Get("Content-Length") != tc.cl {
					t.Fatalf("HEAD %q: %q, %d body bytes, Content-Length %q, want %s", tc.ae, res.Header.Get("X-Cache"), len(b), res.Header.Get("Content-Length"), tc.cl)
				}
			}
			if *calls != 1 {
				t.Fatalf("handler ran %d times, want 1", *calls)
			}
		})
	}
}
