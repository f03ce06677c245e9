package echo5adapter_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/labstack/echo/v5"
	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/echo5adapter"
)

// An invalidation the backend refuses (nothing listens on the port) is
// queued, and the PUT answers 503 instead of its handler's 200.
func TestInvalidatePendingAnswers503(t *testing.T) {
	rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{
		"r": {Backend: "redis://127.0.0.1:1/0?timeout=50ms"}}, CloseTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	e := echo.New()
	e.PUT("/items/:id", func(c *echo.Context) error {
		return c.JSON(http.StatusOK, map[string]bool{"ok": true})
	}, echo5adapter.Invalidate(rc, core.Tags("item:{id}")))
	w := httptest.NewRecorder()
	e.ServeHTTP(w, httptest.NewRequest("PUT", "/items/1", nil))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("X-Cache-Invalidation") != "pending" {
		t.Fatalf("got %d %v %q, want 503 pending", w.Code, w.Header(), w.Body.String())
	}
	// The tag epoch's bump and the tag's (core/runtimetags.go).
	if st := rc.Stats()["r"]; st.InvalidationsPending != 2 {
		t.Fatalf("pending %d", st.InvalidationsPending)
	}
}
