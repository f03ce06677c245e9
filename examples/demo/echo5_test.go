package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
)

// The demo's "done when" list on Echo v5, as TestDemo runs it on the
// other frameworks.
func TestDemoEcho5(t *testing.T) {
	testDemo(t, "echo5")
}

// The purge endpoint on Echo v5, mounted with Any only: PURGE reaches it
// (401 without the token, then a purge that makes the next GET a MISS),
// and other methods get its own 405 with Allow and a JSON error.
func TestDemoEcho5Purge(t *testing.T) {
	h, rc, err := newServer(config{Framework: "echo5", PurgeTok: "tok", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rc.Close() })
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c := &client{t: t, base: srv.URL}

	c.expect(c.do("GET", "/articles/3", nil, nil), 200, "MISS")
	c.expect(c.do("GET", "/articles/3", nil, nil), 200, "HIT")
	if res := c.do("PURGE", "/_cache/purge", map[string]string{"Surrogate-Key": "article:3"}, nil); res.status != http.StatusUnauthorized {
		t.Fatalf("PURGE without the token: %d %q", res.status, res.body)
	}
	c.expect(c.do("GET", "/articles/3", nil, nil), 200, "HIT")
	auth := map[string]string{"Authorization": "Bearer tok", "Surrogate-Key": "article:3"}
	if res := c.do("PURGE", "/_cache/purge", auth, nil); res.status != http.StatusOK {
		t.Fatalf("PURGE with the token: %d %q", res.status, res.body)
	}
	c.expect(c.do("GET", "/articles/3", nil, nil), 200, "MISS")

	for _, method := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
		res := c.do(method, "/_cache/purge", auth, nil)
		var body map[string]any
		derr := json.Unmarshal([]byte(res.body), &body)
		if res.status != http.StatusMethodNotAllowed || res.header.Get("Allow") != "POST, PURGE" || derr != nil || body["error"] == nil {
			t.Errorf("%s: %d, Allow %q, body %q (%v)", method, res.status, res.header.Get("Allow"), res.body, derr)
		}
	}
}
