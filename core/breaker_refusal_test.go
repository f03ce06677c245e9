package core_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/routecache/routecache/core"
)

// A Redis that refuses this process (a wrong password, a user without
// access to the region's keys) is an outage for the cache, not a miss on
// every key: each request is answered by its handler, and the breaker opens
// after Failures consecutive refusals, so the requests that follow skip the
// store instead of each paying a round trip (and, for a refused AUTH, a new
// connection). On one node and on a cluster.
func TestBreakerOpensWhenRedisRefusesThisProcess(t *testing.T) {
	for _, srv := range []struct{ name, env, scheme string }{
		{"redis", "ROUTECACHE_TEST_REDIS", "redis://%s@%s/0?timeout=2s"},
		{"cluster", "ROUTECACHE_TEST_REDIS_CLUSTER", "redis+cluster://%s@%s?timeout=2s"},
	} {
		for _, tc := range []struct {
			name  string
			acl   []any  // the user's rules, after its name
			creds string // user:password in the URL
		}{
			{"wrong-password", []any{"on", ">right", "~*", "&*", "+@all"}, "wrong"},
			{"no-key-access", []any{"on", ">right", "~elsewhere:*", "&*", "+@all"}, "right"},
		} {
			t.Run(srv.name+"/"+tc.name, func(t *testing.T) {
				addrs := testServer(t, srv.env)
				user := fmt.Sprintf("rc-refused-%d", time.Now().UnixNano())
				for _, a := range strings.Split(addrs, ",") {
					admin := redis.NewClient(&redis.Options{Addr: a})
					t.Cleanup(func() {
						admin.Do(context.Background(), "ACL", "DELUSER", user)
						admin.Close()
					})
					args := append([]any{"ACL", "SETUSER", user}, tc.acl...)
					if err := admin.Do(context.Background(), args...).Err(); err != nil {
						t.Fatal(err)
					}
				}
				url := fmt.Sprintf(srv.scheme, user+":"+tc.creds, addrs)
				c, err := core.New(core.Config{
					Regions: map[string]core.RegionConfig{"r": {Backend: url, Prefix: uniquePrefix(t)}},
					Breaker: core.BreakerConfig{Failures: 3, Cooldown: time.Hour},
					Logger:  quietLogger(),
				})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				rt := rvRoute(t, c)
				calls := 0
				h := func(w http.ResponseWriter, r *http.Request) { calls++; fmt.Fprint(w, "origin ", calls) }
				p := mapParams{"id": "1"}
				n := 0
				for ; n < 50 && c.Stats()["r"].Breaker != core.BreakerOpen; n++ {
					w := rvServe(rt, "GET", "/items/1", nil, p, h)
					if want := fmt.Sprint("origin ", calls); w.Code != http.StatusOK || w.Body.String() != want || xc(w) != "BYPASS" {
						t.Fatalf("request %d: %d %q %q, want 200 %q from the handler, BYPASS", n, w.Code, xc(w), w.Body.String(), want)
					}
				}
				st := c.Stats()["r"]
				if st.Breaker != core.BreakerOpen || st.BreakerOpens != 1 {
					t.Fatalf("after %d refused requests: breaker %s, opened %d times; stats %+v", n, st.Breaker, st.BreakerOpens, st)
				}
				if n != 3 {
					t.Errorf("the breaker opened after %d requests, want 3 (each request's lookup is one refusal)", n)
				}
				w := rvServe(rt, "GET", "/items/1", nil, p, h)
				if after := c.Stats()["r"]; w.Code != http.StatusOK || after.Errors != st.Errors || after.Bypasses[core.BypassBreaker] != st.Bypasses[core.BypassBreaker]+1 {
					t.Fatalf("with the breaker open: %d %q, errors %d -> %d, breaker skips %d -> %d",
						w.Code, xc(w), st.Errors, after.Errors, st.Bypasses[core.BypassBreaker], after.Bypasses[core.BypassBreaker])
				}
			})
		}
	}
}
