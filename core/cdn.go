package core

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// setCDNHeaders adds, for a CDN in front (RegionConfig.CDNHeaders), the
// entry's tags as Surrogate-Key and its lifetime as CDN-Cache-Control
// (RFC 9213) to h, unless the handler set them itself. They are set on
// the fill's response and stored with the entry, so every hit replays
// them; the CDN counts freshness from the Age a hit carries.
func (c *call) setCDNHeaders(h http.Header, l lifetime) {
	if _, ok := h["Surrogate-Key"]; !ok {
		if tags := c.tagTexts(); len(tags) > 0 {
			h["Surrogate-Key"] = []string{strings.Join(tags, " ")}
		}
	}
	if _, ok := h["Cdn-Cache-Control"]; !ok {
		h["Cdn-Cache-Control"] = []string{cdnCacheControl(l)}
	}
}

// cdnCacheControl is the CDN-Cache-Control value of a lifetime.
func cdnCacheControl(l lifetime) string {
	v := "max-age=" + seconds(l.ttl)
	if l.stale > 0 {
		v += ", stale-while-revalidate=" + seconds(l.stale)
	}
	if l.staleIfError > 0 {
		v += ", stale-if-error=" + seconds(l.staleIfError)
	}
	return v
}

func seconds(d time.Duration) string { return strconv.FormatInt(int64(d/time.Second), 10) }

// tagTexts returns the route's tags for this request as InvalidateTags
// names them (a template's values query-escaped, so never a space), in
// the route's order, then the runtime tags added so far that are not
// among them: the request's counter names past the region's and the
// key's are the declared tags', each under the tag counter prefix.
func (c *call) tagTexts() []string {
	if c.st == nil || c.rt == nil {
		return nil
	}
	st, r := c.st, c.r
	var out []string
	j := 0 // the next templated tag's name
	for _, t := range c.rt.tags {
		if t.static {
			out = append(out, t.text)
			continue
		}
		sp := st.tagNames[j]
		j++
		out = append(out, string(st.nbuf[sp.s+len(r.tagCounterPrefix):sp.e]))
	}
	if c.rtags != nil {
		for _, t := range c.rtags.list() {
			if !slices.Contains(out, t) && !strings.ContainsAny(t, " \t,") {
				out = append(out, t)
			}
		}
	}
	return out
}
