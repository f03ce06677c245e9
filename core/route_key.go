package core

import (
	"encoding/binary"
	"net/http"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"github.com/routecache/routecache/core/backend"
)

// reqState is the per-request scratch of a lookup, pooled so that a hit
// allocates nothing for its key and counter names. Strings viewing its
// buffers (unsafeString) are valid only until the state goes back to the
// pool: whatever outlives the request (an entry, a flight key, a counter
// snapshot) is cloned first.
type reqState struct {
	key  []byte
	skey []byte // the storage key of a remote entry
	nbuf []byte
	// keyName is where the key counter's name is in nbuf, tagNames
	// where each templated tag's is (in the route's order).
	keyName  span
	tagNames []span
	names    []string
	vals     []uint64
	// call and front are the request's lifecycle state (serve.go), kept
	// here so that a hit allocates neither.
	call  call
	front routeFront
	// params are the route's parameters when an adapter passed them
	// through its request context (Route.handleCtx).
	params ctxParams
}

// span is nbuf[s:e].
type span struct{ s, e int }

var statePool = sync.Pool{New: func() any {
	return &reqState{key: make([]byte, 0, 256), nbuf: make([]byte, 0, 256)}
}}

func getState() *reqState {
	st := statePool.Get().(*reqState)
	st.key, st.skey, st.nbuf, st.tagNames, st.names, st.vals = st.key[:0], st.skey[:0], st.nbuf[:0], st.tagNames[:0], st.names[:0], st.vals[:0]
	return st
}

func putState(st *reqState) {
	// st.names is not cleared: its strings are the region's and route's
	// own, views of nbuf, or (remote stores) names derived from those,
	// overwritten by the next request; a view of an nbuf array that grew
	// keeps at most that array (under 64 KiB) until then, and the pool
	// drops the state at the next collections anyway. Clearing them cost
	// a bulk clear with write barriers on every hit.
	// Drop what outlives the request (its writer, request, entries).
	st.call.ctx, st.call.fallback, st.call.rtags = nil, nil, nil
	clear(st.call.xnames) // entries' counter names
	st.front = routeFront{}
	st.params = ctxParams{}
	if cap(st.key) > 64<<10 || cap(st.nbuf) > 64<<10 {
		return // do not pool huge buffers
	}
	statePool.Put(st)
}

func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// build computes a request's canonical key (into st.key) and the names
// of the counters its entry depends on (st.names, st.vals sized to match):
// the region's, the key's, and each declared tag's. Every key part is
// length-prefixed, so no two different requests share a key. ok is false
// when a template names a missing route parameter.
func (rt *Route) build(st *reqState, req *http.Request, p params, pattern string) bool {
	if rt.key == nil {
		rt.buildKey(st, req, pattern)
		return rt.buildNames(st, req, p, canonicalPath(req.URL))
	}
	r := rt.r
	kb := keyBuilder{b: rt.appendHead(st.key, req)}
	if r.templateKind != "t" {
		kb.field(req.Host) // VaryHeaders lists Host
	}
	st.names = append(st.names, r.regionCounter)
	ks := len(st.nbuf)
	st.nbuf = append(st.nbuf, r.keyCounterPrefix...)
	vs := len(st.nbuf)
	var ok bool
	if st.nbuf, ok = rt.key.appendTo(st.nbuf, req, p); !ok {
		return false
	}
	kb.field(unsafeString(st.nbuf[vs:]))
	if rt.key.exact {
		rt.key.appendExact(&kb, req)
	}
	st.keyName = span{ks, len(st.nbuf)}
	st.names = append(st.names, r.nameView(st.nbuf[ks:], rt.key.printable))
	rt.appendKeyTail(&kb, req)
	st.key = kb.b
	return rt.appendTagNames(st, req, p)
}

// buildKey is build's key (st.key) for a route with the default key,
// without the counter names (buildNames): a hit on the memory store reads
// its counters by the names its entry holds (Route.serveKeyed).
func (rt *Route) buildKey(st *reqState, req *http.Request, pattern string) {
	kb := keyBuilder{b: rt.appendDefaultKey(st.key, req, pattern, rt.query(req))}
	rt.appendKeyTail(&kb, req)
	st.key = kb.b
}

