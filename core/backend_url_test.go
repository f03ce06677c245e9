package core_test

import (
	"strings"
	"testing"

	"github.com/routecache/routecache/core"
)

// An error about a backend URL quotes the URL as it was written, with
// only its password hidden: no "memory:?..." for "memory://?...".
func TestBackendErrorsQuoteTheURLAsWritten(t *testing.T) {
	cases := []struct{ url, want, never string }{
		{"memory://?max_bytes=lots", `"memory://?max_bytes=lots"`, ""},
		{"memory://?near_max_bytes=1MiB", `"memory://?near_max_bytes=1MiB"`, ""},
		{"redis://user:s3cret@127.0.0.1:1/0?pool_size=x", `"redis://user:xxxxx@127.0.0.1:1/0?pool_size=x"`, "s3cret"},
		{"memcache://127.0.0.1:1?near_staleness=soon&near_max_bytes=1MiB", `"memcache://127.0.0.1:1?near_staleness=soon&near_max_bytes=1MiB"`, ""},
		{"bogus://?x=1", `"bogus://?x=1"`, ""},
	}
	for _, tc := range cases {
		_, err := core.New(core.Config{Regions: map[string]core.RegionConfig{"r": {Backend: tc.url}}})
		if err == nil {
			t.Fatalf("%s: New succeeded", tc.url)
		}
		msg := err.Error()
		if !strings.Contains(msg, tc.want) || !strings.HasPrefix(msg, "routecache: ") {
			t.Errorf("%s: error %q does not quote %s", tc.url, msg, tc.want)
		}
		if tc.never != "" && strings.Contains(msg, tc.never) {
			t.Errorf("%s: error %q shows the password", tc.url, msg)
		}
	}
}
