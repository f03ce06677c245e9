package ginadapter_test

import (
	"fmt"
	"io"
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

// writeSessionWriter is a session middleware's gin.ResponseWriter that
// writes the session cookie at the first body write (Gin sends the
// headers only then).
type writeSessionWriter struct {
	gin.ResponseWriter
	c *gin.Context
}

func (w *writeSessionWriter) Write(b []byte) (int, error) {
	if sid := w.c.GetString("sid"); sid != "" && !w.Written() {
		http.SetCookie(w.ResponseWriter, &http.Cookie{Name: "session", Value: sid})
	}
	return w.ResponseWriter.Write(b)
}

func (w *writeSessionWriter) WriteString(s string) (int, error) { return w.Write([]byte(s)) }

// A session middleware outside the cache whose writer sets the session
// cookie at the first write (before Gin sends the headers) must not see
// the page made for one visitor handed to the next.
func TestGinWriterCookieAtFirstWriteKeepsPageOutOfCache(t *testing.T) {
	gin.SetMode(gin.TestMode)
	rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {}}})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	r := gin.New()
	r.Use(func(c *gin.Context) {
		c.Writer = &writeSessionWriter{ResponseWriter: c.Writer, c: c}
		c.Next()
	})
	var n atomic.Int32
	r.GET("/page", ginadapter.Cache(rc, "r"), func(c *gin.Context) {
		sid := fmt.Sprintf("visitor-%d", n.Add(1))
		c.Set("sid", sid)
		c.String(http.StatusOK, "form token of "+sid)
	})
	srv := httptest.NewServer(r)
	defer srv.Close()
	for i := 1; i <= 3; i++ {
		resp, err := srv.Client().Get(srv.URL + "/page")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := fmt.Sprintf("form token of visitor-%d", i)
		if string(b) != want {
			t.Fatalf("visitor %d: %s %q with cookie %q, want %q", i, resp.Header.Get("X-Cache"), b, resp.Header.Get("Set-Cookie"), want)
		}
	}
}
