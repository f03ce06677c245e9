package echoadapter_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/echoadapter"
)

// One Cache middleware in front of many routes (a group's): each route
// runs its own handler, first as a miss and then as a hit, also past the
// routes the middleware remembers a handler for (handlermemo.go), and
// with routes requested in turn.
func TestSharedMiddlewareRunsEachRoutesHandler(t *testing.T) {
	rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	e := echo.New()
	g := e.Group("/g", echoadapter.Cache(rc, "r"))
	const routes = 40
	for i := 0; i < routes; i++ {
		g.GET(fmt.Sprintf("/r%d", i), func(c echo.Context) error {
			return c.String(http.StatusOK, fmt.Sprintf("route %d", i))
		})
	}
	for round, want := range []string{"MISS", "HIT", "HIT"} {
		for i := 0; i < routes; i++ {
			w := httptest.NewRecorder()
			e.ServeHTTP(w, httptest.NewRequest("GET", fmt.Sprintf("/g/r%d", i), nil))
			body, _ := io.ReadAll(w.Result().Body)
			if got := string(body); got != fmt.Sprintf("route %d", i) {
				t.Fatalf("round %d, route %d: body %q", round, i, got)
			}
			if got := w.Header().Get("X-Cache"); got != want {
				t.Fatalf("round %d, route %d: X-Cache %q, want %s", round, i, got, want)
			}
		}
	}
}
