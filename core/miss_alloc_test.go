package core

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
	"unsafe"

	"github.com/cespare/xxhash/v2"
)

// caseCanonical never claims a name canonical that
// http.CanonicalHeaderKey would change.
func TestCaseCanonicalAgreesWithCanonicalHeaderKey(t *testing.T) {
	for _, k := range []string{"", "A", "a", "Content-Type", "content-type", "Content-type", "X-B3-Traceid",
		"X-b3", "ETag", "Etag", "WWW-Authenticate", "Www-Authenticate", "-A", "A-", "a b", "A B", "Foo_bar", "X-1a", "X--Y", "x\xffy"} {
		if caseCanonical(k) && http.CanonicalHeaderKey(k) != k {
			t.Errorf("caseCanonical(%q) but CanonicalHeaderKey gives %q", k, http.CanonicalHeaderKey(k))
		}
	}
	for _, k := range []string{"Content-Type", "Etag", "X-Cache", "Last-Modified", "X-B3-Traceid"} {
		if !caseCanonical(k) {
			t.Errorf("caseCanonical(%q) = false for a canonical name", k)
		}
	}
}

// A recorder whose handler set Content-Length records the body into one
// buffer of that size: no growth copies, and nothing for the store to trim.
func TestRecorderPresizesBodyFromContentLength(t *testing.T) {
	w := httptest.NewRecorder()
	rw := &recorder{w: w, record: true, max: 1 << 20}
	rw.Header().Set("Content-Length", "10000")
	chunk := make([]byte, 1000)
	for i := 0; i < 10; i++ {
		_, _ = rw.Write(chunk)
	}
	if len(rw.body) != 10000 || cap(rw.body) != 10000 {
		t.Fatalf("recorded len %d cap %d, want 10000 and 10000", len(rw.body), cap(rw.body))
	}
	// A Content-Length over the cap is not trusted for the allocation.
	rw = &recorder{w: httptest.NewRecorder(), record: true, max: 4096}
	rw.Header().Set("Content-Length", "1000000")
	_, _ = rw.Write(chunk)
	if cap(rw.body) > 4096 {
		t.Fatalf("cap %d over MaxEntryBytes", cap(rw.body))
	}
}

// storedHeader's values are copies: an append to one stored header's
// values changes neither another's nor the response's.
func TestStoredHeaderValuesAreIndependent(t *testing.T) {
	after := http.Header{"A": {"1"}, "B": {"2", "3"}, "C": {"4"}, "Connection": {"x-hop"}, "X-Hop": {"h"}}
	out := storedHeader(nil, after)
	if _, ok := out["X-Hop"]; ok {
		t.Fatal("a header named by Connection was stored")
	}
	out["A"] = append(out["A"], "changed")
	out["B"][0] = "changed"
	if len(out["C"]) != 1 || out["C"][0] != "4" || after["B"][0] != "2" || len(out["B"]) != 2 {
		t.Fatalf("values shared: out %v after %v", out, after)
	}
}

// httpDate is time.Format with http.TimeFormat, in UTC, whichever second
// comes.
func TestHTTPDateMatchesTimeFormat(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 21, 0, 0, 5, time.FixedZone("X", 3600))
	for _, d := range []time.Duration{0, 10, time.Second, time.Second + 1, 0, time.Hour} {
		tm := t0.Add(d)
		if got, want := httpDate(tm), tm.UTC().Format(http.TimeFormat); got != want {
			t.Fatalf("httpDate(%v) = %q, want %q", tm, got, want)
		}
	}
}

// A body recorded in many writes with no Content-Length grows by
// doubling, bounded by the cap: a 1 MiB body in 32 KiB writes ends in a
// buffer of exactly 1 MiB (nothing for the store to trim), after copies
// totalling less than its length.
func TestRecorderGrowsBodyByDoublingToTheCap(t *testing.T) {
	rw := &recorder{w: httptest.NewRecorder(), record: true, max: 1 << 20}
	chunk := make([]byte, 32<<10)
	grows := 0
	for i := 0; i < 32; i++ {
		c := cap(rw.body)
		_, _ = rw.Write(chunk)
		if cap(rw.body) != c {
			grows++
		}
	}
	if len(rw.body) != 1<<20 || cap(rw.body) != 1<<20 || grows != 6 {
		t.Fatalf("len %d cap %d after %d allocations, want 1 MiB, 1 MiB, 6", len(rw.body), cap(rw.body), grows)
	}
	// The cap bounds the last step: 40 KiB of a 48 KiB cap.
	rw = &recorder{w: httptest.NewRecorder(), record: true, max: 48 << 10}
	for i := 0; i < 5; i++ {
		_, _ = rw.Write(chunk[:8<<10])
	}
	if cap(rw.body) > 48<<10 || rw.over {
		t.Fatalf("cap %d over the 48 KiB cap (over %v)", cap(rw.body), rw.over)
	}
}

