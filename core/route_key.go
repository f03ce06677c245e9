package core

import (
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
	key   []byte
	skey  []byte // the storage key of a remote entry
	nbuf  []byte
	refs  []nameRef
	names []string
	vals  []uint64
	// call and front are the request's lifecycle state (serve.go), kept
	// here so that a hit allocates neither.
	call  call
	front routeFront
}

// nameRef is a counter name: a static string, or nbuf[s:e]. printable
// is set when the built name is known to be visible ASCII (its fixed
// parts were checked once, its values are escaped), so that only its
// length decides whether a remote store keeps it as it is.
type nameRef struct {
	static    string
	s, e      int
	printable bool
}

var statePool = sync.Pool{New: func() any {
	return &reqState{key: make([]byte, 0, 256), nbuf: make([]byte, 0, 256)}
}}

func getState() *reqState {
	st := statePool.Get().(*reqState)
	st.key, st.skey, st.nbuf, st.refs, st.names, st.vals = st.key[:0], st.skey[:0], st.nbuf[:0], st.refs[:0], st.names[:0], st.vals[:0]
	return st
}

func putState(st *reqState) {
	clear(st.names) // drop views and strings before pooling
	// Drop what outlives the request (its writer, request, entries).
	st.call.ctx, st.call.fallback, st.call.rtags = nil, nil, nil
	clear(st.call.xnames) // entries' counter names
	st.front = routeFront{}
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
	r := rt.r
	kb := keyBuilder{b: st.key}
	if m := req.Method; m == http.MethodGet || m == http.MethodHead {
		kb.b = append(kb.b, r.keyHeadGET...)
	} else {
		kb.b = append(kb.b, r.keyHead...)
		kb.field(m)
	}
	st.refs = append(st.refs, nameRef{static: r.regionCounter})
	ks := len(st.nbuf)
	st.nbuf = append(st.nbuf, r.keyCounterPrefix...)
	if rt.key != nil {
		vs := len(st.nbuf)
		var ok bool
		if st.nbuf, ok = rt.key.appendTo(st.nbuf, req, p); !ok {
			return false
		}
		kb.field("t")
		kb.field(unsafeString(st.nbuf[vs:]))
		if rt.key.exact {
			rt.key.appendExact(&kb, req)
		}
	} else {
		// The key counter names the path in its one escaped form, so that
		// InvalidateKey reaches every spelling of it; the key itself also
		// holds the raw path as sent (RawPath, set when it differs from
		// that form), which Echo's router and Gin's UseRawPath read.
		path := canonicalPath(req.URL)
		st.nbuf = append(st.nbuf, path...)
		kb.field("d")
		kb.field(req.Host)
		kb.field(pattern)
		kb.field(path)
		kb.field(req.URL.RawPath)
		// The query as sent: Echo's QueryString (and any handler reading
		// RawQuery) sees "?b=2&a=1" and "?a=1&b=2" apart. CanonicalQuery
		// opts in to sorting and re-encoding it, for handlers that read
		// only parsed values.
		if r.cfg.CanonicalQuery {
			kb.field(canonicalQuery(req.URL.RawQuery))
		} else {
			kb.field(req.URL.RawQuery)
		}
	}
	st.refs = append(st.refs, nameRef{s: ks, e: len(st.nbuf), printable: r.prefixPrintable && (rt.key == nil || rt.key.printable)})
	// Whether the connection was TLS: Echo's Scheme() reads it first.
	if req.TLS != nil {
		kb.field("tls")
	} else {
		kb.field("")
	}
	r.appendKeyedHeaders(&kb, req.Header)
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
	st.key = kb.b
	for i, t := range rt.tags {
		if t.static {
			st.refs = append(st.refs, nameRef{static: rt.staticTags[i]})
			continue
		}
		ts := len(st.nbuf)
		st.nbuf = append(st.nbuf, r.tagCounterPrefix...)
		var ok bool
		if st.nbuf, ok = t.appendTo(st.nbuf, req, p); !ok {
			return false
		}
		st.refs = append(st.refs, nameRef{s: ts, e: len(st.nbuf), printable: r.prefixPrintable && t.printable})
	}
	// Views are taken only now that nbuf has stopped growing.
	remote := r.keys != backend.KeysPlain
	for _, ref := range st.refs {
		n := ref.static
		if n == "" {
			n = unsafeString(st.nbuf[ref.s:ref.e])
			if remote && !(ref.printable && len(n) <= maxPlainCounterName) {
				n = r.counterName(n)
			}
		}
		st.names = append(st.names, n)
	}
	st.vals = slices.Grow(st.vals, len(st.names))[:len(st.names)]
	return true
}

// appendKeyedHeaders appends every line of each keyed header, in the order
// of keyedHeaders (an absent header is an empty list). Whichever of the
// request's headers and the keyed ones are fewer is the one looked up.
func (r *Region) appendKeyedHeaders(kb *keyBuilder, h http.Header) {
	if len(h) == 0 {
		kb.b = append(kb.b, r.keyedNone...)
		return
	}
	if len(h) >= len(r.keyedHeaders) || len(r.keyedHeaders) > 64 {
		for _, name := range r.keyedHeaders {
			kb.values(h[name])
		}
		return
	}
	var present uint64
	for name := range h {
		if i, ok := r.keyedIndex[name]; ok {
			present |= 1 << i
		}
	}
	if present == 0 {
		kb.b = append(kb.b, r.keyedNone...)
		return
	}
	for i, name := range r.keyedHeaders {
		if present&(1<<i) != 0 {
			kb.values(h[name])
		} else {
			kb.b = append(kb.b, 0) // an empty list
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
	kn := string(st.nbuf[st.refs[1].s:st.refs[1].e])
	return string(st.key), strings.TrimPrefix(kn, rt.r.keyCounterPrefix), true
}
