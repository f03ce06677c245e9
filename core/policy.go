package core

import (
	"net/http"
	"net/textproto"
	"sort"
	"strconv"
	"strings"

	"github.com/routecache/routecache/core/backend"
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

// bypassReason is why a request to the route is run uncached, or "":
// the Cache is closed, the route's Skip, the request's method, body or
// headers (headerBypass), the breaker.
func (rt *Route) bypassReason(req *http.Request) BypassReason {
	r := rt.r
	switch {
	case r.c.closed.Load():
		return BypassClosed
	case rt.skip != nil && rt.skip(req):
		return BypassSkip
	case req.Method != http.MethodGet && req.Method != http.MethodHead:
		return BypassMethod
	case req.ContentLength > 0 || len(req.TransferEncoding) > 0:
		return BypassBody
	}
	if len(req.Header) > 0 {
		if reason := r.headerBypass(req); reason != "" {
			return reason
		}
	}
	if !r.brk.allow() {
		return BypassBreaker
	}
	return ""
}

// headerBypass returns why a request's headers keep it from the cache,
// or "".
func (r *Region) headerBypass(req *http.Request) BypassReason {
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
	if lines, ok := req.Header["Cookie"]; ok {
		cks := req.Cookies()
		for _, ck := range cks {
			if !r.varyCookie[ck.Name] && !r.ignoreCookie[ck.Name] {
				return BypassCookie
			}
		}
		if r.droppedCookie(lines, len(cks)) {
			return BypassCookie
		}
	}
	return ""
}

// droppedCookie reports whether Cookie lines, of which Go's parser read
// parsed cookies, hold one it dropped (a byte it refuses in the name or
// value: "session=café") under a name the region does not ignore. A
// handler reading the header itself, or a more lenient parser, still
// sees it; the key does not.
func (r *Region) droppedCookie(lines []string, parsed int) bool {
	parts := 0
	for _, l := range lines {
		for p := range strings.SplitSeq(l, ";") {
			if textproto.TrimString(p) != "" {
				parts++
			}
		}
	}
	if parts <= parsed {
		return false // every part was read
	}
	for _, l := range lines {
		for p := range strings.SplitSeq(l, ";") {
			p = textproto.TrimString(p) // as Go's parser trims a part
			if p == "" {
				continue
			}
			name, _, _ := strings.Cut(p, "=")
			if r.ignoreCookie[textproto.TrimString(name)] {
				continue
			}
			if _, err := http.ParseCookie(p); err != nil {
				return true
			}
		}
	}
	return false
}

// unstored reports whether a header (canonical name) is never stored:
// hop-by-hop, describing one connection (Connection, Keep-Alive,
// Proxy-Authenticate, Proxy-Authorization, Proxy-Connection, Te,
// Trailer, Transfer-Encoding, Upgrade); or set by the cache itself on
// every response, or recomputed for each one (Set-Cookie, Date,
// Content-Length, Age, X-Cache, Cache-Status). A switch: no map lookup
// per header of every miss.
func unstored(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"Set-Cookie", "Date", "Content-Length", "Age", "X-Cache", "Cache-Status":
		return true
	}
	return false
}

// canonicalHeader returns h with every key in canonical form: h itself
// when it already is, else a copy where values written under several
// spellings ("set-cookie", "Set-Cookie") are merged in sorted key order.
// net/http sends a key as the handler wrote it, so checks and storage
// must see "cache-control" as Cache-Control.
func canonicalHeader(h http.Header) http.Header {
	ch, _ := canonicalize(h)
	return ch
}

// canonicalize is canonicalHeader, also reporting whether h was canonical
// already (and is returned itself).
func canonicalize(h http.Header) (http.Header, bool) {
	if len(h) == 0 {
		return h, true
	}
	canonical := true
	for k := range h {
		if !keyCanonical(k) {
			canonical = false
			break
		}
	}
	if canonical {
		return h, true
	}
	return mergeCanonical(h), false
}

