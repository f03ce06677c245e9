package core_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/routecache/routecache/core"
)

// Threats through the response: what decides that an answer may be shared
// must read the headers as the client receives them.

// net/http sends a header key as the handler wrote it, so "set-cookie" and
// "cache-control" are what they say: not stored, and never replayed.
func TestSecurityNonCanonicalResponseHeaders(t *testing.T) {
	for _, tc := range []struct {
		key, value string
	}{
		{"set-cookie", "sid=victim-session"},
		{"SET-COOKIE", "sid=victim-session"},
		{"cache-control", "private"},
		{"cache-control", "no-store"},
		{"vary", "X-Unkeyed"},
	} {
		t.Run(tc.key+"="+tc.value, func(t *testing.T) {
			var calls atomic.Int64
			_, srv := secApp(t, core.RegionConfig{}, "GET /p", func(w http.ResponseWriter, r *http.Request) {
				w.Header()[tc.key] = []string{tc.value}
				fmt.Fprintf(w, "answer %d", calls.Add(1))
			})
			first := secDo(t, srv, "GET", "/p", nil)
			if first.header.Get(tc.key) != tc.value {
				t.Fatalf("the client did not receive %s: %v", tc.key, first.header)
			}
			second := secDo(t, srv, "GET", "/p", nil)
			if second.xcache == "HIT" || second.body != "answer 2" {
				t.Fatalf("a response with %s: %s was shared: %q %q", tc.key, tc.value, second.xcache, second.body)
			}
		})
	}
	t.Run("stored canonical", func(t *testing.T) {
		_, srv := secApp(t, core.RegionConfig{}, "GET /p", func(w http.ResponseWriter, r *http.Request) {
			w.Header()["x-note"] = []string{"a"}
			w.Header()["X-Note"] = []string{"b"}
			w.Header()["connection"] = []string{"x-hop"}
			w.Header()["x-hop"] = []string{"per connection"}
			fmt.Fprint(w, "ok")
		})
		secDo(t, srv, "GET", "/p", nil)
		hit := secDo(t, srv, "GET", "/p", nil)
		if hit.xcache != "HIT" {
			t.Fatalf("not stored: %q", hit.xcache)
		}
		if got := hit.header.Values("X-Note"); strings.Join(got, ",") != "b,a" && strings.Join(got, ",") != "a,b" {
			t.Fatalf("X-Note replayed as %q", got)
		}
		if hit.header.Get("X-Hop") != "" {
			t.Fatal("a header named by a lowercase Connection was replayed")
		}
	})
}

// Statuses that answer a range or conditional request depend on request
// headers no key holds: a region refuses them at construction.
func TestSecurityRequestDependentStatusesRefused(t *testing.T) {
	for _, s := range []int{206, 304, 412, 416} {
		_, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {Statuses: []int{200, s}}}})
		if err == nil || !strings.Contains(err.Error(), fmt.Sprint(s)) || !strings.HasPrefix(err.Error(), "routecache: ") {
			t.Errorf("Statuses with %d: %v", s, err)
		}
	}
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {Statuses: []int{200, 301, 404, 410}}}})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// Range and precondition requests (If-Match, If-Unmodified-Since,
// If-Range) bypass: the handler's 206, 412 or 416 answer depends on them,
// and a stored 200 must not stand in for it.
func TestSecurityRangeAndPreconditionsBypass(t *testing.T) {
	var calls atomic.Int64
	_, srv := secApp(t, core.RegionConfig{}, "GET /f", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.ServeContent(w, r, "f.txt", time.Unix(1700000000, 0), strings.NewReader("0123456789"))
	})
	if v := secDo(t, srv, "GET", "/f", nil); v.xcache != "MISS" || v.body != "0123456789" {
		t.Fatalf("fill: %q %q", v.xcache, v.body)
	}
	for _, h := range [][2]string{
		{"Range", "bytes=2-4"},
		{"If-Range", `"x"`},
		{"If-Match", `"nope"`},
		{"If-Unmodified-Since", "Mon, 01 Jan 2001 00:00:00 GMT"},
	} {
		before := calls.Load()
		v := secDo(t, srv, "GET", "/f", nil, h[0], h[1])
		if v.xcache != "BYPASS" || calls.Load() != before+1 {
			t.Fatalf("%s: %d %q %q", h[0], v.code, v.xcache, v.body)
		}
	}
	if v := secDo(t, srv, "GET", "/f", nil, "Range", "bytes=2-4"); v.code != 206 || v.body != "234" {
		t.Fatalf("range answer: %d %q", v.code, v.body)
	}
}