// stackKeyBytes is the size of the buffer on the stack a hit on the
// memory store or a near cache builds its key in (Route.serveKeyed).
const stackKeyBytes = 256

// appendStackKey appends to b, of capacity stackKeyBytes and on the
// caller's stack, what buildKey would build, when it fits and ends with
// Region.keyTailPlain; ok is false otherwise (the general tail may
// hand the buffer to an HMAC, which would move it to the heap). For GET
// and HEAD (every request serveKeyed builds one for, past its bypasses)
// the fields of appendDefaultKey are appended here, without its call and
// appendHead's.
func (rt *Route) appendStackKey(b []byte, req *http.Request, pattern string) (key []byte, ok bool) {
	r := rt.r
	keyed, masked := r.keyedMask(req.Header)
	if req.TLS != nil || !rt.plainTail || !masked || keyed != 0 || rt.codingKeyed.Load() || absoluteForm(req) {
		return nil, false
	}
	query := rt.query(req)
	// Each of the five fields takes its length and a length prefix of at
	// most binary.MaxVarintLen64 bytes.
	n := len(r.keyHead) + 2*binary.MaxVarintLen64 + len(req.Host) + len(pattern) + len(req.URL.Path) + len(req.URL.RawPath) + len(query) + 5*binary.MaxVarintLen64 + len(r.keyTailPlain)
	if n > cap(b)-len(b) {
		return nil, false
	}
	if m := req.Method; (m == http.MethodGet || m == http.MethodHead) && rt.key == nil {
		b = append(b, r.keyHeadGETd...)
		b = appendField(b, req.Host)
		b = appendField(b, pattern)
		b = appendField(b, req.URL.Path)
		b = appendField(b, req.URL.RawPath)
		b = appendField(b, query)
	} else {
		b = rt.appendDefaultKey(b, req, pattern, query)
	}
	return append(b, r.keyTailPlain...), true
}

// appendDefaultKey appends the default key up to its tail: the head, then
// the host, the pattern, the path decoded (URL.Path) and as sent
// (URL.RawPath), and the query (Route.query of the request).
func (rt *Route) appendDefaultKey(b []byte, req *http.Request, pattern, query string) []byte {
	b = rt.appendHead(b, req)
	// The key holds the path as URL.Path has it, decoded: its one escaped
	// form (canonicalPath, which names the key counter: see buildNames,
	// so that InvalidateKey reaches every spelling of it) is a one-to-one
	// function of it, so the two tell the same requests apart, and the
	// decoded path needs no check for bytes to escape on every hit. The
	// key also holds the raw path as sent (RawPath, set when it differs
	// from the escaped form), which Echo's router and Gin's UseRawPath
	// read.
	b = appendField(b, req.Host)
	b = appendField(b, pattern)
	b = appendField(b, req.URL.Path)
	b = appendField(b, req.URL.RawPath)
	return appendField(b, query)
}

// query is the query as the key holds it: as sent, since Echo's
// QueryString (and any handler reading RawQuery) sees "?b=2&a=1" and
// "?a=1&b=2" apart. CanonicalQuery opts in to sorting and re-encoding
// it, for handlers that read only parsed values.
func (rt *Route) query(req *http.Request) string {
	if rt.r.cfg.CanonicalQuery {
		return canonicalQuery(req.URL.RawQuery)
	}
	return req.URL.RawQuery
}

// buildNames is build's counter names (st.names, st.vals sized to match)
// for a route with the default key, its key built by buildKey (path is
// canonicalPath of the request's URL).
func (rt *Route) buildNames(st *reqState, req *http.Request, p params, path string) bool {
	r := rt.r
	st.names = append(st.names, r.regionCounter)
	ks := len(st.nbuf)
	st.nbuf = append(st.nbuf, r.keyCounterPrefix...)
	st.nbuf = append(st.nbuf, path...)
	st.keyName = span{ks, len(st.nbuf)}
	st.names = append(st.names, r.nameView(st.nbuf[ks:], true))
	return rt.appendTagNames(st, req, p)
}