// keyCanonical reports whether http.CanonicalHeaderKey leaves k as it is.
func keyCanonical(k string) bool {
	switch k {
	case "Content-Type", "X-Cache", "Cache-Control", "Etag", "Last-Modified", "Vary", "Content-Length", "Content-Encoding":
		return true // the usual ones, told by one comparison
	}
	return caseCanonical(k) || http.CanonicalHeaderKey(k) == k
}

// mergeCanonical is canonicalHeader's copy of a non-canonical h.
func mergeCanonical(h http.Header) http.Header {
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

// verdict is what the storage rules say of a response's headers: the
// rules that depend on the headers and status alone, evaluated once when
// a fill's headers go out (setMiss, for Cache-Status) and used again when
// its entry is built, as long as the headers it was judged on are the ones
// recorded (recorder.verdict).
type verdict struct {
	judged bool
	// canonical reports that the headers judged were canonical
	// (canonicalHeader returned them as they were): their snapshot, with
	// only setMiss's canonical keys added, is canonical too.
	canonical bool
	// before is the canonical form of the headers set before the cache ran.
	before http.Header
	// trailers reports a trailer declared or set in the headers judged
	// (hasTrailers; one set later is seen only in the live headers).
	trailers bool
	// contentLength reports a Content-Length in the headers judged (or
	// one under another spelling maybe: not canonical).
	contentLength bool
	reason        NotStoredReason // responseReason's
	life          lifetime        // responseLifetime's
	fresh         bool            // responseLifetime's ok: some freshness allowed
}

// judge evaluates responseReason and responseLifetime on a response's
// headers. before (the headers set before the cache ran) and h are as
// recorded, canonical or not; ch is h's canonical form.
func (r *Region) judge(rt *Route, status int, before, h http.Header) (v verdict, ch http.Header) {
	v, ch, _ = r.judgeSnapshot(rt, status, before, h, nil)
	return v, ch
}

// taken is what judgeSnapshot took of the headers it judged: their
// snapshot (snapshotHeaderInto's) and which headers it holds, and the
// snapshot's headers listed (never a Content-Length: unstored) with
// their share of MemSize: the entry's Replayed to be, when the snapshot
// becomes its headers as it is (backend.Entry.PrepareListed).
type taken struct {
	snap http.Header
	keys snapKeys
	list []backend.HeaderValues
	mem  int64
}

// judgeSnapshot is judge; with ea (not nil) it also takes h's snapshot
// in the same pass over h, its values appended to ea's and its list made
// in ea's replayed array.
func (r *Region) judgeSnapshot(rt *Route, status int, before, h http.Header, ea *entryAlloc) (v verdict, ch http.Header, t taken) {
	// One pass over the keys: are they canonical, is there a trailer, and
	// is any header responseReason reads beyond the status there at all.
	v.canonical = true
	read := false
	var sv []string
	if ea != nil {
		t.snap, sv, t.list = make(http.Header, len(h)), ea.values[:0], ea.replayed[:0]
	}
	for k, vs := range h {
		if v.canonical && !keyCanonical(k) {
			v.canonical = false
		}
		if !v.trailers && isTrailerKey(k) {
			v.trailers = true
		}
		switch k {
		case "Set-Cookie", "Cache-Control", "Vary":
			read = true
		case "Content-Length":
			v.contentLength = true
		}
		if ea != nil {
			var kk snapKeys
			n := len(sv)
			sv, kk = snapshotAdd(t.snap, sv, k, vs)
			t.keys |= kk
			if len(sv) > n {
				// Taken, with its values (the snapshot's: a header
				// without values, not listed, makes it unclean; a
				// Content-Length is never taken, unstored).
				t.mem += backend.HeaderMem(k, vs)
				t.list = append(t.list, backend.HeaderValues{Name: k, Values: sv[n:len(sv):len(sv)]})
			}
		}
	}
	if !v.canonical {
		v.contentLength = true // under some spelling, maybe
	}
	ch = h
	if !v.canonical {
		ch = mergeCanonical(h)
	}
	v.judged, v.before = true, canonicalHeader(before)
	if read || !v.canonical {
		v.reason = r.responseReason(status, v.before, ch)
	} else if !r.status[status] {
		v.reason = NotStoredStatus // all responseReason could say
	}
	if v.reason == "" {
		// A refused response's lifetime is never used: not computed.
		v.life, v.fresh = r.responseLifetime(rt, status, ch)
	}
	return v, ch, t
}

// commitReason predicts, as a fill's headers go out, why its response
// will not be stored, or "" when it is storable so far. v is the verdict
// on the headers going out, h their canonical form.
func (r *Region) commitReason(v verdict, h http.Header) NotStoredReason {
	if v.reason != "" {
		return v.reason
	}
	if v.trailers {
		return NotStoredTrailer
	}
	if !v.fresh {
		return NotStoredCacheControl
	}
	if !v.contentLength {
		return ""
	}
	if cl := h["Content-Length"]; len(cl) > 0 && cl[0] != "" {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil && n > r.cfg.MaxEntryBytes {
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
		if isTrailerKey(k) {
			return true
		}
	}
	return false
}

// isTrailerKey reports whether header name k, in any spelling, is Trailer
// or begins with net/http's TrailerPrefix.
func isTrailerKey(k string) bool {
	// Both begin with a T (7 and 8 bytes): most names are ruled out
	// before EqualFold.
	if len(k) < len("Trailer") || k[0]|0x20 != 't' {
		return false
	}
	return strings.EqualFold(k, "Trailer") ||
		len(k) >= len(http.TrailerPrefix) && strings.EqualFold(k[:len(http.TrailerPrefix)], http.TrailerPrefix)
}

// storedHeader returns the headers of a response worth replaying: those the
// handler set or changed (headers an outer middleware set before the cache
// ran, such as a request ID, are its business on every request), minus
// hop-by-hop headers, headers named by Connection, and per-response ones.
// before and after must be canonical (canonicalHeader).
func storedHeader(before, after http.Header) http.Header {
	drop := connectionNamed(after)
	out := make(http.Header, len(after))
	// The values are copied into one slice (one value per header
	// expected; it grows for more), as http.Header.Clone does; each key's
	// part is capped, so an append to one copies it.
	all := make([]string, 0, len(after))
	for k, vs := range after {
		if !replayable(before, drop, k, vs) {
			continue
		}
		all = append(all, vs...)
		out[k] = all[len(all)-len(vs) : len(all) : len(all)]
	}
	return out
}

// keepStored is storedHeader made of after itself, by deleting what is
// not stored: after must be a copy of the response's headers nothing else
// uses (the recorder's snapshot), whose values are slices of their own
// (http.Header.Clone's, or canonicalHeader's merged ones).
func keepStored(before, after http.Header) http.Header {
	drop := connectionNamed(after)
	for k, vs := range after {
		if !replayable(before, drop, k, vs) {
			delete(after, k)
		}
	}
	return after
}

// connectionNamed is the set of headers the Connection header names (nil
// for none): hop-by-hop for this response.
func connectionNamed(h http.Header) map[string]bool {
	var drop map[string]bool
	for _, v := range h["Connection"] {
		for _, n := range strings.Split(v, ",") {
			if drop == nil {
				drop = map[string]bool{}
			}
			drop[http.CanonicalHeaderKey(strings.TrimSpace(n))] = true
		}
	}
	return drop
}

// replayable reports whether header k with values vs, of a response whose
// Connection header named drop, is stored: not hop-by-hop, not
// per-response, and set or changed by the handler's side (not as it was
// before the cache ran).
func replayable(before http.Header, drop map[string]bool, k string, vs []string) bool {
	if len(vs) == 0 || unstored(k) || drop[k] {
		return false
	}
	bv, ok := before[k]
	return !ok || !equalValues(bv, vs)
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
