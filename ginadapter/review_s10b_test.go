package ginadapter_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/ginadapter"
)

// A handler that commits a body-less response with c.Writer.WriteHeaderNow()
// (Gin still sends the headers only once the chain has returned) must not
// have it stored without the cookie an outer middleware adds after c.Next():
// the next visitor must not get the headers made for the first.
func TestGinWriteHeaderNowWithOuterCookieNotShared(t *testing.T) {
	gin.SetMode(gin.TestMode)
	rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {}}})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	r := gin.New()
	r.Use(func(c *gin.Context) {
		c.Next()
		if sid := c.GetString("sid"); sid != "" {
			c.SetCookie("session", sid, 0, "/", "", false, false)
		}
	})
	var n atomic.Int32
	r.GET("/page", ginadapter.Cache(rc, "r"), func(c *gin.Context) {
		sid := fmt.Sprintf("visitor-%d", n.Add(1))
		c.Set("sid", sid)
		c.Header("X-Form-Token", sid)
		c.Status(http.StatusOK)
		c.Writer.WriteHeaderNow()
	})
	srv := httptest.NewServer(r)
	defer srv.Close()
	for i := 1; i <= 3; i++ {
		resp, err := srv.Client().Get(srv.URL + "/page")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if tok := resp.Header.Get("X-Form-Token"); tok != fmt.Sprintf("visitor-%d", i) {
			t.Fatalf("visitor %d: %s with the token %q and cookie %q", i, resp.Header.Get("X-Cache"), tok, resp.Header.Get("Set-Cookie"))
		}
	}
}
