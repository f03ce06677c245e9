package ginadapter_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/routecache/routecache/core"
	"github.com/routecache/routecache/ginadapter"
)

// An invalidation the backend refuses (nothing listens on the port) is
// queued, and the PUT answers 503 instead of its handler's 204.
func TestInvalidatePendingAnswers503(t *testing.T) {
	gin.SetMode(gin.TestMode)
	rc, err := core.New(core.Config{Regions: map[string]core.RegionConfig{
		"r": {Backend: "redis://127.0.0.1:1/0?timeout=50ms"}}, CloseTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	r := gin.New()
	r.PUT("/items/:id", ginadapter.Invalidate(rc, core.Tags("item:{id}")), func(c *gin.Context) {
		c.JSON(http.StatusOK, gin.H{"ok": true})
	})
	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest("PUT", "/items/1", nil))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("X-Cache-Invalidation") != "pending" {
		t.Fatalf("got %d %v %q, want 503 pending", w.Code, w.Header(), w.Body.String())
	}
	// The tag epoch's bump and the tag's (core/runtimetags.go).
	if st := rc.Stats()["r"]; st.InvalidationsPending != 2 {
		t.Fatalf("pending %d", st.InvalidationsPending)
	}
}
