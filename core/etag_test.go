package core_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/core/adapter"
	"github.com/routecache/routecache/core/backend"
)

// The derived ETag depends on the body alone, in a fixed form (XXH64 with
// seed 0, then the length, in hex): replicas and restarts give one body
// the same validator.
func TestStrongETagIsTheSameOnEveryReplica(t *testing.T) {
	for body, want := range map[string]string{
		"":    `"ef46db3751d8e999-0"`,
		"abc": `"44bc2cf5ad770999-3"`,
	} {
		if got := core.StrongETag([]byte(body)); got != want {
			t.Errorf("StrongETag(%q) = %s, want %s", body, got, want)
		}
	}
}

// Bodies that differ in one byte, or only in length, get different ETags.
func TestStrongETagDiffersForDifferentBodies(t *testing.T) {
	seen := map[string]string{}
	add := func(b []byte) {
		et := core.StrongETag(b)
		if prev, ok := seen[et]; ok && prev != string(b) {
			t.Fatalf("ETag %s for two bodies (%d and %d bytes)", et, len(prev), len(b))
		}
		seen[et] = string(b)
	}
	base := []byte(strings.Repeat("0123456789abcdef", 80))
	for i := range base {
		b := append([]byte(nil), base...)
		b[i] ^= 1
		add(b)
	}
	for n := 0; n <= len(base); n++ {
		add(base[:n])
		add(make([]byte, n)) // zeros: only the length differs
	}
}

// An entry stored by an earlier version, with the SHA-256 form of the
// ETag, is replayed with the ETag it was stored with, and that ETag still
// answers If-None-Match with a 304.
func TestEntryWithEarlierETagFormIsServedWithIt(t *testing.T) {
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {Backend: "memory://"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mw, err := c.Middleware("r")
	if err != nil {
		t.Fatal(err)
	}
	body := []byte("old entry body")
	mux := http.NewServeMux()
	mux.Handle("GET /p/{id}", mw(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) })))
	get := func(inm string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "/p/1", nil)
		if inm != "" {
			req.Header.Set("If-None-Match", inm)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		return w
	}
	if w := get(""); w.Header().Get("X-Cache") != "MISS" {
		t.Fatalf("first request X-Cache %q", w.Header().Get("X-Cache"))
	}
	// Rewrite the stored entry as the earlier version stored it.
	rt, _ := c.Route("r")
	req := httptest.NewRequest("GET", "/p/1", nil)
	req.SetPathValue("id", "1")
	skey := core.StorageKey(rt, req, adapter.PathValues{R: req}, "GET /p/{id}")
	be := core.RegionBackend(c, "r")
	ctx := context.Background()
	e, _ := be.Load(ctx, skey, nil, nil)
	if e == nil {
		t.Fatal("no stored entry under the route's storage key")
	}
	sum := sha256.Sum256(body)
	old := `"` + hex.EncodeToString(sum[:16]) + `"`
	o := &backend.Entry{
		Status: e.Status, Header: e.Header.Clone(), Body: e.Body, Created: e.Created,
		FreshUntil: e.FreshUntil, StaleUntil: e.StaleUntil, Key: e.Key, Counters: e.Counters, ETag: old,
	}
	o.Header["Etag"] = []string{old}
	// As a remote store holds it: encoded by the earlier version, decoded here.
	o, err = backend.DecodeEntry(o.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if err := be.Store(ctx, skey, o, time.Minute); err != nil {
		t.Fatal(err)
	}
	hit := get("")
	if hit.Header().Get("X-Cache") != "HIT" || hit.Header().Get("ETag") != old || hit.Body.String() != string(body) {
		t.Fatalf("hit: X-Cache %q ETag %q body %q, want HIT %s", hit.Header().Get("X-Cache"), hit.Header().Get("ETag"), hit.Body, old)
	}
	if w := get(old); w.Code != http.StatusNotModified {
		t.Fatalf("If-None-Match with the stored ETag: %d, want 304", w.Code)
	}
	if w := get(core.StrongETag(body)); w.Code != http.StatusOK {
		t.Fatalf("If-None-Match with another ETag: %d, want 200", w.Code)
	}
}
