package core_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/adapter"
)

// Session 9 review (s9-hit, s9-miss): the responses a client receives on
// MISS, HIT, HEAD, 304 and every bypass, written out in a form that does
// not depend on the time, so that the same test run on 7a9d51d (before
// the merges) and on main can be diffed. With RV9_DUMP set, the transcript
// is written to that file; the test itself checks the bypass reasons.

// rv9Handlers are handlers setting different header shapes.
var rv9Handlers = map[string]http.HandlerFunc{
	"plain": func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, "hello ", r.URL.Path)
	},
	"validators": func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Etag", `"v1"`)
		w.Header().Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
		fmt.Fprint(w, "with validators")
	},
	"odd": func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["x-lower"] = []string{"a", "b"}
		h["X-Empty"] = []string{""}
		h["X-Novalue"] = nil
		h["Etag"] = []string{""}
		h["Last-Modified"] = []string{""}
		h.Set("Content-Length", "4")
		fmt.Fprint(w, "odd!")
	},
	"cachecontrol": func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=60")
		w.Header().Set("Vary", "Accept-Language")
		w.Header().Add("X-Multi", "1")
		w.Header().Add("X-Multi", "2")
		fmt.Fprint(w, "cc")
	},
	"tagged": func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Tags", "owner:7 extra")
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"a":1}`)
		w.Header().Set("X-After-Body", "late") // after the commit: neither sent nor stored
	},
	"etagonly": func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `W/"weak"`)
		fmt.Fprint(w, "weak etag")
	},
}

// rv9Configs are region configurations touching the listed path
// (PrepareListed is skipped with CDNHeaders and Compress).
var rv9Configs = map[string]core.RegionConfig{
	"default":  {},
	"cdn":      {CDNHeaders: true},
	"compress": {Compress: true},
	"ucc":      {UseCacheControl: true},
	"tags":     {TagHeaders: []string{"X-Tags"}},
	"sie":      {StaleIfError: time.Minute, Stale: time.Minute},
	"vary":     {VaryHeaders: []string{"Accept-Language"}, VaryCookies: []string{"lang"}, IgnoreCookies: []string{"_ga"}, VaryAuthorization: true},
	"observer": {}, // with an Observer: the general path on every request
}

// rv9Step is one request of a transcript.
type rv9Step struct {
	name   string
	method string
	hdr    http.Header
	body   string
}

func rv9Steps(etag, lm string) []rv9Step {
	s := []rv9Step{
		{name: "miss", method: "GET"},
		{name: "hit", method: "GET"},
		{name: "head-hit", method: "HEAD"},
		{name: "gzip-hit", method: "GET", hdr: http.Header{"Accept-Encoding": {"gzip"}}},
		{name: "auth", method: "GET", hdr: http.Header{"Authorization": {"Bearer x"}}},
		{name: "auth-empty", method: "GET", hdr: http.Header{"Authorization": {""}}},
		{name: "proxy-auth", method: "GET", hdr: http.Header{"Proxy-Authorization": {"x"}}},
		{name: "cookie", method: "GET", hdr: http.Header{"Cookie": {"session=abc"}}},
		{name: "cookie-empty", method: "GET", hdr: http.Header{"Cookie": {""}}},
		{name: "range", method: "GET", hdr: http.Header{"Range": {"bytes=0-1"}}},
		{name: "if-range", method: "GET", hdr: http.Header{"If-Range": {`"v1"`}}},
		{name: "if-match", method: "GET", hdr: http.Header{"If-Match": {"*"}}},
		{name: "ius", method: "GET", hdr: http.Header{"If-Unmodified-Since": {lm}}},
		{name: "upgrade", method: "GET", hdr: http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}}},
		{name: "override", method: "GET", hdr: http.Header{"X-Http-Method-Override": {"DELETE"}}},
		{name: "post", method: "POST"},
		{name: "put", method: "PUT"},
		{name: "body", method: "GET", body: "x"},
		{name: "cc-no-store", method: "GET", hdr: http.Header{"Cache-Control": {"no-store"}}},
		{name: "cc-no-cache", method: "GET", hdr: http.Header{"Cache-Control": {"no-cache"}}},
		{name: "pragma", method: "GET", hdr: http.Header{"Pragma": {"no-cache"}}},
		{name: "vary-lang", method: "GET", hdr: http.Header{"Accept-Language": {"fr"}}},
		{name: "vary-lang-hit", method: "GET", hdr: http.Header{"Accept-Language": {"fr"}}},
		{name: "cookie-lang", method: "GET", hdr: http.Header{"Cookie": {"lang=fr"}}},
		{name: "cookie-lang-hit", method: "GET", hdr: http.Header{"Cookie": {"lang=fr"}}},
		{name: "cookie-ga", method: "GET", hdr: http.Header{"Cookie": {"_ga=1"}}},
		{name: "cookie-ga-sid", method: "GET", hdr: http.Header{"Cookie": {"_ga=1; sid=2"}}},
		{name: "auth-u2", method: "GET", hdr: http.Header{"Authorization": {"Bearer u2"}}},
		{name: "auth-u2-again", method: "GET", hdr: http.Header{"Authorization": {"Bearer u2"}}},
		{name: "auth-u3", method: "GET", hdr: http.Header{"Authorization": {"Bearer u3"}}},
		{name: "hit-again", method: "GET"},
	}
	if etag != "" {
		s = append(s, rv9Step{name: "inm", method: "GET", hdr: http.Header{"If-None-Match": {etag}}},
			rv9Step{name: "inm-head", method: "HEAD", hdr: http.Header{"If-None-Match": {etag}}},
			rv9Step{name: "inm-other", method: "GET", hdr: http.Header{"If-None-Match": {`"nope"`}}})
	}
	if lm != "" {
		s = append(s, rv9Step{name: "ims", method: "GET", hdr: http.Header{"If-Modified-Since": {lm}}})
	}
	return s
}

var rv9TTL = regexp.MustCompile(`(ttl|max-age)=[0-9]+`)

// rv9Dump formats a response without time-dependent values.
func rv9Dump(w *httptest.ResponseRecorder) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d", w.Code)
	h := w.Result().Header
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		vs := h[k]
		switch k {
		case "Date", "Last-Modified":
			if k == "Last-Modified" && len(vs) == 1 && vs[0] == "Mon, 02 Jan 2006 15:04:05 GMT" {
				break
			}
			vs = []string{fmt.Sprintf("<%d values>", len(vs))}
		case "Age":
			vs = []string{"<age>"}
		case "Cache-Status", "Cdn-Cache-Control":
			vs = []string{rv9TTL.ReplaceAllString(strings.Join(vs, ","), "${1}=N")}
		case "Etag":
			if len(vs) == 1 && strings.HasPrefix(vs[0], `"rc-`) {
				vs = []string{"<generated>"}
			}
		}
		fmt.Fprintf(&b, " %s=%q", k, vs)
	}
	fmt.Fprintf(&b, " body=%q", w.Body.String())
	return b.String()
}

