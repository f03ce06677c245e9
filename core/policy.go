package core

import (
	"net/http"
	"sort"
	"strings"
)

// overrideHeaders change how some frameworks and proxies route or interpret
// a request without changing its URL. A handler that honours one would put
// a response under a key that does not describe it, so such requests skip
// the cache (web cache poisoning, e.g. X-Original-URL on a shared route).
var overrideHeaders = []string{
	"X-Http-Method-Override", "X-Http-Method", "X-Method-Override",
	"X-Original-Url", "X-Rewrite-Url",
}

// keyedForwardHeaders are part of every default key: handlers commonly build
// absolute URLs from them, and an unkeyed one lets one client poison a
// response for everyone. Behind a proxy they are constant, so they cost
// nothing.
var keyedForwardHeaders = []string{"X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Scheme", "Forwarded"}

// requestBypass returns why a request must not use the cache, or "".
func (r *Region) requestBypass(req *http.Request) string {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return BypassMethod
	}
	if req.ContentLength > 0 || len(req.TransferEncoding) > 0 {
		return BypassBody
	}
	if len(req.Header) == 0 {
		return ""
	}
	if !r.cfg.VaryAuthorization && req.Header.Get("Authorization") != "" {
		return BypassAuthorization
	}
	for _, h := range overrideHeaders {
		if _, ok := req.Header[h]; ok {
			return BypassOverride
		}
	}
	if _, ok := req.Header["Cookie"]; ok {
		for _, ck := range req.Cookies() {
			if !r.varyCookie[ck.Name] && !r.ignoreCookie[ck.Name] {
				return BypassCookie
			}
		}
	}
	return ""
}

// hopByHop headers describe one connection, never a stored response.
var hopByHop = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Proxy-Connection": true, "Te": true,
	"Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
}

// notReplayed are headers the cache sets itself on every response, or that
// must be recomputed for each one.
var notReplayed = map[string]bool{
	"Set-Cookie": true, "Date": true, "Content-Length": true, "Age": true,
	"X-Cache": true, "Cache-Status": true,
}

// responseReason returns why a finished response must not be stored, or "".
func (r *Region) responseReason(status int, h http.Header) string {
	if !r.status[status] {
		return NotStoredStatus
	}
	if _, ok := h["Set-Cookie"]; ok {
		return NotStoredSetCookie
	}
	for _, v := range h["Cache-Control"] {
		for _, d := range strings.Split(v, ",") {
			d = strings.TrimSpace(d)
			if i := strings.IndexByte(d, '='); i >= 0 {
				d = d[:i]
			}
			switch strings.ToLower(strings.TrimSpace(d)) {
			case "private", "no-store", "no-cache":
				return NotStoredCacheControl
			}
		}
	}
	for _, v := range h["Vary"] {
		for _, name := range strings.Split(v, ",") {
			name = http.CanonicalHeaderKey(strings.TrimSpace(name))
			if name == "" {
				continue
			}
			if name == "*" || !r.varyHeader[name] {
				return NotStoredVary
			}
		}
	}
	return ""
}

// storedHeader returns the headers of a response worth replaying: those the
// handler set or changed (headers an outer middleware set before the cache
// ran, such as a request ID, are its business on every request), minus
// hop-by-hop headers, headers named by Connection, and per-response ones.
func storedHeader(before, after http.Header) http.Header {
	drop := map[string]bool{}
	for _, v := range after["Connection"] {
		for _, n := range strings.Split(v, ",") {
			drop[http.CanonicalHeaderKey(strings.TrimSpace(n))] = true
		}
	}
	out := make(http.Header, len(after))
	for k, vs := range after {
		if hopByHop[k] || notReplayed[k] || drop[k] || len(vs) == 0 {
			continue
		}
		if bv, ok := before[k]; ok && equalValues(bv, vs) {
			continue
		}
		out[k] = append([]string(nil), vs...)
	}
	return out
}

func equalValues(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func sortedKeys(h http.Header) []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
