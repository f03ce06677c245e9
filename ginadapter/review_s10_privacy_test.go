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

// sessionWriter is a session middleware's gin.ResponseWriter: it writes
// the session cookie as the status goes out, when the handler started one.
type sessionWriter struct {
	gin.ResponseWriter
	c *gin.Context
}

func (w *sessionWriter) WriteHeader(code int) {
	if sid := w.c.GetString("sid"); sid != "" && !w.Written() {
		http.SetCookie(w.ResponseWriter, &http.Cookie{Name: "session", Value: sid})
	}
	w.ResponseWriter.WriteHeader(code)
}

// A session middleware outside the cache whose writer sets the session
// cookie as the status goes out must not see the page its handler made
// for one visitor handed to the next: a response sent with that
// Set-Cookie is not stored.
func TestGinWriterCookieKeepsPageOutOfCache(t *testing.T) {
	gin.SetMode(gin.TestMode)
	rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {}}})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	r := gin.New()
	r.Use(func(c *gin.Context) {
		c.Writer = &sessionWriter{ResponseWriter: c.Writer, c: c}
		c.Next()
	})
	var n atomic.Int32
	r.GET("/page", ginadapter.Cache(rc, "r"), func(c *gin.Context) {
		sid := fmt.Sprintf("visitor-%d", n.Add(1))
		c.Set("sid", sid) // a new session
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
		if string(b) != want || resp.Header.Get("Set-Cookie") != "session=visitor-"+fmt.Sprint(i) {
			t.Fatalf("visitor %d: %s %q with cookie %q, want %q", i, resp.Header.Get("X-Cache"), b, resp.Header.Get("Set-Cookie"), want)
		}
	}
	if st := rc.Stats()["r"]; st.Stores != 0 || st.NotStored[core.NotStoredSetCookie] != 3 {
		t.Fatalf("stores %d, not stored %v", st.Stores, st.NotStored)
	}
}

// Gin sends the headers of a response without a body only when the whole
// chain has returned, so an outer middleware can still add a cookie after
// c.Next() (a session it saves on the way out) and it reaches the client.
// A response sent with that cookie must not be stored: the next visitor
// must not get the headers made for the first.
func TestGinBodilessResponseWithOuterCookieNotShared(t *testing.T) {
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
			c.SetCookie("session", sid, 0, "/", "", false, false) // Gin has not sent the headers yet
		}
	})
	var n atomic.Int32
	r.GET("/page", ginadapter.Cache(rc, "r"), func(c *gin.Context) {
		sid := fmt.Sprintf("visitor-%d", n.Add(1))
		c.Set("sid", sid) // a new session
		c.Header("X-Form-Token", sid)
		c.Status(http.StatusOK)
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

// A response without a body on a cached Gin route keeps the status its
// handler set and the headers set outside the cache after c.Next(), as
// without the cache, and is never stored (every request runs the handler).
func TestGinBodilessResponseKeepsItsStatusAndIsNotStored(t *testing.T) {
	gin.SetMode(gin.TestMode)
	rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {}}})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	r := gin.New()
	r.Use(func(c *gin.Context) {
		c.Next()
		c.Header("X-Outer", "after")
	})
	var n atomic.Int32
	r.GET("/none", ginadapter.Cache(rc, "r"), func(c *gin.Context) {
		n.Add(1)
		c.Header("X-Inner", "set")
		c.Status(http.StatusNoContent)
	})
	srv := httptest.NewServer(r)
	defer srv.Close()
	for i := 1; i <= 3; i++ {
		resp, err := srv.Client().Get(srv.URL + "/none")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("X-Inner") != "set" || resp.Header.Get("X-Outer") != "after" {
			t.Fatalf("request %d: %d, X-Inner %q, X-Outer %q", i, resp.StatusCode, resp.Header.Get("X-Inner"), resp.Header.Get("X-Outer"))
		}
	}
	if got := n.Load(); got != 3 {
		t.Fatalf("handler ran %d times for 3 requests: a body-less response was served from the cache", got)
	}
	if st := rc.Stats()["r"]; st.Stores != 0 {
		t.Fatalf("%d stores", st.Stores)
	}
}
