package core

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/routecache/routecache/core/backend"
)

// A fill's entry whose headers setMiss listed as it took them
// (routeFront.prepare, backend.Entry.PrepareListed) replays the same
// headers, in the same order, and is charged the same MemSize, as one
// whose headers Prepare lists by walking the map: whatever headers the
// handler set (none, validators of its own, one without a value, more
// than the entry's arrays hold, a Content-Length), or that were set
// before the cache ran.
func TestFillEntryListedAsPrepareLists(t *testing.T) {
	cases := map[string]func(h http.Header){
		"plain":          func(h http.Header) { h["Content-Type"] = []string{"text/plain"} },
		"none":           func(h http.Header) {},
		"etag":           func(h http.Header) { h["Etag"] = []string{`"x"`} },
		"empty etag":     func(h http.Header) { h["Etag"] = []string{""} },
		"last-modified":  func(h http.Header) { h["Last-Modified"] = []string{"Mon, 02 Jan 2006 15:04:05 GMT"} },
		"empty last-mod": func(h http.Header) { h["Last-Modified"] = []string{""} },
		"content-length": func(h http.Header) { h["Content-Length"] = []string{"2"} },
		"many": func(h http.Header) {
			h["A"], h["B"], h["C"], h["D"], h["E"] = []string{"1"}, []string{"2", "3"}, []string{"4"}, []string{"5"}, []string{"6"}
		},
		"both validators": func(h http.Header) {
			h["Etag"], h["Last-Modified"] = []string{`"y"`}, []string{"Mon, 02 Jan 2006 15:04:05 GMT"}
		},
		"non-canonical key": func(h http.Header) { h["x-lower"] = []string{"v"} },
		"set before":        func(h http.Header) { h["Content-Type"] = []string{"text/plain"} },
	}
	for name, set := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := New(Config{Regions: map[string]RegionConfig{"r": {}}, Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			rt, err := c.Route("r", Tags("item:{id}"))
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest("GET", "/items/1", nil)
			w := httptest.NewRecorder()
			if name == "set before" {
				// Set before the cache ran (by a middleware): not stored.
				w.Header()["X-Before"] = []string{"b"}
			}
			p := mapParams{"id": "1"}
			if err := rt.handle(w, req, p, "/items/:id", func(w http.ResponseWriter, _ *http.Request) error {
				set(w.Header())
				_, err := io.WriteString(w, "ok")
				return err
			}); err != nil {
				t.Fatal(err)
			}
			st := getState()
			defer putState(st)
			if !rt.build(st, req, p, "/items/:id") {
				t.Fatal("build")
			}
			e := rt.r.mem.Entry(string(st.key))
			if e == nil {
				t.Fatalf("not stored: %q", w.Header().Get("Cache-Status"))
			}
			walked := &backend.Entry{Status: e.Status, Header: e.Header, Body: e.Body, Key: e.Key, ETag: e.ETag, Counters: e.Counters, LastModified: e.LastModified}
			walked.Prepare()
			if !slices.EqualFunc(e.Replayed, walked.Replayed, func(a, b backend.HeaderValues) bool {
				return a.Name == b.Name && slices.Equal(a.Values, b.Values) && len(a.Values) == cap(a.Values)
			}) {
				t.Fatalf("replayed %v, Prepare lists %v", e.Replayed, walked.Replayed)
			}
			if e.MemSize() != walked.MemSize() {
				t.Fatalf("MemSize %d, Prepare's %d", e.MemSize(), walked.MemSize())
			}
			if got := len(e.Replayed); got != len(e.Header)+1-len(e.Header["Content-Length"]) {
				t.Fatalf("%d replayed for %d headers: %v", got, len(e.Header), e.Header)
			}
		})
	}
}
