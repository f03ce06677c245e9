package core

import (
	"net/http"
	"sort"
	"strconv"
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

// keyedForwardHeaders are part of every key: the scheme and host helpers of
// the supported frameworks read them (Echo's Context.Scheme reads the
// X-Forwarded-Proto family and X-Url-Scheme; handlers build absolute URLs
// from X-Forwarded-Host), and an unkeyed one lets one client poison a
// response for everyone. Behind a proxy they are constant, so they cost
// nothing. Canonical forms; docs/security.md lists them.
var keyedForwardHeaders = []string{
	"Forwarded", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Protocol",
	"X-Forwarded-Scheme", "X-Forwarded-Ssl", "X-Url-Scheme",
}

// clientIPHeaders carry the client's address as a proxy (or a client
// posing as one) reports it: Gin's Context.ClientIP reads X-Forwarded-For
// and X-Real-Ip (and a TrustedPlatform header), Echo's RealIP the first
// two. They are keyed too, unless the region sets IgnoreClientIPHeaders:
// behind a proxy adding X-Forwarded-For each client then has entries of
// its own.
var clientIPHeaders = []string{
	"Cf-Connecting-Ip", "Fly-Client-Ip", "True-Client-Ip",
	"X-Appengine-Remote-Addr", "X-Forwarded-For", "X-Real-Ip",
}

// credentialHeaders hold secrets: they never enter a key or a stored entry
// in clear (VaryHeaders and templates refuse them).
var credentialHeaders = map[string]bool{"Authorization": true, "Proxy-Authorization": true, "Cookie": true}

// preconditionHeaders make a handler's answer depend on validators or
// ranges the cache does not key on (206, 412 and 416 answers): such
// requests bypass. If-None-Match and If-Modified-Since are answered by the
// cache itself.
var preconditionHeaders = []string{"If-Match", "If-Range", "If-Unmodified-Since", "Range"}

// requestBypass returns why a request must not use the cache, or "".
func (r *Region) requestBypass(req *http.Request) BypassReason {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return BypassMethod
	}
	if req.ContentLength > 0 || len(req.TransferEncoding) > 0 {
		return BypassBody
	}
	if len(req.Header) == 0 {
		return ""
	}
	// Any Authorization line bypasses, whatever its value: a framework
	// may authenticate from a later line than the first (an empty line
	// followed by a token).
	if _, ok := req.Header["Authorization"]; ok && !r.cfg.VaryAuthorization {
		return BypassAuthorization
	}
	if _, ok := req.Header["Proxy-Authorization"]; ok {
		return BypassAuthorization
	}
	for _, h := range preconditionHeaders {
		if _, ok := req.Header[h]; ok {
			return BypassPrecondition
		}
	}
	for _, h := range overrideHeaders {
		if _, ok := req.Header[h]; ok {
			return BypassOverride
		}
	}
	if _, ok := req.Header["Upgrade"]; ok {
		// A handshake (WebSocket, h2c) is answered by switching protocols,
		// never by a stored page.
		return BypassUpgrade
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

// canonicalHeader returns h with every key in canonical form: h itself
// when it already is, else a copy where values written under several
// spellings ("set-cookie", "Set-Cookie") are merged in sorted key order.
// net/http sends a key as the handler wrote it, so checks and storage
// must see "cache-control" as Cache-Control.
func canonicalHeader(h http.Header) http.Header {
	canonical := true
	for k := range h {
		if !caseCanonical(k) && http.CanonicalHeaderKey(k) != k {
			canonical = false
			break
		}
	}
	if canonical {
		return h
	}
	out := make(http.Header, len(h))
	for _, k := range sortedKeys(h) {
		ck := http.CanonicalHeaderKey(k)
		out[ck] = append(out[ck], h[k]...)
	}
	return out
}

// caseCanonical reports, without the work of http.CanonicalHeaderKey,
// that it would return k unchanged because every letter already has the
// case it gives: upper first and after a hyphen, lower elsewhere (a name
// with other bytes it returns unchanged too). false means only "ask it".
func caseCanonical(k string) bool {
	upper := true
	for i := 0; i < len(k); i++ {
		c := k[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			return false
		}
		upper = c == '-'
	}
	return true
}

// responseReason returns why a finished response must not be stored, or "".
// before (the headers set before the cache ran) and h must be canonical
// (canonicalHeader). A Vary an outer middleware set before the cache ran
// is that middleware's business; Accept-Encoding is judged by
// encodingReason.
func (r *Region) responseReason(status int, before, h http.Header) NotStoredReason {
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
			if name == "" || name == headerAE || varies(before["Vary"], name) {
				continue
			}
			if name == "*" || !r.varyHeader[name] {
				return NotStoredVary
			}
		}
	}
	return ""
}

// commitReason predicts, as a fill's headers go out, why its response
// will not be stored, or "" when it is storable so far. before (the
// headers set before the cache ran) and h must be canonical.
func (r *Region) commitReason(rt *Route, status int, before, h http.Header) NotStoredReason {
	if reason := r.responseReason(status, before, h); reason != "" {
		return reason
	}
	if hasTrailers(h) {
		return NotStoredTrailer
	}
	if _, ok := r.responseLifetime(rt, status, h); !ok {
		return NotStoredCacheControl
	}
	if cl := h.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n > r.cfg.MaxEntryBytes {
			return NotStoredTooLarge
		}
	}
	return ""
}

// hasTrailers reports whether a response declares trailers ("Trailer") or
// sets one by net/http's TrailerPrefix, in any spelling: they are computed
// per response, and may be set after the body, so it must be asked of the
// live header map, not of the headers recorded at the first write.
func hasTrailers(h http.Header) bool {
	for k := range h {
		if strings.EqualFold(k, "Trailer") ||
			len(k) >= len(http.TrailerPrefix) && strings.EqualFold(k[:len(http.TrailerPrefix)], http.TrailerPrefix) {
			return true
		}
	}
	return false
}

// storedHeader returns the headers of a response worth replaying: those the
// handler set or changed (headers an outer middleware set before the cache
// ran, such as a request ID, are its business on every request), minus
// hop-by-hop headers, headers named by Connection, and per-response ones.
// before and after must be canonical (canonicalHeader).
func storedHeader(before, after http.Header) http.Header {
	var drop map[string]bool
	for _, v := range after["Connection"] {
		for _, n := range strings.Split(v, ",") {
			if drop == nil {
				drop = map[string]bool{}
			}
			drop[http.CanonicalHeaderKey(strings.TrimSpace(n))] = true
		}
	}
	out := make(http.Header, len(after))
	// The values are copied into one slice (one value per header
	// expected; it grows for more), as http.Header.Clone does; each key's
	// part is capped, so an append to one copies it.
	all := make([]string, 0, len(after))
	for k, vs := range after {
		if hopByHop[k] || notReplayed[k] || drop[k] || len(vs) == 0 {
			continue
		}
		if bv, ok := before[k]; ok && equalValues(bv, vs) {
			continue
		}
		all = append(all, vs...)
		out[k] = all[len(all)-len(vs) : len(all) : len(all)]
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