// unstored names exactly the hop-by-hop and per-response headers.
func TestUnstoredHeaders(t *testing.T) {
	for _, k := range []string{"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"Set-Cookie", "Date", "Content-Length", "Age", "X-Cache", "Cache-Status"} {
		if !unstored(k) {
			t.Errorf("%s stored", k)
		}
	}
	for _, k := range []string{"Content-Type", "Etag", "Last-Modified", "Vary", "Cache-Control", "Content-Encoding", "X-Custom", "set-cookie"} {
		if unstored(k) {
			t.Errorf("%s not stored", k)
		}
	}
}

// The snapshot a fill's recorder takes at commit is the headers sent,
// values copied, without those never stored that nothing judges (X-Cache
// and Cache-Status the cache set, Date, Content-Length, hop-by-hop ones);
// Set-Cookie and Connection stay, and make it unclean for keepStored, as
// does a header without a value.
func TestSnapshotHeader(t *testing.T) {
	h := http.Header{"A": {"1", "2"}, "B": {"3"}, "X-Cache": {"MISS"}, "Cache-Status": {"x"}, "x-cache": {"kept"},
		"Date": {"d"}, "Content-Length": {"5"}, "Transfer-Encoding": {"chunked"}}
	s, clean := snapshotHeader(h)
	lower := "x-cache" // a key set by hand, not canonical: kept as is
	if len(s) != 3 || len(s["A"]) != 2 || s["B"][0] != "3" || s[lower][0] != "kept" || !clean {
		t.Fatalf("snapshot %v (clean %v)", s, clean)
	}
	s["A"] = append(s["A"], "more")
	s["B"][0] = "changed"
	if h["B"][0] != "3" || len(h["A"]) != 2 || s["B"][0] != "changed" {
		t.Fatalf("values shared: %v %v", h, s)
	}
	for _, extra := range []http.Header{{"Set-Cookie": {"a=b"}}, {"Connection": {"x-hop"}}, {"Nil": nil}, {"Empty": {}}} {
		h := http.Header{"A": {"1"}}
		for k, vs := range extra {
			h[k] = vs
		}
		s, clean := snapshotHeader(h)
		if clean || len(s) != 2 {
			t.Fatalf("%v: snapshot %v, clean %v", extra, s, clean)
		}
		if _, ok := s["Nil"]; ok && s["Nil"] != nil {
			t.Fatal("a nil value became non-nil")
		}
	}
}

