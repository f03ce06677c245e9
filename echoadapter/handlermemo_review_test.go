package echoadapter_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/echoadapter"
)

type greeter struct{ name string }

func (g *greeter) Hello(c echo.Context) error { return c.String(http.StatusOK, "hello "+g.name) }

// One Cache middleware given as route middleware (its next is then the
// route's own handler value, not Echo's per-route closure) to routes
// whose handlers share their code: closures made in a loop over different
// values, and method values of one method on different receivers. Each
// route runs its own handler, also after collections (a freed handler's
// memory reused must not be taken for a remembered one), and on misses
// after a purge.
func TestRouteMiddlewareTellsHandlersSharingCodeApart(t *testing.T) {
	rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	e := echo.New()
	mw := echoadapter.Cache(rc, "r")
	const n = 40
	want := map[string]string{}
	for i := 0; i < n; i++ {
		path := fmt.Sprintf("/c/%d", i)
		e.GET(path, func(c echo.Context) error { return c.String(http.StatusOK, fmt.Sprintf("closure %d", i)) }, mw)
		want[path] = fmt.Sprintf("closure %d", i)
		g := &greeter{name: fmt.Sprint(i)}
		path = fmt.Sprintf("/m/%d", i)
		e.GET(path, g.Hello, mw)
		want[path] = "hello " + fmt.Sprint(i)
	}
	// A middleware in front of the cache, making a new closure per request
	// (Echo applies route middleware per request): the cache's next is
	// then new every time.
	wrap := func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error { return next(c) }
	}
	for i := 0; i < n; i++ {
		path := fmt.Sprintf("/w/%d", i)
		e.GET(path, func(c echo.Context) error { return c.String(http.StatusOK, fmt.Sprintf("wrapped %d", i)) }, mw, wrap)
		want[path] = fmt.Sprintf("wrapped %d", i)
	}
	for round := 0; round < 4; round++ {
		if round == 2 {
			if err := rc.InvalidateRegion(t.Context(), "r"); err != nil {
				t.Fatal(err)
			}
		}
		for path, body := range want {
			runtime.GC()
			w := httptest.NewRecorder()
			e.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
			got, _ := io.ReadAll(w.Result().Body)
			if string(got) != body {
				t.Fatalf("round %d %s: body %q, want %q (X-Cache %s)", round, path, got, body, w.Header().Get("X-Cache"))
			}
		}
	}
}
