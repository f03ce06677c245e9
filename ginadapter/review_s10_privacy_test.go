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

// sessionApp serves GET /page through a cached region "r", with outer
// as the middleware outside the cache. Each run of the handler starts a
// session: sid "visitor-N" in the context (c.GetString("sid")) for the
// middleware outside, and answer writes the page made for it.
func sessionApp(t *testing.T, outer gin.HandlerFunc, answer func(c *gin.Context, sid string)) (*core.Cache, *httptest.Server) {
	t.Helper()
	gin.SetMode(gin.TestMode)
	rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	r := gin.New()
	r.Use(outer)
	var n atomic.Int32
	r.GET("/page", ginadapter.Cache(rc, "r"), func(c *gin.Context) {
		sid := fmt.Sprintf("visitor-%d", n.Add(1))
		c.Set("sid", sid)
		answer(c, sid)
	})
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return rc, srv
}

// visit GETs path from srv: the response, and its body read.
func visit(t *testing.T, srv *httptest.Server, path string) (*http.Response, string) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// sessionWriter is a session middleware's gin.ResponseWriter: it writes
// the session cookie as the status goes out (atWrite false) or at the
// first body write (atWrite true, before Gin sends the headers), when the
// handler started a session.
type sessionWriter struct {
	gin.ResponseWriter
	c       *gin.Context
	atWrite bool
}

func (w *sessionWriter) setCookie() {
	if sid := w.c.GetString("sid"); sid != "" && !w.Written() {
		http.SetCookie(w.ResponseWriter, &http.Cookie{Name: "session", Value: sid})
	}
}

func (w *sessionWriter) WriteHeader(code int) {
	if !w.atWrite {
		w.setCookie()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *sessionWriter) Write(b []byte) (int, error) {
	if w.atWrite {
		w.setCookie()
	}
	return w.ResponseWriter.Write(b)
}

func (w *sessionWriter) WriteString(s string) (int, error) { return w.Write([]byte(s)) }

// A session middleware outside the cache whose writer sets the session
// cookie as the status goes out, or at the first body write, must not see
// the page its handler made for one visitor handed to the next: a
// response sent with that Set-Cookie is not stored.
func TestGinWriterCookieKeepsPageOutOfCache(t *testing.T) {
	for _, atWrite := range []bool{false, true} {
		t.Run(fmt.Sprintf("atWrite=%v", atWrite), func(t *testing.T) {
			rc, srv := sessionApp(t, func(c *gin.Context) {
				c.Writer = &sessionWriter{ResponseWriter: c.Writer, c: c, atWrite: atWrite}
				c.Next()
			}, func(c *gin.Context, sid string) { c.String(http.StatusOK, "form token of "+sid) })
			for i := 1; i <= 3; i++ {
				resp, body := visit(t, srv, "/page")
				want := fmt.Sprintf("form token of visitor-%d", i)
				if body != want || resp.Header.Get("Set-Cookie") != "session=visitor-"+fmt.Sprint(i) {
					t.Fatalf("visitor %d: %s %q with cookie %q, want %q", i, resp.Header.Get("X-Cache"), body, resp.Header.Get("Set-Cookie"), want)
				}
			}
			if st := rc.Stats()["r"]; st.Stores != 0 || st.NotStored[core.NotStoredSetCookie] != 3 {
				t.Fatalf("stores %d, not stored %v", st.Stores, st.NotStored)
			}
		})
	}
}

// Gin sends the headers of a response without a body only when the whole
// chain has returned, so an outer middleware can still add a cookie after
// c.Next() (a session it saves on the way out) and it reaches the client;
// so too when the handler called c.Writer.WriteHeaderNow(). A response
// sent with that cookie must not be stored: the next visitor must not get
// the headers made for the first.
func TestGinBodilessResponseWithOuterCookieNotShared(t *testing.T) {
	for _, now := range []bool{false, true} {
		t.Run(fmt.Sprintf("WriteHeaderNow=%v", now), func(t *testing.T) {
			_, srv := sessionApp(t, func(c *gin.Context) {
				c.Next()
				if sid := c.GetString("sid"); sid != "" {
					c.SetCookie("session", sid, 0, "/", "", false, false) // Gin has not sent the headers yet
				}
			}, func(c *gin.Context, sid string) {
				c.Header("X-Form-Token", sid)
				c.Status(http.StatusOK)
				if now {
					c.Writer.WriteHeaderNow()
				}
			})
			for i := 1; i <= 3; i++ {
				resp, _ := visit(t, srv, "/page")
				if tok := resp.Header.Get("X-Form-Token"); tok != fmt.Sprintf("visitor-%d", i) {
					t.Fatalf("visitor %d: %s with the token %q and cookie %q", i, resp.Header.Get("X-Cache"), tok, resp.Header.Get("Set-Cookie"))
				}
			}
		})
	}
}

// A response without a body on a cached Gin route keeps the status its
// handler set and the headers set outside the cache after c.Next(), as
// without the cache, and is never stored (every request runs the handler).
func TestGinBodilessResponseKeepsItsStatusAndIsNotStored(t *testing.T) {
	rc, srv := sessionApp(t, func(c *gin.Context) {
		c.Next()
		c.Header("X-Outer", "after")
	}, func(c *gin.Context, _ string) {
		c.Header("X-Inner", "set")
		c.Status(http.StatusNoContent)
	})
	for i := 1; i <= 3; i++ {
		resp, _ := visit(t, srv, "/page")
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("X-Inner") != "set" || resp.Header.Get("X-Outer") != "after" {
			t.Fatalf("request %d: %d, X-Inner %q, X-Outer %q", i, resp.StatusCode, resp.Header.Get("X-Inner"), resp.Header.Get("X-Outer"))
		}
	}
	if st := rc.Stats()["r"]; st.Stores != 0 || st.Misses != 3 {
		t.Fatalf("%d stores, %d misses: a body-less response was stored or served from the cache", st.Stores, st.Misses)
	}
}