func TestReviewS9bResponseTranscript(t *testing.T) {
	var out strings.Builder
	cfgNames := []string{"cdn", "compress", "default", "ucc", "tags", "sie", "observer", "vary"}
	hNames := []string{"cachecontrol", "etagonly", "odd", "plain", "validators", "tagged"}
	for _, cn := range cfgNames {
		for _, hn := range hNames {
			for _, via := range []string{"middleware", "route"} {
				rc := rv9Configs[cn]
				cfg := core.Config{Regions: map[string]core.RegionConfig{"r": rc}, Logger: quietLogger()}
				if cn == "observer" {
					cfg.Observer = core.NopObserver{}
				}
				c, err := core.New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				h := rv9Handlers[hn]
				var serve func(w http.ResponseWriter, req *http.Request)
				if via == "middleware" {
					mw, err := c.Middleware("r")
					if err != nil {
						t.Fatal(err)
					}
					hh := mw(h)
					serve = hh.ServeHTTP
				} else {
					rt, err := c.Route("r")
					if err != nil {
						t.Fatal(err)
					}
					serve = func(w http.ResponseWriter, req *http.Request) {
						_ = adapter.ServeRoute(rt, w, req, mapParams{}, "/p/"+hn, func(w http.ResponseWriter, r *http.Request) error {
							h(w, r)
							return nil
						})
					}
				}
				// The validators the miss answers with, for the conditional steps.
				first := httptest.NewRecorder()
				serve(first, httptest.NewRequest("GET", "/p/"+hn, nil))
				etag, lm := first.Header().Get("Etag"), first.Header().Get("Last-Modified")
				fmt.Fprintf(&out, "== %s %s %s\n", cn, hn, via)
				fmt.Fprintf(&out, "  first: %s\n", rv9Dump(first))
				for _, st := range rv9Steps(etag, lm) {
					var req *http.Request
					if st.body != "" {
						req = httptest.NewRequest(st.method, "/p/"+hn, strings.NewReader(st.body))
					} else {
						req = httptest.NewRequest(st.method, "/p/"+hn, nil)
					}
					for k, vs := range st.hdr {
						req.Header[k] = vs
					}
					w := httptest.NewRecorder()
					serve(w, req)
					fmt.Fprintf(&out, "  %s: %s\n", st.name, rv9Dump(w))
				}
				c.Close()
			}
		}
	}
	if p := os.Getenv("RV9_DUMP"); p != "" {
		if err := os.WriteFile(p, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	// The golden transcript was written by this test run on 7a9d51d,
	// before the s9-hit and s9-miss merges.
	want, err := os.ReadFile("testdata/review_s9b_transcript.golden")
	if err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := 0; i < len(gl) && i < len(wl); i++ {
			if gl[i] != wl[i] {
				t.Fatalf("transcript differs from 7a9d51d's at line %d:\n got %s\nwant %s", i+1, gl[i], wl[i])
			}
		}
		t.Fatalf("transcript length differs: %d lines, want %d", len(gl), len(wl))
	}
}
