package redis

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// RESP2, as the lean read path (lean.go) writes its commands and reads
// their replies: only what GETRANGE, AUTH, SELECT, CLIENT SETNAME and INFO
// answer (simple strings, errors, integers, bulk strings). Nothing here
// allocates except the bytes of an entry.

// replyError is an error reply of the server ("-WRONGTYPE ...",
// "-NOAUTH ..."). It is a go-redis redis.Error, so that the backend and
// its callers classify it as they classify go-redis's own error replies
// (isRedisReply: the server answered).
type replyError string

func (e replyError) Error() string { return string(e) }

// RedisError marks replyError as a redis.Error.
func (replyError) RedisError() {}

// errProtocol is a reply the lean path cannot read (a type it never asked
// for, a malformed length, a line too long): the connection is closed.
var errProtocol = errors.New("routecache: redis: unexpected reply")

// maxLine bounds a reply's first line (type, length or error text): a
// longer one is a protocol error. The reader's buffer is larger.
const maxLine = 1024

// appendCommand appends a command of bulk-string arguments to buf.
func appendCommand(buf []byte, args ...string) []byte {
	buf = append(buf, '*')
	buf = strconv.AppendInt(buf, int64(len(args)), 10)
	buf = append(buf, '\r', '\n')
	for _, a := range args {
		buf = appendBulk(buf, a)
	}
	return buf
}

// appendBulk appends one bulk string.
func appendBulk(buf []byte, s string) []byte {
	buf = append(buf, '$')
	buf = strconv.AppendInt(buf, int64(len(s)), 10)
	buf = append(buf, '\r', '\n')
	buf = append(buf, s...)
	return append(buf, '\r', '\n')
}

// appendGetRange appends GETRANGE key 0 end (end as decimal text).
func appendGetRange(buf []byte, key, end string) []byte {
	buf = append(buf, "*4\r\n$8\r\nGETRANGE\r\n"...)
	buf = appendBulk(buf, key)
	buf = append(buf, "$1\r\n0\r\n"...)
	return appendBulk(buf, end)
}

// readLine returns a reply's first line without its CRLF, a view of rd's
// buffer valid until the next read.
func readLine(rd *bufio.Reader) ([]byte, error) {
	line, err := rd.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errProtocol
		}
		return nil, err
	}
	n := len(line)
	if n < 3 || n > maxLine || line[n-2] != '\r' {
		return nil, errProtocol
	}
	return line[:n-2], nil
}

