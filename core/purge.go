package core

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// DefaultPurgeMaxBody caps a purge request's body when PurgeConfig.MaxBodyBytes is 0.
const DefaultPurgeMaxBody = 64 << 10

// PurgeConfig configures PurgeHandler.
type PurgeConfig struct {
	// Token is the bearer token a purge request must present
	// ("Authorization: Bearer <Token>"). Required: there is no open purge.
	Token string
	// MaxBodyBytes caps the JSON body. 0 means DefaultPurgeMaxBody (64 KiB).
	MaxBodyBytes int64
}

// PurgeRequest is the JSON body PurgeHandler accepts.
type PurgeRequest struct {
	// Tags to invalidate in every region.
	Tags []string `json:"tags"`
	// Regions to invalidate whole.
	Regions []string `json:"regions"`
	// Keys to invalidate: a region and a key (a Key template's expansion,
	// or the request path for routes on the default key).
	Keys []PurgeKey `json:"keys"`
	// Soft marks the tags' and regions' entries stale instead of unusable
	// (see Cache.InvalidateTagsSoft); keys are always purged hard.
	Soft bool `json:"soft"`
}

// PurgeKey names one key of one region.
type PurgeKey struct {
	Region string `json:"region"`
	Key    string `json:"key"`
}

// PurgeHandler returns an HTTP handler that invalidates on request, for
// operators and deploy scripts. Mount it yourself (nothing is mounted by
// default), e.g. at /_cache/purge. It accepts
//
//	POST with a JSON PurgeRequest body: {"tags":[...],"regions":[...],"keys":[{"region":"r","key":"/a/1"}]}
//	PURGE with a Surrogate-Key header listing tags separated by spaces
//	  (and "Soft-Purge: 1" for a soft purge; {"soft": true} in the JSON)
//
// and requires "Authorization: Bearer <token>" (compared in constant
// time): 401 without it, 400 with a message for a bad body or an unknown
// region, 413 past MaxBodyBytes, 405 for other methods, 200 with a JSON
// summary on success, and 502 when the backend did not take an
// invalidation ("pending": true when it was queued for retry, see
// ErrInvalidationPending).
func (c *Cache) PurgeHandler(cfg PurgeConfig) (http.Handler, error) {
	if cfg.Token == "" {
		return nil, errors.New("routecache: purge handler needs a token")
	}
	if cfg.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("routecache: purge MaxBodyBytes %d is negative", cfg.MaxBodyBytes)
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultPurgeMaxBody
	}
	want := sha256.Sum256([]byte(cfg.Token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := sha256.Sum256([]byte(bearer(r.Header.Get("Authorization"))))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="routecache"`)
			purgeReply(w, http.StatusUnauthorized, map[string]any{"error": "missing or wrong bearer token"})
			return
		}
		var pr PurgeRequest
		switch r.Method {
		case "PURGE":
			pr.Tags = strings.Fields(r.Header.Get("Surrogate-Key"))
			pr.Soft = r.Header.Get("Soft-Purge") == "1"
			if len(pr.Tags) == 0 {
				purgeReply(w, http.StatusBadRequest, map[string]any{"error": "PURGE needs a Surrogate-Key header listing tags"})
				return
			}
		case http.MethodPost:
			body, err := io.ReadAll(io.LimitReader(r.Body, cfg.MaxBodyBytes+1))
			if err != nil {
				purgeReply(w, http.StatusBadRequest, map[string]any{"error": "reading body: " + err.Error()})
				return
			}
			if int64(len(body)) > cfg.MaxBodyBytes {
				purgeReply(w, http.StatusRequestEntityTooLarge, map[string]any{"error": fmt.Sprintf("body over %d bytes", cfg.MaxBodyBytes)})
				return
			}
			dec := json.NewDecoder(strings.NewReader(string(body)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&pr); err != nil {
				purgeReply(w, http.StatusBadRequest, map[string]any{"error": "bad JSON body: " + err.Error()})
				return
			}
			if dec.More() {
				purgeReply(w, http.StatusBadRequest, map[string]any{"error": "bad JSON body: trailing data"})
				return
			}
		default:
			w.Header().Set("Allow", "POST, PURGE")
			purgeReply(w, http.StatusMethodNotAllowed, map[string]any{"error": "use POST or PURGE"})
			return
		}
		if msg := c.checkPurge(&pr); msg != "" {
			purgeReply(w, http.StatusBadRequest, map[string]any{"error": msg})
			return
		}
		ctx := r.Context()
		var errs []string
		pending := false
		invalidateTags, invalidateRegion := c.InvalidateTags, c.InvalidateRegion
		if pr.Soft {
			invalidateTags, invalidateRegion = c.InvalidateTagsSoft, c.InvalidateRegionSoft
		}
		if len(pr.Tags) > 0 {
			if err := invalidateTags(ctx, pr.Tags...); err != nil {
				errs = append(errs, err.Error())
				pending = pending || errors.Is(err, ErrInvalidationPending)
			}
		}
		for _, name := range pr.Regions {
			if err := invalidateRegion(ctx, name); err != nil {
				errs = append(errs, err.Error())
				pending = pending || errors.Is(err, ErrInvalidationPending)
			}
		}
		for _, k := range pr.Keys {
			if err := c.InvalidateKey(ctx, k.Region, k.Key); err != nil {
				errs = append(errs, err.Error())
				pending = pending || errors.Is(err, ErrInvalidationPending)
			}
		}
		if len(errs) > 0 {
			// "pending": the refused increments are queued and retried
			// until the backend takes them (ErrInvalidationPending).
			purgeReply(w, http.StatusBadGateway, map[string]any{"error": strings.Join(errs, "; "), "pending": pending})
			return
		}
		purgeReply(w, http.StatusOK, map[string]any{"purged": map[string]int{"tags": len(pr.Tags), "regions": len(pr.Regions), "keys": len(pr.Keys)}})
	}), nil
}

func (c *Cache) checkPurge(pr *PurgeRequest) string {
	if len(pr.Tags)+len(pr.Regions)+len(pr.Keys) == 0 {
		return "nothing to purge: give tags, regions or keys"
	}
	for _, t := range pr.Tags {
		if t == "" {
			return "empty tag"
		}
	}
	for _, name := range pr.Regions {
		if _, ok := c.regions[name]; !ok {
			return fmt.Sprintf("unknown region %q", name)
		}
	}
	for _, k := range pr.Keys {
		if _, ok := c.regions[k.Region]; !ok {
			return fmt.Sprintf("unknown region %q in keys", k.Region)
		}
		if k.Key == "" {
			return "empty key"
		}
	}
	return ""
}

func bearer(h string) string {
	const p = "Bearer "
	if len(h) > len(p) && strings.EqualFold(h[:len(p)], p) {
		return h[len(p):]
	}
	return ""
}

func purgeReply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