// appendHead appends the start of a key to b: the region's head, the
// method and the key's kind ("t" for a key template, "d" for the default
// key), for GET and HEAD in one append of the bytes encoded once
// (Region.keyHeadGETt and keyHeadGETd).
func (rt *Route) appendHead(b []byte, req *http.Request) []byte {
	r := rt.r
	m := req.Method
	if m == http.MethodGet || m == http.MethodHead {
		if rt.key != nil {
			return append(b, r.keyHeadGETt...)
		}
		return append(b, r.keyHeadGETd...)
	}
	b = appendField(append(b, r.keyHead...), m)
	if rt.key != nil {
		return appendField(b, r.templateKind)
	}
	return appendField(b, "d")
}

// appendKeyTail appends the end of a key: Region.keyTailPlain, encoded
// once, for a request without TLS and without keyed headers on a route
// keying no credential, no KeyFunc and no content coding; appendTail's
// general encoding otherwise.
func (rt *Route) appendKeyTail(kb *keyBuilder, req *http.Request) {
	keyed, masked := rt.r.keyedMask(req.Header) // one pass over the headers
	if req.TLS == nil && rt.plainTail && masked && keyed == 0 && !rt.codingKeyed.Load() && !absoluteForm(req) {
		kb.b = append(kb.b, rt.r.keyTailPlain...)
	} else {
		rt.appendTail(kb, req, keyed, masked)
	}
}

// appendTagNames appends the names of the route's tag counters to
// st.names (a templated one built in st.nbuf) and sizes st.vals to
// match. ok is false when a template names a missing route parameter.
func (rt *Route) appendTagNames(st *reqState, req *http.Request, p params) bool {
	r := rt.r
	for i, t := range rt.tags {
		if t.static {
			st.names = append(st.names, rt.staticTags[i])
			continue
		}
		ts := len(st.nbuf)
		st.nbuf = append(st.nbuf, rt.tagLeads[i]...)
		var ok bool
		if st.nbuf, ok = t.appendFrom(st.nbuf, req, p, rt.tagFrom[i]); !ok {
			return false
		}
		st.tagNames = append(st.tagNames, span{ts, len(st.nbuf)})
		st.names = append(st.names, r.nameView(st.nbuf[ts:], t.printable))
	}
	st.vals = slices.Grow(st.vals, len(st.names))[:len(st.names)]
	return true
}

// absoluteForm reports whether a request a server received had its target
// in absolute form ("GET http://host/page", which clients send to
// proxies): its handler sees a scheme (URL.Scheme) and a RequestURI that
// a request for the same host and path in origin form ("GET /page") does
// not, so its key holds the target as sent. A request made by a client,
// not received, has no RequestURI.
func absoluteForm(req *http.Request) bool {
	return len(req.RequestURI) > 0 && req.RequestURI[0] != '/'
}

// appendTail appends the end of a request's key: whether the connection
// was TLS (and the target as sent when in absolute form), the keyed headers (keyed and masked: Region.keyedMask of its
// headers), the credentials' HMAC, KeyFunc's part and the content coding.
func (rt *Route) appendTail(kb *keyBuilder, req *http.Request, keyed uint64, masked bool) {
	r := rt.r
	// Whether the connection was TLS: Echo's Scheme() reads it first.
	tls := ""
	if req.TLS != nil {
		tls = "tls"
	}
	if absoluteForm(req) {
		// Marked (never "" nor "tls": the ';'), then the request target
		// as sent, whose scheme (URL.Scheme) and RequestURI reach the
		// handler; by HMAC, as a credential: it may hold a user and
		// password ("http://user:pass@host/").
		kb.b = binary.AppendUvarint(kb.b, uint64(len(tls)+1))
		kb.b = append(append(kb.b, tls...), ';')
		kb.macOne(r.c, req.RequestURI)
	} else {
		kb.field(tls)
	}
	r.appendKeyed(kb, req.Header, keyed, masked)
	// Credentials enter the key as an HMAC of all their values, never in
	// clear: the key is stored in the entry, and the entry in the backend.
	for _, name := range r.varyCookies {
		kb.mac(r.c, cookieValues(req, name))
	}
	if r.cfg.VaryAuthorization {
		kb.mac(r.c, req.Header["Authorization"])
	}
	if rt.keyFn != nil {
		// The application's part (KeyFunc), keyed by HMAC like a
		// credential: it may be a tenant or user id.
		kb.macOne(r.c, rt.keyFn(req))
	}
	// Last, the request's content coding, normalised (compress.go): ""
	// until the route's responses vary on Accept-Encoding.
	if r.keyCoding || rt.codingKeyed.Load() {
		kb.field(normalizedCoding(req.Header))
	} else {
		kb.field("")
	}
}

