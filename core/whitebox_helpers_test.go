package core

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
)

// Helpers of the white-box tests (package core) whose black-box twins
// live in helpers_test.go.

// serveOnce runs one request through a route with handler h.
func serveOnce(rt *Route, target string, p params, h http.HandlerFunc) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	req := httptest.NewRequest("GET", target, nil)
	_ = rt.handle(w, req, p, "/items/:id", func(w http.ResponseWriter, r *http.Request) error {
		h(w, r)
		return nil
	})
	return w
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
