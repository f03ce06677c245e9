package core

import (
	"bufio"
	"net"
	"net/http"
	"strconv"

	"github.com/routecache/routecache/core/backend"
)

// recorder is the writer the cache hands to the downstream handler on
// a miss (and the invalidating writer on mutating routes). It streams to the
// client while keeping a bounded copy of the response. Adapters see it as
// an adapter.ResponseWriter (package core/adapter, whose interface its
// exported methods implement) and wrap it in their framework's writer
// type; Status, Size and Written let them answer their framework's
// questions.
//
// Headers are committed lazily, at the first Write, Flush or when the
// handler returns; as in net/http, the first WriteHeader wins (the Gin
// adapter applies Gin's "last before the first write wins" itself).
type recorder struct {
	w         http.ResponseWriter
	hdr       http.Header
	before    http.Header // copy of the headers before the handler ran
	status    int
	size      int
	max       int64
	body      []byte
	clientErr error
	// snapshot is a copy of the headers as committed (or as released): the
	// recorded response's, private to the recorder.
	snapshot http.Header
	// list: setMiss listed the snapshot's headers (built in ea's replayed
	// array) with their share of MemSize (listMem) as it took it (see
	// taken), when listed; cleared when the snapshot is retaken.
	list    []backend.HeaderValues
	listMem int64
	// ea is the allocation of the entry the recorded response may become
	// (made with the snapshot, whose values it holds): see entryAlloc.
	ea *entryAlloc
	// verdict is the storage rules' verdict on the committed headers
	// (setMiss judges them for Cache-Status), kept for building the entry;
	// cleared when the snapshot is retaken from headers that may have
	// changed since (a held response).
	verdict verdict
	// onCommit runs once, just before the status line goes to the client.
	onCommit func(rw *recorder)
	// fill is the call whose fill this recorder records (nil otherwise):
	// setMiss reads its region, route and tags.
	fill *call

	// The flags, together (no padding after each).

	// hold keeps the response from the client (headers in hdr, body in
	// body) until release: used when a stale entry can stand in for a
	// failing handler, and for background refreshes.
	hold     bool
	commit   bool
	record   bool
	over     bool
	flushed  bool
	hijacked bool
	// snapClean: snapshotHeader found the snapshot clean (see there).
	snapClean bool
	// snapKeys tells which headers the snapshot may hold (snapKeys).
	snapKeys snapKeys
	// snapTaken: setMiss took the snapshot as it judged the headers
	// (nothing it adds after is stored), so the commit takes none.
	snapTaken bool
	// listed: list is setMiss's (see list).
	listed bool
	// lateDue: the status went to the client's writer, which had lateN
	// headers before, and the headers it went out with are judged at the
	// first body write (sendBody), or when the handler is done if there
	// is none (judgeLateDue).
	lateDue bool
	lateN   int
	// late is why the response may not be stored, judged on the headers
	// the client's writer went out with when they differ from those
	// recorded (judgeLate), or "".
	late NotStoredReason
}

var (
	_ http.Flusher  = (*recorder)(nil)
	_ http.Hijacker = (*recorder)(nil)
)

// Header returns the response's header map (the client writer's, unless
// the response is held back).
func (rw *recorder) Header() http.Header {
	if rw.hdr != nil {
		return rw.hdr
	}
	return rw.w.Header()
}

// WriteHeader records the status; it reaches the client on commit.
// Informational statuses (1xx, except 101) pass straight through.
func (rw *recorder) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		rw.w.WriteHeader(code)
		return
	}
	if !rw.commit && rw.status == 0 {
		rw.status = code // the first status wins, as in net/http
	}
}

// Write streams b to the client and records it while within the cap. A
// failed client write is remembered, not returned: the recorded copy is
// what coalesced waiters receive, so the fill does not stop when the first
// caller goes away.
func (rw *recorder) Write(b []byte) (int, error) {
	if !rw.commit {
		rw.doCommit()
	}
	rw.size += len(b)
	if rw.record && !rw.over {
		if int64(len(rw.body)+len(b)) > rw.max {
			if rw.hold {
				rw.release() // too big to hold back: stream from here on
			}
			rw.over, rw.body = true, nil
		} else {
			if n := len(rw.body) + len(b); n > cap(rw.body) {
				rw.grow(n)
			}
			rw.body = append(rw.body, b...)
			if rw.hold {
				return len(b), nil
			}
		}
	}
	if rw.clientErr == nil {
		rw.sendBody(b)
	}
	if !rw.record && rw.clientErr != nil {
		return 0, rw.clientErr
	}
	return len(b), nil
}

// grow makes room for n bytes of body (n within the cap): at the first
// write, as many as the Content-Length says (sizeHint); then by doubling,
// up to the cap, so that a body recorded in many writes is copied about
// once in all, where append's 1.25x steps for large slices copy it
// several times over.
func (rw *recorder) grow(n int) {
	c := rw.sizeHint(n)
	if rw.body != nil {
		c = max(n, 2*cap(rw.body))
		if int64(c) > rw.max {
			c = int(rw.max) // n <= rw.max: Write checked it
		}
	}
	rw.body = append(make([]byte, 0, c), rw.body...)
}

