package main

import (
	"compress/gzip"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// With -gzip, a gzip client (curl --compressed) and a plain one (curl)
// both get a HIT with the same body, on every framework.
func TestDemoGzip(t *testing.T) {
	for _, fw := range []string{"gin", "echo", "nethttp"} {
		t.Run(fw, func(t *testing.T) {
			h, rc, err := newServer(config{Framework: fw, Gzip: true, Delay: time.Millisecond,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = rc.Close() })
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)
			get := func(path string, gz bool) (*http.Response, string) {
				t.Helper()
				req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
				if gz {
					// Set by hand, so the transport leaves the body as sent.
					req.Header.Set("Accept-Encoding", "deflate, gzip, br, zstd")
				}
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer res.Body.Close()
				var r io.Reader = res.Body
				if res.Header.Get("Content-Encoding") == "gzip" {
					if !gz {
						t.Fatalf("%s: a plain client got gzip", path)
					}
					zr, err := gzip.NewReader(res.Body)
					if err != nil {
						t.Fatal(err)
					}
					r = zr
				}
				b, err := io.ReadAll(r)
				if err != nil {
					t.Fatal(err)
				}
				return res, string(b)
			}
			for _, path := range []string{"/articles", "/articles/1"} {
				_, want := get(path, false) // MISS: fills
				for _, gz := range []bool{true, false} {
					res, body := get(path, gz)
					if res.Header.Get("X-Cache") != "HIT" || body != want {
						t.Fatalf("%s (gzip client %v): X-Cache %q, body %q; want HIT, %q", path, gz, res.Header.Get("X-Cache"), body, want)
					}
					if !strings.Contains(strings.Join(res.Header.Values("Vary"), ","), "Accept-Encoding") {
						t.Fatalf("%s: no Vary: Accept-Encoding", path)
					}
					if gz && len(want) >= 256 && res.Header.Get("Content-Encoding") != "gzip" {
						t.Fatalf("%s: a %d-byte body is not compressed for a gzip client", path, len(want))
					}
				}
			}
		})
	}
}
