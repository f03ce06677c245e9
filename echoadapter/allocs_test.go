package echoadapter_test

import (
	"net/http"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/routecache/routecache/internal/benchwriter"
)

// A hit allocates nothing. Echo v4 applies route middleware on every
// request; the handler the middleware makes around the route's handler
// is made once and remembered (handlermemo.go), so a hit allocates less
// than a pass-through middleware in front of a handler that writes
// nothing (which makes its closure per request).
func TestHitAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are checked without -race")
	}
	allocs := func(e *echo.Echo) float64 {
		req, _ := http.NewRequest("GET", "/articles/42?page=2&sort=title", nil)
		w := benchwriter.New()
		e.ServeHTTP(w, req) // fill
		return testing.AllocsPerRun(200, func() {
			clear(w.H)
			w.N = 0
			e.ServeHTTP(w, req)
		})
	}
	hitEcho := benchEcho(t, true)
	hit := allocs(hitEcho)
	req, _ := http.NewRequest("GET", "/articles/42?page=2&sort=title", nil)
	w := benchwriter.New()
	hitEcho.ServeHTTP(w, req)
	if got := w.H.Get("X-Cache"); got != "HIT" || w.N != len(body1K) {
		t.Fatalf("X-Cache %q, %d bytes: not a hit", got, w.N)
	}
	plain := echo.New()
	pass := func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error { return next(c) }
	}
	plain.GET("/articles/:id", func(echo.Context) error { return nil }, pass)
	if hit != 0 {
		t.Fatalf("a hit allocates %v times (a pass-through middleware: %v)", hit, allocs(plain))
	}
}