// sizeHint is the capacity the recorded body starts with, at a first
// write of n bytes: the response's Content-Length when the handler set
// one within the cap (the body then grows by no copy), else n.
func (rw *recorder) sizeHint(n int) int {
	if v := rw.verdict; v.judged && !v.contentLength {
		return n // none in the headers judged at the commit, just now
	}
	if vs := rw.Header()["Content-Length"]; len(vs) == 1 {
		if l, err := strconv.ParseInt(vs[0], 10, 64); err == nil && l > int64(n) && l <= rw.max {
			return int(l)
		}
	}
	return n
}

// WriteString is Write for strings.
func (rw *recorder) WriteString(s string) (int, error) { return rw.Write([]byte(s)) }

// Flush commits and flushes; a flushed response is a stream and is not stored.
func (rw *recorder) Flush() {
	if !rw.commit {
		rw.doCommit()
	}
	rw.flushed = true
	if rw.hold {
		rw.release()
	}
	_ = http.NewResponseController(rw.w).Flush()
}

// Hijack hands over the connection; the response is not stored.
func (rw *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if rw.hold {
		rw.release()
	}
	rw.hijacked = true
	rw.commit = true
	return http.NewResponseController(rw.w).Hijack()
}

// Unwrap returns the client writer, for http.ResponseController.
func (rw *recorder) Unwrap() http.ResponseWriter { return rw.w }

// Status returns the status written or pending, 0 if none yet.
func (rw *recorder) Status() int { return rw.status }

// Size returns the body bytes written so far.
func (rw *recorder) Size() int { return rw.size }

// Written reports whether the status line has been committed.
func (rw *recorder) Written() bool { return rw.commit }

func (rw *recorder) doCommit() {
	rw.commit = true
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	if rw.onCommit != nil {
		rw.onCommit(rw)
	}
	if rw.record && !rw.snapTaken {
		rw.snapshot, rw.snapClean, rw.snapKeys = snapshotHeaderInto(rw.Header(), rw.alloc().values[:0])
	}
	if !rw.hold {
		rw.sendStatus()
	}
}

// sendStatus sends the status to the client's writer. A writer of an
// outer middleware may set headers as the status goes out (Echo's
// Response.Before hooks, a session manager saving the session in its
// writer's WriteHeader), or at the first body write (where Gin's writer
// sends them): they reach the client with the response, after the
// recorder took its snapshot. When that changed the headers, they are
// judged again as sent, once, after the first body write (sendBody) or
// when the handler is done without one (judgeLateDue), and a
// Set-Cookie, Cache-Control or Vary that refuses storing keeps the
// response out of the cache (late).
func (rw *recorder) sendStatus() {
	if rw.record && rw.fill != nil {
		rw.lateDue, rw.lateN = true, len(rw.w.Header())
	}
	rw.w.WriteHeader(rw.status)
}

// sendBody writes b to the client's writer, judging the headers it sent
// after the first write (sendStatus).
func (rw *recorder) sendBody(b []byte) {
	if _, err := rw.w.Write(b); err != nil {
		rw.clientErr = err
	}
	if rw.lateDue {
		rw.judgeLateDue()
	}
}

// judgeLateDue judges the client's headers again, as they went out, when
// the status or first write changed them as far as the storage rules
// read (late): when sendStatus left that due.
func (rw *recorder) judgeLateDue() {
	if !rw.lateDue {
		return
	}
	rw.lateDue = false
	h := rw.w.Header()
	if len(h) == rw.lateN && rw.asTaken(h, "Set-Cookie", snapSetCookie) &&
		rw.asTaken(h, "Cache-Control", snapCacheControl) && rw.asTaken(h, "Vary", snapVary) {
		return // unchanged, as far as the storage rules read
	}
	rw.late = rw.fill.r.responseReason(rw.status, canonicalHeader(rw.before), canonicalHeader(h))
}

// asTaken reports whether h holds the values of k the snapshot holds
// (none, when its keys say it has no k: no lookup in it).
func (rw *recorder) asTaken(h http.Header, k string, bit snapKeys) bool {
	if rw.snapKeys&bit == 0 {
		return len(h[k]) == 0
	}
	return equalValues(h[k], rw.snapshot[k])
}

// settleHeld is a fill's end for a committed response held back (tags:
// the fill's runtime tags; failed: the fill failed). It goes out when
// released, with every header set until then, not just those present at
// its first write: a request's response it will not replace is sent now,
// so that what the client's writer adds as it goes out is judged with it
// (sendStatus); else the snapshot is taken again.
func (rw *recorder) settleHeld(tags *tagSet, failed bool) {
	if tags != nil {
		tags.takeHeaders(rw.hdr)
	}
	if !failed && rw.fill != nil {
		rw.release()
	} else {
		rw.resnapshot()
	}
}

