package core

import (
	"net/http"
	"testing"
)

// Accept-Encoding is normalised to one coding, whatever its spelling.
func TestNormalizedCoding(t *testing.T) {
	for _, tc := range []struct {
		lines []string
		want  string
		gzip  bool
	}{
		{nil, "", false},
		{[]string{""}, "", false},
		{[]string{"gzip"}, "gzip", true},
		{[]string{"GZip ; Q=1"}, "gzip", true},
		{[]string{"x-gzip"}, "gzip", true},
		{[]string{"gzip, deflate, br, zstd"}, "gzip", true},
		{[]string{"br;q=1.0, gzip;q=0.1"}, "gzip", true},
		{[]string{"br"}, "br", false},
		{[]string{"zstd", "deflate"}, "zstd", false},
		{[]string{"deflate"}, "", false},
		{[]string{"identity"}, "", false},
		{[]string{"gzip;q=0"}, "", false},
		{[]string{"gzip;q=0.", "br"}, "br", false},
		{[]string{"gzip;q=0.000"}, "", false},
		{[]string{"gzip;q=0.001"}, "gzip", true},
		{[]string{"gzip;level=1;q=0"}, "", false},
		{[]string{"*"}, "gzip", true},
		{[]string{"*;q=0"}, "", false},
		{[]string{"*, gzip;q=0"}, "br", false},
		{[]string{"*;q=0, br"}, "br", false},
		{[]string{",, ,gzip"}, "gzip", true},
		{[]string{"gzipx, xgzip"}, "", false},
	} {
		h := http.Header{"Accept-Encoding": tc.lines}
		if got := normalizedCoding(h); got != tc.want {
			t.Errorf("normalizedCoding(%q) = %q, want %q", tc.lines, got, tc.want)
		}
		if got := acceptsCoding(h, "gzip"); got != tc.gzip {
			t.Errorf("acceptsCoding(%q, gzip) = %v, want %v", tc.lines, got, tc.gzip)
		}
		if !acceptsCoding(h, "") || !acceptsCoding(h, "identity") {
			t.Errorf("%q refuses identity", tc.lines)
		}
	}
}

func TestCodedKey(t *testing.T) {
	base := "k\x00"
	if got := codedKey(base, "gzip"); got != "k\x04gzip" {
		t.Fatalf("codedKey = %q", got)
	}
	if codedKey(base, "") != base || codedKey("k\x04gzip", "gzip") != "k\x04gzip" {
		t.Fatal("an identity or already coded key changed")
	}
}

func TestIdentityETag(t *testing.T) {
	for in, want := range map[string]string{
		`"abc-gzip"`: `"abc"`,
		`"abc"`:      `"abc-identity"`,
		`W/"abc"`:    `W/"abc"`,
		`"-gzip"`:    `"-gzip-identity"`,
	} {
		if got := identityETag(in); got != want {
			t.Errorf("identityETag(%s) = %s, want %s", in, got, want)
		}
	}
}