// Trailers are computed per response (a checksum, a late Set-Cookie sent
// after the body): a response declaring or sending any is not stored.
func TestSecurityTrailersNotStored(t *testing.T) {
	for name, h := range map[string]func(w http.ResponseWriter){
		"declared": func(w http.ResponseWriter) { w.Header().Set("Trailer", "X-Sum") },
		"prefixed": func(w http.ResponseWriter) {},
	} {
		t.Run(name, func(t *testing.T) {
			var calls atomic.Int64
			_, srv := secApp(t, core.RegionConfig{}, "GET /p", func(w http.ResponseWriter, r *http.Request) {
				h(w)
				fmt.Fprintf(w, "body %d", calls.Add(1))
				w.Header().Set(http.TrailerPrefix+"Set-Cookie", "sid=late")
				w.Header().Set("X-Sum", "1")
			})
			secDo(t, srv, "GET", "/p", nil)
			if v := secDo(t, srv, "GET", "/p", nil); v.xcache == "HIT" || v.body != "body 2" {
				t.Fatalf("a response with trailers was shared: %q %q", v.xcache, v.body)
			}
		})
	}
}

// A protocol upgrade (a WebSocket handshake) is never answered from the
// cache: the handler must get it.
func TestSecurityUpgradeBypasses(t *testing.T) {
	_, srv := secApp(t, core.RegionConfig{}, "GET /ws", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upgrade=%q", r.Header.Get("Upgrade"))
	})
	secDo(t, srv, "GET", "/ws", nil)
	if v := secDo(t, srv, "GET", "/ws", nil, "Connection", "Upgrade", "Upgrade", "websocket"); v.xcache != "BYPASS" || v.body != `upgrade="websocket"` {
		t.Fatalf("upgrade request: %q %q", v.xcache, v.body)
	}
}

// A response held back for stale-if-error reaches the client with every
// header set before its release, including those set after the first
// write: storability is decided on those, so a late Set-Cookie or
// Cache-Control: private keeps it out of the cache.
func TestSecurityHeldResponseJudgedAsSent(t *testing.T) {
	for _, late := range [][2]string{{"Set-Cookie", "sid=alice"}, {"Cache-Control", "private"}} {
		t.Run(late[0], func(t *testing.T) {
			rt := testRoute(t, core.RegionConfig{TTL: 50 * time.Millisecond, StaleIfError: time.Minute})
			var calls atomic.Int64
			next := func(w http.ResponseWriter, r *http.Request) error {
				n := calls.Add(1)
				fmt.Fprintf(w, "page %d", n)
				if n > 1 {
					w.Header().Set(late[0], late[1]) // after the first write
				}
				return nil
			}
			if w := serveNext(rt, "GET", "/items/1", next); xc(w) != "MISS" {
				t.Fatalf("fill: %q", xc(w))
			}
			waitState(t, rt, "/items/1", core.ErrorOnly)
			w := serveNext(rt, "GET", "/items/1", next)
			if w.Body.String() != "page 2" || w.Header().Get(late[0]) != late[1] {
				t.Fatalf("held response: %q %v", w.Body.String(), w.Header())
			}
			if st := rt.Region().Stats(); st.Stores != 1 {
				t.Fatalf("the held response with a late %s was stored (%d stores)", late[0], st.Stores)
			}
			if w := serveNext(rt, "GET", "/items/1", next); xc(w) == "HIT" {
				t.Fatalf("another client got the held response: %q %v", w.Body.String(), w.Header())
			}
		})
	}
}
