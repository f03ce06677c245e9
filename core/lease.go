package core

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/redis/go-redis/v9"
)

// leaser is implemented by backends shared between instances: a lease on
// a key lets one instance fill it while the others wait for the entry.
type leaser interface {
	// acquire takes the lease for ttl; ok is false when another holds it.
	acquire(ctx context.Context, key string, ttl time.Duration) (token string, ok bool, err error)
	// release gives the lease back if token still holds it.
	release(ctx context.Context, key, token string) error
}

var (
	_ leaser = (*redisBackend)(nil)
	_ leaser = (*memcacheBackend)(nil)
	_ leaser = (*nearBackend)(nil)
)

// releaseScript deletes the lease only if it still holds our token, so a
// holder whose lease expired cannot free someone else's.
var releaseScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

func (b *redisBackend) acquire(ctx context.Context, key string, ttl time.Duration) (string, bool, error) {
	ctx, cancel := b.op(ctx) // bounded like every Redis call, retries included
	defer cancel()
	token := strconv.FormatUint(freshCounter(), 36)
	ok, err := b.client.SetNX(ctx, key, token, ttl).Result()
	if err != nil {
		return "", false, err
	}
	return token, ok, nil
}

func (b *redisBackend) release(ctx context.Context, key, token string) error {
	ctx, cancel := b.op(ctx)
	defer cancel()
	return releaseScript.Run(ctx, b.client, []string{key}, token).Err()
}

func (b *memcacheBackend) acquire(_ context.Context, key string, ttl time.Duration) (string, bool, error) {
	token := strconv.FormatUint(freshCounter(), 36)
	secs := int32((ttl + time.Second - 1) / time.Second)
	err := b.client.Add(&memcache.Item{Key: key, Value: []byte(token), Expiration: secs})
	switch {
	case err == nil:
		return token, true, nil
	case errors.Is(err, memcache.ErrNotStored):
		return "", false, nil
	}
	return "", false, err
}

// release is get-compare-delete: not atomic on Memcached, which has no
// compare-and-delete; a lease that expired in between may be freed early,
// which costs at most one extra origin call.
func (b *memcacheBackend) release(_ context.Context, key, token string) error {
	it, err := b.client.Get(key)
	if errors.Is(err, memcache.ErrCacheMiss) {
		return nil
	}
	if err != nil {
		return err
	}
	if string(it.Value) != token {
		return nil
	}
	if err := b.client.Delete(key); err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
		return fmt.Errorf("memcache lease release: %w", err)
	}
	return nil
}