// refusal is why the recorded response is not stored, as far as how it
// was written tells ("" when nothing there refuses it; the storage rules
// judge its headers apart). errored: the producer failed or the framework
// kept the response out (ErrSkipStore); ended: the fill's context ended.
func (rw *recorder) refusal(errored, ended bool) NotStoredReason {
	switch {
	case errored:
		return NotStoredError
	case rw.hijacked:
		return NotStoredHijacked
	case rw.flushed:
		return NotStoredFlushed
	case rw.over:
		return NotStoredTooLarge
	case ended:
		return NotStoredError
	case hasTrailers(rw.Header()): // the live map: trailers come after the body
		return NotStoredTrailer
	case rw.late != "": // headers an outer writer set as the status went out
		return rw.late
	}
	return ""
}

// release sends a held response: its headers replace the client's, then
// the status and the body recorded so far; writes stream from then on.
func (rw *recorder) release() {
	if !rw.hold {
		return
	}
	if !rw.commit {
		rw.doCommit() // still held: records the status and snapshot only
	}
	rw.hold = false
	if rw.record {
		rw.resnapshot() // what the client gets
	}
	h := rw.w.Header()
	clear(h)
	for k, vs := range rw.hdr {
		h[k] = vs
	}
	rw.hdr = nil
	rw.sendStatus()
	if len(rw.body) > 0 && rw.clientErr == nil {
		rw.sendBody(rw.body)
	}
}

// snapshotHeader is h.Clone() without the headers never stored that
// nothing judges either (unstored, but for Set-Cookie, which refuses a
// response, and Connection, which names more headers not to store): what
// the recorder keeps of the headers sent, for judging and storing them.
// clean reports that keepStored would find nothing to remove but for the
// headers equal to those set before the cache ran: no Set-Cookie, no
// Connection, no header without a value. In one pass over h: the values
// are appended to one slice sized for one value per header (a header with
// more grows it; the parts already taken keep the old array), each key's
// part capped, so that an append to one copies it.
func snapshotHeader(h http.Header) (snap http.Header, clean bool) {
	snap, clean, _ = snapshotHeaderInto(h, make([]string, 0, len(h)))
	return snap, clean
}

// snapshotHeaderInto is snapshotHeader appending the values to sv (an
// empty slice whose capacity is used first: an entryAlloc's values),
// also telling which headers the snapshot holds.
func snapshotHeaderInto(h http.Header, sv []string) (snap http.Header, clean bool, keys snapKeys) {
	out := make(http.Header, len(h))
	for k, vs := range h {
		var kk snapKeys
		sv, kk = snapshotAdd(out, sv, k, vs)
		keys |= kk
	}
	return out, keys&snapUnclean == 0, keys
}

// snapKeys records, of a snapshot the recorder took, whether it is
// unclean (snapshotHeader) and which of the few headers the fill reads
// from it it holds under their canonical names, so that the fill looks up
// only those present. The snapshot's keys must all be canonical for an
// absent bit to mean an absent header (the fill checks it: verdict's
// canonical).
type snapKeys uint8

const (
	snapUnclean snapKeys = 1 << iota
	snapEtag
	snapLastModified
	snapVary
	snapSetCookie
	snapCacheControl
	// snapAll: the headers the snapshot holds are not known.
	snapAll = snapEtag | snapLastModified | snapVary | snapSetCookie | snapCacheControl
)

// snapshotAdd is snapshotHeader's step for one header k with values vs:
// it adds them to out (their copy appended to sv, which it returns), and
// tells what k is among snapKeys.
func snapshotAdd(out http.Header, sv []string, k string, vs []string) (_ []string, keys snapKeys) {
	switch {
	case k == "Set-Cookie" || k == "Connection":
		keys = snapUnclean
	case unstored(k):
		return sv, 0
	case len(vs) == 0:
		keys = snapUnclean
	}
	switch k {
	case "Etag":
		keys |= snapEtag
	case "Last-Modified":
		keys |= snapLastModified
	case "Vary":
		keys |= snapVary
	case "Set-Cookie":
		keys |= snapSetCookie
	case "Cache-Control":
		keys |= snapCacheControl
	}
	if vs == nil {
		out[k] = nil // as Clone: a nil value stays nil
		return sv, keys
	}
	sv = append(sv, vs...)
	out[k] = sv[len(sv)-len(vs) : len(sv) : len(sv)]
	return sv, keys
}

// alloc returns the recorder's entryAlloc, made at its first use.
func (rw *recorder) alloc() *entryAlloc {
	if rw.ea == nil {
		rw.ea = new(entryAlloc)
	}
	return rw.ea
}

// resnapshot takes the snapshot again from a held response's headers,
// which the handler may have changed since the commit judged them.
func (rw *recorder) resnapshot() {
	rw.snapshot, rw.snapClean, rw.snapKeys = rw.hdr.Clone(), false, snapUnclean|snapAll
	rw.verdict, rw.list, rw.listed = verdict{}, nil, false
}

// finish commits a response the handler left uncommitted (an implicit 200,
// which net/http and Gin would send anyway).
func (rw *recorder) finish() {
	if !rw.commit {
		rw.doCommit()
	}
}

// WriteHeaderNow commits the status and headers without writing a body
// (Gin's recorder has the same method).
func (rw *recorder) WriteHeaderNow() {
	if !rw.commit {
		rw.doCommit()
	}
}
