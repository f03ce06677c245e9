package core_test

import (
	"compress/gzip"
	"net/http"
	"strings"
)

// gzipHandler is the kind of gzip middleware net/http applications write
// (or take from a library): for a client whose Accept-Encoding mentions
// gzip it announces Content-Encoding and Vary up front, drops any
// Content-Length, and compresses whatever the handler writes.
func gzipHandler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Accept-Encoding")
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Encoding", "gzip")
		gw := &gzipWriter{ResponseWriter: w}
		defer gw.close()
		h.ServeHTTP(gw, r)
	})
}

type gzipWriter struct {
	http.ResponseWriter
	zw *gzip.Writer
}

func (g *gzipWriter) WriteHeader(code int) {
	g.Header().Del("Content-Length")
	g.ResponseWriter.WriteHeader(code)
}

func (g *gzipWriter) Write(b []byte) (int, error) {
	if g.zw == nil {
		g.Header().Del("Content-Length")
		g.zw = gzip.NewWriter(g.ResponseWriter)
	}
	return g.zw.Write(b)
}

// close ends the gzip stream; a response with no body stays empty.
func (g *gzipWriter) close() {
	if g.zw != nil {
		_ = g.zw.Close()
	} else {
		g.Header().Del("Content-Encoding")
	}
}

func (g *gzipWriter) Unwrap() http.ResponseWriter { return g.ResponseWriter }
