package main

import "github.com/routecache/routecache/core"

// withGzip applies -gzip: every region of the demo stores its responses
// gzipped (RegionConfig.Compress), serves that copy to clients sending
// Accept-Encoding: gzip (curl --compressed) and decodes it for the others
// (plain curl). Either way the response is a HIT once cached.
func withGzip(rs map[string]core.RegionConfig, on bool) map[string]core.RegionConfig {
	if !on {
		return rs
	}
	for name, rc := range rs {
		rc.Compress = true
		rs[name] = rc
	}
	return rs
}
