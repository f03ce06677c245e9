package core

import (
	"strings"
	"testing"
)

// allOf, eight and four bytes a step, agrees with a test of every byte
// for every byte value at every position of strings of 0 to 24 bytes, in
// each class.
func TestAllOfEveryByteEveryPosition(t *testing.T) {
	oneByOne := func(s string, class uint8) bool {
		for i := 0; i < len(s); i++ {
			if charClass[s[i]]&class == 0 {
				return false
			}
		}
		return true
	}
	classes := []uint8{classUnreserved, classQuery, classPath, classPrintable}
	for n := 0; n <= 24; n++ {
		base := []byte(strings.Repeat("a0Z-._~x", 3)[:n])
		for _, class := range classes {
			if !allOf(string(base), class) {
				t.Fatalf("allOf(%q, %d) false", base, class)
			}
		}
		for i := 0; i < n; i++ {
			for c := 0; c < 256; c++ {
				p := append([]byte(nil), base...)
				p[i] = byte(c)
				for _, class := range classes {
					if got, want := allOf(string(p), class), oneByOne(string(p), class); got != want {
						t.Fatalf("allOf(%q, %d) = %v, want %v", p, class, got, want)
					}
				}
			}
		}
	}
}
