package core

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// A memo key never equals a route key, whatever the key text.
func TestMemoizeKeyNeverCollidesWithRoutes(t *testing.T) {
	c, err := New(Config{Regions: map[string]RegionConfig{"articles": {}}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := c.regions["articles"]
	rt, err := c.Route("articles", Key("{id}"))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"x", "3:GET", "1:m1:x", "m", ""} {
		canonical, _, ok := rt.canonicalKey(httptest.NewRequest("GET", "/", nil), mapParams{"id": k}, "/:id")
		if ok && canonical == r.memoKey(k) {
			t.Fatalf("key %q: route and memo share %q", k, canonical)
		}
		var marker keyBuilder
		marker.field("m")
		if !strings.Contains(r.memoKey(k), string(marker.b)) {
			t.Fatalf("memo key %q lacks its marker", r.memoKey(k))
		}
	}
}
