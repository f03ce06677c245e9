package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/redis/go-redis/v9"
)

// articleStore is the demo's "database". In process by default; with
// -data redis://... the articles live in Redis, so several demo processes
// (replicas behind a load balancer) share one set of data.
type articleStore interface {
	get(ctx context.Context, id int) (article, bool, error)
	list(ctx context.Context) ([]article, error)
	// setTitle changes an article's title and bumps its rev atomically.
	setTitle(ctx context.Context, id int, title string) (article, bool, error)
	close() error
}

func openStore(dataURL string) (articleStore, error) {
	if dataURL == "" {
		return newMemStore(), nil
	}
	opt, err := redis.ParseURL(dataURL)
	if err != nil {
		return nil, fmt.Errorf("-data %q: %w", dataURL, err)
	}
	s := &redisStore{c: redis.NewClient(opt)}
	if err := s.seed(context.Background()); err != nil {
		s.c.Close()
		return nil, fmt.Errorf("-data %q: %w", dataURL, err)
	}
	return s, nil
}

func initial(id int) article { return article{ID: id, Title: fmt.Sprintf("Article %d", id), Rev: 1} }

type memStore struct {
	mu       sync.Mutex
	articles map[int]article
}

func newMemStore() *memStore {
	m := &memStore{articles: make(map[int]article, numArticles)}
	for id := 1; id <= numArticles; id++ {
		m.articles[id] = initial(id)
	}
	return m
}

func (m *memStore) get(_ context.Context, id int) (article, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.articles[id]
	return a, ok, nil
}

func (m *memStore) list(_ context.Context) ([]article, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]article, 0, len(m.articles))
	for id := 1; id <= numArticles; id++ {
		if a, ok := m.articles[id]; ok {
			out = append(out, a)
		}
	}
	return out, nil
}

func (m *memStore) setTitle(_ context.Context, id int, title string) (article, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.articles[id]
	if !ok {
		return article{}, false, nil
	}
	a.Title = title
	a.Rev++
	m.articles[id] = a
	return a, true, nil
}

func (m *memStore) close() error { return nil }

// redisStore keeps each article as JSON under demo:article:<id>.
type redisStore struct{ c *redis.Client }

func articleKey(id int) string { return "demo:article:" + strconv.Itoa(id) }

// seed creates the articles that do not exist yet (SET NX), so a second
// process joining does not reset the first one's edits.
func (s *redisStore) seed(ctx context.Context) error {
	pipe := s.c.Pipeline()
	for id := 1; id <= numArticles; id++ {
		b, _ := json.Marshal(initial(id))
		pipe.SetNX(ctx, articleKey(id), b, 0)
	}
	_, err := pipe.Exec(ctx)
	return err
}

func (s *redisStore) get(ctx context.Context, id int) (article, bool, error) {
	b, err := s.c.Get(ctx, articleKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return article{}, false, nil
	}
	if err != nil {
		return article{}, false, err
	}
	var a article
	return a, true, json.Unmarshal(b, &a)
}

func (s *redisStore) list(ctx context.Context) ([]article, error) {
	keys := make([]string, numArticles)
	for i := range keys {
		keys[i] = articleKey(i + 1)
	}
	vals, err := s.c.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, err
	}
	out := make([]article, 0, len(vals))
	for _, v := range vals {
		if str, ok := v.(string); ok {
			var a article
			if err := json.Unmarshal([]byte(str), &a); err != nil {
				return nil, err
			}
			out = append(out, a)
		}
	}
	return out, nil
}

// setTitle is a read-modify-write under WATCH, retried on conflict.
func (s *redisStore) setTitle(ctx context.Context, id int, title string) (article, bool, error) {
	var out article
	found := false
	key := articleKey(id)
	for attempt := 0; attempt < 20; attempt++ {
		err := s.c.Watch(ctx, func(tx *redis.Tx) error {
			b, err := tx.Get(ctx, key).Bytes()
			if errors.Is(err, redis.Nil) {
				found = false
				return nil
			}
			if err != nil {
				return err
			}
			var a article
			if err := json.Unmarshal(b, &a); err != nil {
				return err
			}
			a.Title = title
			a.Rev++
			nb, _ := json.Marshal(a)
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, key, nb, 0)
				return nil
			})
			out, found = a, true
			return err
		}, key)
		if errors.Is(err, redis.TxFailedErr) {
			continue
		}
		return out, found, err
	}
	return article{}, false, errors.New("too many concurrent updates")
}

func (s *redisStore) close() error { return s.c.Close() }
