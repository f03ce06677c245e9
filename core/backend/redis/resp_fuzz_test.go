package redis

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/routecache/routecache/core/backend"
)

// FuzzReadReplies feeds arbitrary bytes to the lean path's reply parser as
// the replies to a Load of an entry and n counters (n from the input), and
// checks it against a plain reference parser of the whole input: it never
// panics, never keeps more than the entry bound, and when it reads every
// reply, it reads what the reference reads and consumes the same bytes.
func FuzzReadReplies(f *testing.F) {
	for _, seed := range []struct {
		data string
		n    uint8
	}{
		{"$5\r\nhello\r\n", 0},
		{"$5\r\nhello\r\n$2\r\n12\r\n$0\r\n\r\n", 2},
		{"$0\r\n\r\n$-1\r\n", 1},
		{"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n-WRONGTYPE x\r\n", 1},
		{"$3\r\nabc\r\n-ERR boom\r\n$1\r\n7\r\n", 2},
		{"$40\r\n" + string(bytes.Repeat([]byte("x"), 40)) + "\r\n", 0}, // over the bound
		{"$2\r\nab\r\n$65\r\n" + string(bytes.Repeat([]byte("9"), 65)) + "\r\n", 1},
		{"$2\r\nab\r\n$20\r\n18446744073709551616\r\n", 1},
		{":1\r\n", 0},
		{"*1\r\n$1\r\na\r\n", 0},
		{"$3\r\nab", 0},
		{"$3\r\nabcXY", 0},
		{"$-2\r\n", 0},
		{"$99999999999999999999\r\n", 0},
		{"\r\n", 0},
		{"$1\n", 0},
	} {
		f.Add([]byte(seed.data), seed.n)
	}
	const max = 32
	f.Fuzz(func(t *testing.T, data []byte, n uint8) {
		vals := make([]uint64, n%6)
		br := bytes.NewReader(data)
		rd := bufio.NewReaderSize(br, 16)
		v, corrupt, rerr, err := readReplies(rd, max, vals)
		if err != nil {
			return
		}
		if int64(len(v)) > max || corrupt && v != nil {
			t.Fatalf("kept %d bytes (corrupt %v), bound %d", len(v), corrupt, max)
		}
		ref, ok := referenceReplies(data, len(vals))
		if !ok {
			t.Fatalf("the parser read replies the reference rejects: %q", data)
		}
		if got := len(data) - br.Len() - rd.Buffered(); got != ref.used {
			t.Fatalf("consumed %d bytes, the reference %d: %q", got, ref.used, data)
		}
		if (rerr != nil) != ref.hasErr || rerr != nil && rerr.Error() != ref.rerr {
			t.Fatalf("error reply %v, reference %q", rerr, ref.rerr)
		}
		if string(v) != ref.entry || corrupt != ref.corrupt {
			t.Fatalf("entry %q corrupt %v, reference %q %v", v, corrupt, ref.entry, ref.corrupt)
		}
		for i := range vals {
			if vals[i] != ref.vals[i] {
				t.Fatalf("counter %d = %d, reference %d", i, vals[i], ref.vals[i])
			}
		}
	})
}

type refResult struct {
	entry   string
	corrupt bool
	rerr    string
	hasErr  bool
	vals    []uint64
	used    int
}

// referenceReplies parses the replies by the rules of Load directly from
// the whole input.
func referenceReplies(data []byte, n int) (refResult, bool) {
	var r refResult
	pos := 0
	// reply returns a bulk (isNil, value) or an error reply's text.
	reply := func() (s string, isNil bool, isErr bool, ok bool) {
		i := bytes.Index(data[pos:], []byte("\r\n"))
		if i < 1 || i+2 > maxLine {
			return "", false, false, false
		}
		line := string(data[pos : pos+i])
		pos += i + 2
		switch line[0] {
		case '-':
			return line[1:], false, true, true
		case '$':
			if line == "$-1" {
				return "", true, false, true
			}
			digits := line[1:]
			if len(digits) == 0 || len(digits) > 18 {
				return "", false, false, false
			}
			for _, c := range digits {
				if c < '0' || c > '9' {
					return "", false, false, false
				}
			}
			l, _ := strconv.Atoi(digits)
			if pos+l+2 > len(data) || string(data[pos+l:pos+l+2]) != "\r\n" {
				return "", false, false, false
			}
			s := string(data[pos : pos+l])
			pos += l + 2
			return s, false, false, true
		}
		return "", false, false, false
	}
	s, _, isErr, ok := reply()
	if !ok {
		return r, false
	}
	var entryErr string
	entryHasErr := false
	switch {
	case isErr && len(s) >= 9 && s[:9] == "WRONGTYPE":
		r.corrupt = true
	case isErr:
		entryErr, entryHasErr = s, true
	case len(s) > 32:
		r.corrupt = true
	default:
		r.entry = s
	}
	for range n {
		s, _, isErr, ok := reply()
		if !ok {
			return r, false
		}
		var v uint64
		switch {
		case isErr && len(s) >= 9 && s[:9] == "WRONGTYPE":
		case isErr:
			if !r.hasErr {
				r.rerr, r.hasErr = s, true
			}
		case len(s) <= smallReadMax:
			v, _ = strconv.ParseUint(s, 10, 64)
		}
		r.vals = append(r.vals, v)
	}
	if !r.hasErr {
		r.rerr, r.hasErr = entryErr, entryHasErr
	}
	r.used = pos
	return r, true
}

// parseDecimal reads what backend.ParseDecimal reads.
func FuzzParseDecimal(f *testing.F) {
	for _, s := range []string{"", "0", "123", "18446744073709551615", "18446744073709551616", "000000000000000000000000042",
		"99999999999999999999", "1844674407370955161", "12x", "-1", "+1", "1_000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := parseDecimal([]byte(s)), backend.ParseDecimal(s); got != want {
			t.Fatalf("parseDecimal(%q) = %d, ParseDecimal %d", s, got, want)
		}
	})
}

// parseDecimal reads every length and kind of digit string as
// ParseDecimal does (8-digit chunks, their edges, overflow).
func TestParseDecimalMatchesParseDecimal(t *testing.T) {
	cases := []string{"", "0", "7", "12345678", "123456789", "1234567890123456", "12345678901234567",
		"18446744073709551615", "18446744073709551616", "99999999999999999999", "00000000000000000018446744073709551615",
		"0000000000000000000000000000000000000000", "1234567:", "12345678/", "123456789012345a", "ab", "1/"}
	for d := 0; d <= 9; d++ {
		for l := 1; l <= 22; l++ {
			cases = append(cases, strings.Repeat(strconv.Itoa(d), l))
		}
	}
	for _, s := range cases {
		if got, want := parseDecimal([]byte(s)), backend.ParseDecimal(s); got != want {
			t.Errorf("parseDecimal(%q) = %d, ParseDecimal %d", s, got, want)
		}
	}
}
