package echo5adapter_test

import (
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v5"
	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/echo5adapter"
)

// Echo's c.QueryString() returns the query as sent (URL.RawQuery), so the
// default key holds it as sent: a raw `?q="><script>...` (Go's server
// accepts those bytes) and the encoded form a browser sends never share an
// entry, nor do reordered or differently encoded queries.
func TestEcho5QueryStringKeyedAsSent(t *testing.T) {
	rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {}}})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	e := echo.New()
	e.GET("/s", func(c *echo.Context) error {
		return c.String(200, "qs="+c.QueryString())
	}, echo5adapter.Cache(rc, "r"))
	srv := httptest.NewServer(e)
	defer srv.Close()

	for _, pair := range [][2]string{
		{"/s?b=2&a=1", "/s?a=1&b=2"},
		{`/s?q="><script>alert(1)</script>`, "/s?q=%22%3E%3Cscript%3Ealert%281%29%3C%2Fscript%3E"},
		{"/s?q=a+b", "/s?q=a%20b"},
	} {
		_, first := rawGet(t, srv, pair[0])
		xc, second := rawGet(t, srv, pair[1])
		if second != "qs="+pair[1][len("/s?"):] {
			t.Errorf("%s then %s: the second got %q (X-Cache %s), want its own query string (the first got %q)", pair[0], pair[1], second, xc, first)
		}
	}
}