// nameView returns a counter name built in a request state's nbuf as a
// view of it, or its stored form for a remote store. A view taken while
// nbuf still grows stays right: appends write only past its end, and one
// that reallocates leaves the old array, which the view keeps alive,
// unchanged. printable is set when the name is known to be visible ASCII
// (its fixed parts were checked once, its values are escaped), so that
// only its length decides whether a remote store keeps it as it is.
func (r *Region) nameView(b []byte, printable bool) string {
	if r.keys == backend.KeysPlain {
		return unsafeString(b) // the memory store's: inlined, no call
	}
	return r.storedNameView(b, printable)
}

// storedNameView is nameView for a remote store.
func (r *Region) storedNameView(b []byte, printable bool) string {
	n := unsafeString(b)
	if !(r.prefixPrintable && printable && len(n) <= maxPlainCounterName) {
		n = r.counterName(n)
	}
	return n
}

// appendKeyedHeaders appends every line of each keyed header, in the order
// of keyedHeaders (an absent header is an empty list).
func (r *Region) appendKeyedHeaders(kb *keyBuilder, h http.Header) {
	keyed, masked := r.keyedMask(h)
	r.appendKeyed(kb, h, keyed, masked)
}

// keyedMask returns which keyed headers h carries, bit i standing for
// keyedHeaders[i], looking up whichever of the request's headers and the
// keyed ones are fewer. masked is false when there are more than 64
// keyed headers: no mask then.
func (r *Region) keyedMask(h http.Header) (keyed uint64, masked bool) {
	switch {
	case len(r.keyedHeaders) > 64:
		return 0, false
	case len(h) == 0:
		return 0, true
	case len(h) >= len(r.keyedHeaders):
		for i, name := range r.keyedHeaders {
			if _, ok := h[name]; ok {
				keyed |= 1 << i
			}
		}
	default:
		for name := range h {
			if i, ok := r.keyedIndex[name]; ok {
				keyed |= 1 << i
			}
		}
	}
	return keyed, true
}

// appendKeyed is appendKeyedHeaders with h's keyedMask.
func (r *Region) appendKeyed(kb *keyBuilder, h http.Header, keyed uint64, masked bool) {
	switch {
	case !masked:
		for _, name := range r.keyedHeaders {
			kb.values(h[name])
		}
	case keyed == 0:
		kb.b = append(kb.b, r.keyedNone...)
	default:
		for i, name := range r.keyedHeaders {
			if keyed&(1<<i) != 0 {
				kb.values(h[name])
			} else {
				kb.b = append(kb.b, 0) // an empty list
			}
		}
	}
}

// canonicalKey returns the canonical key text of a request and its key
// counter's logical name, as copies (for tests and tools).
func (rt *Route) canonicalKey(req *http.Request, p params, pattern string) (canonical, keyName string, ok bool) {
	st := getState()
	defer putState(st)
	if !rt.build(st, req, p, pattern) {
		return "", "", false
	}
	kn := string(st.nbuf[st.keyName.s:st.keyName.e])
	return string(st.key), strings.TrimPrefix(kn, rt.r.keyCounterPrefix), true
}
