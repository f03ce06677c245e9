package backend

import (
	"strconv"
	"testing"
)

// FuzzParseDecimal checks the counters' digit loop against strconv.
func FuzzParseDecimal(f *testing.F) {
	for _, s := range []string{"", "0", "1", "42", "9999999999999999999", "18446744073709551615", "18446744073709551616", "-1", "+1", "1_0", "0x10", " 1", "１"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			want = 0
		}
		if got := ParseDecimal(s); got != want {
			t.Fatalf("ParseDecimal(%q) = %d, want %d", s, got, want)
		}
	})
}
