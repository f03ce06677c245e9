package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
)

// A GET on the purge endpoint gets the same answer on every framework:
// the endpoint's own 405, with Allow and a JSON error.
func TestDemoPurgeAnswersOtherMethodsAlike(t *testing.T) {
	for _, fw := range []string{"gin", "echo", "nethttp"} {
		t.Run(fw, func(t *testing.T) {
			h, rc, err := newServer(config{Framework: fw, PurgeTok: "tok", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = rc.Close() })
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)
			for _, method := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
				req, _ := http.NewRequest(method, srv.URL+"/_cache/purge", nil)
				req.Header.Set("Authorization", "Bearer tok")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				var body map[string]any
				derr := json.NewDecoder(resp.Body).Decode(&body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST, PURGE" || derr != nil || body["error"] == nil {
					t.Errorf("%s: %d, Allow %q, body %v (%v)", method, resp.StatusCode, resp.Header.Get("Allow"), body, derr)
				}
			}
		})
	}
}
