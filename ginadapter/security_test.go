package ginadapter_test

import (
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/ginadapter"
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

// With UseRawPath and UnescapePathValues off, Gin routes on the raw path
// and c.Param is the raw segment; c.ClientIP reads X-Forwarded-For and
// X-Real-Ip. Requests those helpers tell apart never share an entry.
func TestGinHelpersSeeWhatTheKeyHolds(t *testing.T) {
	rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {}}})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	gin.SetMode(gin.TestMode)
	r := gin.New()
	r.UseRawPath, r.UnescapePathValues = true, false
	r.GET("/a/:x", ginadapter.Cache(rc, "r"), func(c *gin.Context) {
		c.String(200, "param=%q ip=%s", c.Param("x"), c.ClientIP())
	})
	srv := httptest.NewServer(r)
	defer srv.Close()

	for _, pair := range [][2]string{{"/a/<%41", "/a/%3CA"}, {"/a/%41", "/a/A"}, {"/a/|%41", "/a/%7CA"}} {
		_, first := rawGet(t, srv, pair[0])
		xc, second := rawGet(t, srv, pair[1])
		if first == second || xc == "HIT" {
			t.Fatalf("%s and %s: %q then %q (%s)", pair[0], pair[1], first, second, xc)
		}
	}
	_, plain := rawGet(t, srv, "/a/1")
	for _, h := range []string{"X-Forwarded-For: 203.0.113.9", "X-Real-Ip: 203.0.113.9"} {
		if _, got := rawGet(t, srv, "/a/1", h); got == plain {
			t.Fatalf("%s: the handler did not see it (%q), so the test proves nothing", h, got)
		}
		if xc, got := rawGet(t, srv, "/a/1"); got != plain || xc != "HIT" {
			t.Fatalf("after a request with %s, a plain request got %q (%s)", h, got, xc)
		}
	}
}