// parseLen reads a RESP length or integer: -1 (nil) or a non-negative
// decimal of at most 18 digits.
func parseLen(b []byte) (int64, bool) {
	if len(b) == 2 && b[0] == '-' && b[1] == '1' {
		return -1, true
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// bulkHead reads a reply's first line. For a bulk string it returns its
// length (-1 for nil); for an error reply, the error (replyError) and
// n = -2; any other type is a protocol error.
func bulkHead(rd *bufio.Reader) (n int64, rerr error, err error) {
	line, err := readLine(rd)
	if err != nil {
		return 0, nil, err
	}
	switch line[0] {
	case '$':
		n, ok := parseLen(line[1:])
		if !ok {
			return 0, nil, errProtocol
		}
		return n, nil, nil
	case '-':
		return -2, replyError(line[1:]), nil
	}
	return 0, nil, errProtocol
}

// discardCRLF consumes the CRLF ending a bulk string.
func discardCRLF(rd *bufio.Reader) error {
	b, err := rd.Peek(2)
	if err != nil {
		return err
	}
	if b[0] != '\r' || b[1] != '\n' {
		return errProtocol
	}
	_, err = rd.Discard(2)
	return err
}

// readSmall reads a bounded GETRANGE's reply (smallResult's rules): a
// value of at most smallReadMax bytes, parsed as a decimal counter
// (backend.ParseDecimal's rules; 0 for "" or a non-number); 0 for nil, a
// longer value or WRONGTYPE; another error reply as rerr. err is a failure
// to read the reply (the connection is then unusable).
func readSmall(rd *bufio.Reader) (v uint64, rerr error, err error) {
	n, rerr, err := bulkHead(rd)
	switch {
	case err != nil:
		return 0, nil, err
	case rerr != nil:
		if isWrongType(rerr) {
			return 0, nil, nil
		}
		return 0, rerr, nil
	case n < 0:
		return 0, nil, nil
	case n > smallReadMax:
		// Foreign (GETRANGE answers at most smallReadMax+1 bytes; a server
		// sending more is still read to its end, never reused half-read).
		if _, err := rd.Discard(int(n)); err != nil {
			return 0, nil, err
		}
		return 0, nil, discardCRLF(rd)
	}
	b, err := rd.Peek(int(n) + 2)
	if err != nil {
		return 0, nil, err
	}
	if b[n] != '\r' || b[n+1] != '\n' {
		return 0, nil, errProtocol
	}
	v = parseDecimal(b[:n])
	_, err = rd.Discard(int(n) + 2)
	return v, nil, err
}

// parseDecimal is backend.ParseDecimal of b (strconv.ParseUint base 10,
// 0 when that fails), without converting b to a string: our counters are
// random 64-bit values, often of 20 digits, past ParseDecimal's fast path.
// The first 16 digits are read 8 at a time (a counter is read on every
// hit: this was a fifth of the lean path's own cost).
func parseDecimal(b []byte) uint64 {
	n := len(b)
	if n == 0 {
		return 0
	}
	var v uint64
	i := 0
	for ; i+8 <= n && i < 16; i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		if x&0xF0F0F0F0F0F0F0F0 != 0x3030303030303030 || (x+0x0606060606060606)&0xF0F0F0F0F0F0F0F0 != 0x3030303030303030 {
			return 0 // a byte that is not a digit
		}
		v = v*100000000 + eightDigits(x)
	}
	for ; i < n; i++ {
		d := uint64(b[i]) - '0'
		if d > 9 {
			return 0
		}
		if i >= 19 && v > (math.MaxUint64-d)/10 {
			return 0 // overflows a uint64 (leading zeros do not count)
		}
		v = v*10 + d
	}
	return v
}

// eightDigits is the value of 8 ASCII digits, the first in x's lowest
// byte: pairs, then quadruples, then the whole, each step one multiply.
func eightDigits(x uint64) uint64 {
	x -= 0x3030303030303030
	x = x*10 + x>>8 // even bytes: two digits
	return ((x&0x000000FF000000FF)*(100+1000000<<32) + (x>>16&0x000000FF000000FF)*(1+10000<<32)) >> 32
}

// readReplies reads a Load's replies: the entry's GETRANGE (readEntry),
// then one bounded GETRANGE per counter into vals (readSmall). rerr is
// the first counter's error reply, else the entry's, as the go-redis path
// reports them; err is a failure to read every reply whole.
func readReplies(rd *bufio.Reader, max int64, vals []uint64) (v []byte, corrupt bool, rerr error, err error) {
	v, corrupt, erep, err := readEntry(rd, max)
	if err != nil {
		return nil, false, nil, err
	}
	for i := range vals {
		x, crep, err := readSmall(rd)
		if err != nil {
			return nil, false, nil, err
		}
		vals[i] = x
		if rerr == nil {
			rerr = crep
		}
	}
	if rerr == nil {
		rerr = erep
	}
	return v, corrupt, rerr, nil
}

// readEntry reads the entry's GETRANGE reply: its bytes (nil for nil or
// an empty value), corrupt for a value longer than max (skipped, not
// kept) or WRONGTYPE, rerr for another error reply. err is a failure to
// read the reply.
func readEntry(rd *bufio.Reader, max int64) (v []byte, corrupt bool, rerr error, err error) {
	n, rerr, err := bulkHead(rd)
	switch {
	case err != nil:
		return nil, false, nil, err
	case rerr != nil:
		if isWrongType(rerr) {
			return nil, true, nil, nil
		}
		return nil, false, rerr, nil
	case n <= 0:
		if n == 0 {
			return nil, false, nil, discardCRLF(rd)
		}
		return nil, false, nil, nil
	case n > max:
		if err := discard(rd, n); err != nil {
			return nil, false, nil, err
		}
		return nil, true, nil, discardCRLF(rd)
	}
	v = make([]byte, n)
	if _, err := readFull(rd, v); err != nil {
		return nil, false, nil, err
	}
	return v, false, nil, discardCRLF(rd)
}

// discard skips n bytes (n may exceed an int's range on 32-bit systems).
func discard(rd *bufio.Reader, n int64) error {
	for n > 0 {
		k := int(min(n, 1<<30))
		if _, err := rd.Discard(k); err != nil {
			return err
		}
		n -= int64(k)
	}
	return nil
}

// readFull fills v from rd.
func readFull(rd *bufio.Reader, v []byte) (int, error) {
	got := 0
	for got < len(v) {
		k, err := rd.Read(v[got:])
		got += k
		if err != nil {
			return got, err
		}
	}
	return got, nil
}

// readStatus reads a reply expected to be a simple string, an integer or
// a bulk string (skipped): an error reply comes back as rerr.
func readStatus(rd *bufio.Reader) (rerr error, err error) {
	line, err := readLine(rd)
	if err != nil {
		return nil, err
	}
	switch line[0] {
	case '+', ':':
		return nil, nil
	case '-':
		return replyError(line[1:]), nil
	case '$':
		n, ok := parseLen(line[1:])
		if !ok {
			return nil, errProtocol
		}
		if n < 0 {
			return nil, nil
		}
		if err := discard(rd, n); err != nil {
			return nil, err
		}
		return nil, discardCRLF(rd)
	}
	return nil, errProtocol
}

// readInfoRunID reads INFO's bulk reply and returns its run_id field ("" if
// absent), at most maxInfo bytes of it.
func readInfoRunID(rd *bufio.Reader) (string, error, error) {
	n, rerr, err := bulkHead(rd)
	switch {
	case err != nil || rerr != nil:
		return "", rerr, err
	case n < 0:
		return "", nil, nil
	case n > maxInfo:
		return "", nil, fmt.Errorf("%w: INFO of %d bytes", errProtocol, n)
	}
	v := make([]byte, n)
	if _, err := readFull(rd, v); err != nil {
		return "", nil, err
	}
	return infoField(string(v), "run_id"), nil, discardCRLF(rd)
}

// maxInfo bounds the INFO server reply read at a lean dial (a few KiB).
const maxInfo = 1 << 20
