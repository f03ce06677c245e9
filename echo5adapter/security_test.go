package echo5adapter_test

import (
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v5"
	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/echo5adapter"
	"github.com/routecache/routecache/internal/rawreq"
)

// rawGet sends a request line and header lines exactly as written (Go's
// client would escape the path) and returns X-Cache and the body.
func rawGet(t *testing.T, srv *httptest.Server, target string, lines ...string) (string, string) {
	t.Helper()
	resp, body, err := rawreq.Get(srv.Listener.Addr().String(), target, lines...)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Get("X-Cache"), body
}

// Echo v5 routes on the raw path and hands c.Param the raw segment;
// c.Scheme reads the forwarding headers of a loopback or private peer (as
// the test server's client is), and c.RealIP the X-Forwarded-For of such a
// peer once the application sets the documented IPExtractor, as
// ExtractIPFromRealIPHeader reads X-Real-Ip: requests those helpers tell
// apart never share an entry.
func TestEcho5HelpersSeeWhatTheKeyHolds(t *testing.T) {
	rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {}}})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	e := echo.New()
	e.IPExtractor = echo.ExtractIPFromXFFHeader()
	realIP := echo.ExtractIPFromRealIPHeader()
	e.GET("/a/:x", func(c *echo.Context) error {
		return c.String(200, fmt.Sprintf("param=%q scheme=%s ip=%s real-ip=%s", c.Param("x"), c.Scheme(), c.RealIP(), realIP(c.Request())))
	}, echo5adapter.Cache(rc, "r"))
	srv := httptest.NewServer(e)
	defer srv.Close()

	for _, pair := range [][2]string{{"/a/<%41", "/a/%3CA"}, {"/a/%22%41", "/a/%22A"}, {"/a/^%41", "/a/%5EA"}} {
		_, first := rawGet(t, srv, pair[0])
		xc, second := rawGet(t, srv, pair[1])
		if first == second || xc == "HIT" {
			t.Fatalf("%s and %s: %q then %q (%s)", pair[0], pair[1], first, second, xc)
		}
	}
	_, plain := rawGet(t, srv, "/a/1")
	for _, h := range []string{"X-Forwarded-Ssl: on", "X-Url-Scheme: https", "X-Forwarded-Protocol: https", "X-Forwarded-Proto: https", "X-Forwarded-For: 203.0.113.9", "X-Real-Ip: 203.0.113.9"} {
		if _, got := rawGet(t, srv, "/a/1", h); got == plain {
			t.Fatalf("%s: the handler did not see it (%q), so the test proves nothing", h, got)
		}
		if xc, got := rawGet(t, srv, "/a/1"); got != plain || xc != "HIT" {
			t.Fatalf("after a request with %s, a plain request got %q (%s)", h, got, xc)
		}
	}
}
