package bridge

import "regexp"

// What package core/settings checks with core's own rules, so that a
// settings error names its key; set by core's init.
var (
	// RegionName is the rule region names (and Prefix) must match.
	RegionName *regexp.Regexp
	// NormalizeRegion applies New's checks and defaults to one
	// *core.RegionConfig.
	NormalizeRegion func(rc any) error
	// ParseBytes parses a size: 512KiB, 1MiB, 2MB or plain bytes.
	ParseBytes func(s string) (int64, error)
	// KnownScheme reports whether a backend URL scheme can be opened.
	KnownScheme func(scheme string) bool
	// SchemeList lists the known backend URL schemes, for messages.
	SchemeList func() string
)
