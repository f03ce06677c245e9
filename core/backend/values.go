package backend

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// BaseCounter is the value an in-process counter that was never bumped
// reads as. FreshCounter never returns it, nor 0.
const BaseCounter = 1

// FreshCounter returns a new counter value: random, never 0 or
// BaseCounter, so a counter re-created after it was lost cannot repeat an
// old value.
func FreshCounter() uint64 {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			// crypto/rand does not fail on supported platforms; fall back to the clock.
			return uint64(time.Now().UnixNano()) | 1<<63
		}
		if v := binary.BigEndian.Uint64(b[:]) >> 1; v > BaseCounter {
			return v
		}
	}
}

// ParseCounter reads a counter value: decimal ASCII as a string or
// bytes, 0 when missing or not a number.
func ParseCounter(v any) uint64 {
	var s string
	switch t := v.(type) {
	case string:
		s = t
	case []byte:
		s = unsafeString(t) // read here only, never kept
	default:
		return 0
	}
	return ParseDecimal(s)
}

// ParseDecimal is strconv.ParseUint(s, 10, 64) with 0 for an error, with
// a direct loop for the up to 19 plain digits a counter is written with.
func ParseDecimal(s string) uint64 {
	if n := len(s); n > 0 && n <= 19 {
		var v uint64
		for i := 0; i < n; i++ {
			d := s[i] - '0'
			if d > 9 {
				goto slow
			}
			v = v*10 + uint64(d)
		}
		return v
	}
slow:
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// ParseBytes reads sizes like "64MiB", "512KiB", "1GiB", "1000" (bytes).
func ParseBytes(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}
	mult := int64(1)
	num := s
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			mult, num = u.mult, strings.TrimSpace(strings.TrimSuffix(s, u.suffix))
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q (want a positive number with an optional unit B, KiB, MiB, GiB, KB, MB, GB)", s)
	}
	return n * mult, nil
}
