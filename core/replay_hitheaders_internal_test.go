package core

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/routecache/routecache/core/backend"
)

// A replay's Age and Cache-Status ttl are the entry's at the moment of
// the replay: the values kept from the last second (LastHitHeaders) are
// used only while both still match, and a replay in a later second, or
// one whose ttl differs, gets its own.
func TestReplayHitHeadersFollowTheClock(t *testing.T) {
	r := testRoute(t, RegionConfig{}).r
	created := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC).UnixNano()
	e := &backend.Entry{
		Status: http.StatusOK, Header: http.Header{"Content-Type": {"text/plain"}}, Body: []byte("x"),
		Created: created, FreshUntil: created + int64(60500*time.Millisecond),
	}
	e.Prepare()
	req := httptest.NewRequest("GET", "/", nil)
	for _, tc := range []struct {
		after    time.Duration
		age, ttl string
	}{
		{1500 * time.Millisecond, "1", "routecache; hit; ttl=59"},
		{1600 * time.Millisecond, "1", "routecache; hit; ttl=58"}, // the same age, another ttl
		{2400 * time.Millisecond, "2", "routecache; hit; ttl=58"}, // another age, the same ttl
		{2450 * time.Millisecond, "2", "routecache; hit; ttl=58"},
		{2600 * time.Millisecond, "2", "routecache; hit; ttl=57"},
		{3001 * time.Millisecond, "3", "routecache; hit; ttl=57"},
		{30 * time.Second, "30", "routecache; hit; ttl=30"},
	} {
		w := httptest.NewRecorder()
		r.replayAs(w, req, e, created+int64(tc.after), false, nil)
		if got := w.Header().Get("Age"); got != tc.age {
			t.Errorf("after %v: Age %q, want %q", tc.after, got, tc.age)
		}
		if got := w.Header().Get("Cache-Status"); got != tc.ttl {
			t.Errorf("after %v: Cache-Status %q, want %q", tc.after, got, tc.ttl)
		}
	}
	// Another entry built the values of an age and ttl this one has not
	// seen: they are shared, and right for it.
	e2 := &backend.Entry{
		Status: http.StatusOK, Header: http.Header{}, Body: []byte("y"),
		Created: created + int64(time.Second), FreshUntil: created + int64(61500*time.Millisecond),
	}
	e2.Prepare()
	w := httptest.NewRecorder()
	r.replayAs(w, req, e2, created+int64(31*time.Second), false, nil)
	if got, cs := w.Header().Get("Age"), w.Header().Get("Cache-Status"); got != "30" || cs != "routecache; hit; ttl=30" {
		t.Errorf("shared values: Age %q Cache-Status %q, want 30 and ttl=30", got, cs)
	}
}
