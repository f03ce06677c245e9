package echo5adapter_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/labstack/echo/v5"
	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/echo5adapter"
)

// A session middleware outside the cache that saves the session in a
// Response.Before hook (the cookie goes out with the status) must not
// see the page its handler made for one visitor handed to the next: a
// response sent with that Set-Cookie is not stored.
func TestEcho5BeforeHookCookieKeepsPageOutOfCache(t *testing.T) {
	rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {}}})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	e := echo.New()
	e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c *echo.Context) error {
			res, err := echo.UnwrapResponse(c.Response())
			if err != nil {
				return err
			}
			res.Before(func() {
				if sid, ok := c.Get("sid").(string); ok {
					http.SetCookie(c.Response(), &http.Cookie{Name: "session", Value: sid})
				}
			})
			return next(c)
		}
	})
	var n atomic.Int32
	e.GET("/page", func(c *echo.Context) error {
		sid := fmt.Sprintf("visitor-%d", n.Add(1))
		c.Set("sid", sid) // a new session
		return c.String(http.StatusOK, "form token of "+sid)
	}, echo5adapter.Cache(rc, "r"))
	srv := httptest.NewServer(e)
	defer srv.Close()
	for i := 1; i <= 3; i++ {
		resp, err := srv.Client().Get(srv.URL + "/page")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := fmt.Sprintf("form token of visitor-%d", i)
		if string(b) != want || resp.Header.Get("Set-Cookie") != "session=visitor-"+fmt.Sprint(i) {
			t.Fatalf("visitor %d: %s %q with cookie %q, want %q", i, resp.Header.Get("X-Cache"), b, resp.Header.Get("Set-Cookie"), want)
		}
	}
	if st := rc.Stats()["r"]; st.Stores != 0 || st.NotStored[core.NotStoredSetCookie] != 3 {
		t.Fatalf("stores %d, not stored %v", st.Stores, st.NotStored)
	}
}
