package core_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/routecache/routecache/core"
)

func TestPurgeHandler(t *testing.T) {
	c, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"a": {}, "b": {}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.PurgeHandler(core.PurgeConfig{}); err == nil {
		t.Fatal("purge without token accepted")
	}
	h, err := c.PurgeHandler(core.PurgeConfig{Token: "s3cret", MaxBodyBytes: 256})
	if err != nil {
		t.Fatal(err)
	}
	var events []core.InvalidationEvent
	c.OnInvalidate(func(ev core.InvalidationEvent) { events = append(events, ev) })
	do := func(method, auth, body string, hdr ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, "/_cache/purge", strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	cases := []struct {
		name, method, auth, body string
		hdr                      []string
		status                   int
		msg                      string
	}{
		{"no token", "POST", "", `{"tags":["x"]}`, nil, 401, "bearer token"},
		{"wrong token", "POST", "Bearer nope", `{"tags":["x"]}`, nil, 401, "bearer token"},
		{"basic auth", "POST", "Basic czNjcmV0", `{"tags":["x"]}`, nil, 401, "bearer token"},
		{"bad json", "POST", "Bearer s3cret", `{"tags":`, nil, 400, "bad JSON body"},
		{"unknown field", "POST", "Bearer s3cret", `{"tag":["x"]}`, nil, 400, `unknown field "tag"`},
		{"trailing", "POST", "Bearer s3cret", `{"tags":["x"]} {}`, nil, 400, "trailing data"},
		{"empty", "POST", "Bearer s3cret", `{}`, nil, 400, "nothing to purge"},
		{"empty tag", "POST", "Bearer s3cret", `{"tags":[""]}`, nil, 400, "empty tag"},
		{"unknown region", "POST", "Bearer s3cret", `{"regions":["zz"]}`, nil, 400, `unknown region "zz"`},
		{"unknown key region", "POST", "Bearer s3cret", `{"keys":[{"region":"zz","key":"/a"}]}`, nil, 400, `unknown region "zz" in keys`},
		{"oversize", "POST", "Bearer s3cret", `{"tags":["` + strings.Repeat("x", 300) + `"]}`, nil, 413, "body over 256 bytes"},
		{"method", "GET", "Bearer s3cret", "", nil, 405, "use POST or PURGE"},
		{"purge no key", "PURGE", "Bearer s3cret", "", nil, 400, "Surrogate-Key"},
		{"ok", "POST", "Bearer s3cret", `{"tags":["article:1"],"regions":["a"],"keys":[{"region":"b","key":"/x"}]}`, nil, 200, "tags:1"},
		{"purge", "PURGE", "bearer s3cret", "", []string{"Surrogate-Key", "t1 t2"}, 200, "tags:2"},
	}
	for _, tc := range cases {
		w := do(tc.method, tc.auth, tc.body, tc.hdr...)
		var m map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
			t.Errorf("%s: body is not JSON: %q", tc.name, w.Body.String())
		}
		if w.Code != tc.status || !strings.Contains(fmt.Sprint(m), tc.msg) {
			t.Errorf("%s: %d %s, want %d containing %q", tc.name, w.Code, w.Body.String(), tc.status, tc.msg)
		}
	}
	if len(events) != 4 || events[0].Names[0] != "article:1" || events[1].Region != "a" || events[2].Names[0] != "/x" || len(events[3].Names) != 2 {
		t.Fatalf("events %+v", events)
	}
	// The purge really invalidates: an entry cached under the tag is gone.
	rt, _ := c.Route("a", core.Tags("article:{id}"))
	p := mapParams{"id": "9"}
	n := 0
	hh := func(w http.ResponseWriter, r *http.Request) { n++ }
	serveOnce(rt, "/a/9", p, hh)
	serveOnce(rt, "/a/9", p, hh)
	if w := do("POST", "Bearer s3cret", `{"tags":["article:9"]}`); w.Code != 200 {
		t.Fatal(w.Body.String())
	}
	serveOnce(rt, "/a/9", p, hh)
	if n != 2 {
		t.Fatalf("origin calls %d, want 2 (fill, refill after purge)", n)
	}
	_ = context.Background()
}