// judge's verdict says what responseReason and responseLifetime say of
// the canonical headers, whichever shortcut it takes.
func TestJudgeAgreesWithTheRules(t *testing.T) {
	c, err := New(Config{Regions: map[string]RegionConfig{"r": {UseCacheControl: true, VaryHeaders: []string{"Accept-Language"}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rt, err := c.Route("r")
	if err != nil {
		t.Fatal(err)
	}
	r := rt.Region()
	for _, h := range []http.Header{
		nil, {}, {"Content-Type": {"text/plain"}},
		{"Set-Cookie": {"a=b"}}, {"set-cookie": {"a=b"}}, {"Set-Cookie": nil},
		{"Cache-Control": {"private"}}, {"cache-control": {"no-store"}}, {"Cache-Control": {"max-age=0"}}, {"Cache-Control": {"max-age=60"}},
		{"Vary": {"Accept-Language"}}, {"Vary": {"*"}}, {"vary": {"Cookie"}}, {"Vary": {"Accept-Encoding"}},
		{"Trailer": {"X-Sum"}}, {"Content-Type": {"a"}, "trailer:x-sum": {"1"}},
	} {
		for _, status := range []int{200, 404} {
			v, ch := r.judge(rt, status, nil, h)
			want := r.responseReason(status, nil, canonicalHeader(h))
			life, fresh := r.responseLifetime(rt, status, canonicalHeader(h))
			if v.reason != want || (want == "" && (v.life != life || v.fresh != fresh)) || v.trailers != hasTrailers(h) {
				t.Errorf("%d %v: verdict %+v, want reason %q lifetime %v %v trailers %v", status, h, v, want, life, fresh, hasTrailers(h))
			}
			if len(ch) != len(canonicalHeader(h)) {
				t.Errorf("%v: canonical form %v", h, ch)
			}
		}
	}
}

// appendStrongETag (table-driven hex) writes what fmt writes for the hash
// and the length, whatever the length's number of digits.
func TestStrongETagFormatMatchesFmt(t *testing.T) {
	for _, n := range []int{0, 1, 15, 16, 255, 256, 4095, 4096, 1 << 20, 3<<20 + 7} {
		body := make([]byte, n)
		for i := range body {
			body[i] = byte(i * 7)
		}
		want := fmt.Sprintf(`"%016x-%x"`, xxhash.Sum64(body), n)
		if got := strongETag(body); got != want {
			t.Fatalf("%d bytes: %s, want %s", n, got, want)
		}
		if got := string(appendStrongETag([]byte("x"), body)); got != "x"+want {
			t.Fatalf("%d bytes: appended %s", n, got)
		}
	}
}

// A fill's snapshot takes the counter names from the copy own made only
// for the fill that made it: once the flight landed, the pooled call's
// names array, rewritten in place by a later request, is compared again,
// never trusted for being the same slice.
func TestSnapshotNeverTrustsNamesOwnedForAnEarlierFill(t *testing.T) {
	r := &Region{}
	names := []string{"n:a", "n:b"}
	c := &call{r: r, names: names, vals: []uint64{1, 2}, canonical: "k"}
	f, _ := r.flights.join("k", 0)
	c.own(f)
	if s := c.snapshot(); s[0].Name != "n:a" || s[1].Name != "n:b" || s[1].Value != 2 {
		t.Fatalf("snapshot %v", s)
	}
	c.landOwned(f)
	names[0], names[1] = "n:x", "n:y" // the same array, the next request's names
	if s := c.snapshot(); s[0].Name != "n:x" || s[1].Name != "n:y" {
		t.Fatalf("snapshot %v after the fill landed, want n:x and n:y", s)
	}
}

// entryAlloc, with the 8-byte header the allocator adds to an object with
// pointers over 512 bytes, takes the 640-byte size class: no more than
// the entry's parts took allocated apart (the memory budget's accounting
// is calibrated on them).
func TestEntryAllocFitsItsSizeClass(t *testing.T) {
	if s := unsafe.Sizeof(entryAlloc{}) + 8; s > 640 {
		t.Fatalf("entryAlloc takes %d bytes with its header, over the 640-byte class", s)
	}
}

// A leader whose storage key is its canonical key has the flight copy
// its counter names with the key (joinWith): own takes the canonical key
// and the names from that one copy, and the snapshot names them right. A
// call whose storage key differs (hashed) copies them itself.
func TestOwnTakesTheNamesCopiedWithTheFlightsKey(t *testing.T) {
	r := &Region{}
	key := string([]byte("canon")) // as a request's view would be, not a constant
	names := []string{"n:a", "n:bb"}
	c := &call{r: r, canonical: key, skey: key, names: names, vals: []uint64{1, 2}}
	f, leader := r.flights.joinWith(c.skey, 0, c.ownTail())
	if !leader || f.key != "canon" || f.tail != "n:an:bb" {
		t.Fatalf("flight key %q tail %q (leader %v)", f.key, f.tail, leader)
	}
	c.own(f)
	if c.canonical != "canon" || unsafe.StringData(c.canonical) != unsafe.StringData(f.key) || c.skey != "canon" || c.namesText != "n:an:bb" {
		t.Fatalf("own: canonical %q skey %q names %q", c.canonical, c.skey, c.namesText)
	}
	if s := c.snapshot(); len(s) != 2 || s[0].Name != "n:a" || s[1].Name != "n:bb" || s[1].Value != 2 {
		t.Fatalf("snapshot %v", s)
	}
	c.landOwned(f)
	hashed := &call{r: r, canonical: "canon", skey: "hashed-key", names: names}
	if hashed.ownTail() != nil {
		t.Fatal("a hashed storage key took the names with it")
	}
}
