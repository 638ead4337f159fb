package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	goredis "github.com/redis/go-redis/v9"
	"github.com/resilient-go/resilient"
)

// Store is a [resilient.Store] on Redis: a [resilient.Breaker] built with
// [resilient.WithStore] saves its [resilient.Snapshot] there after each
// change of state, as JSON under prefix:{name}:snapshot, and a breaker of
// the same name built later, in this process or another, starts from it.
// It persists one breaker's state across restarts; it does not share a
// window or probes between replicas (see [Breaker] for that).
//
// Each Save renews the key's TTL ([WithKeyTTL]); each call is bounded by
// [WithTimeout]. A Store is safe for concurrent use.
type Store struct {
	rdb goredis.UniversalClient
	cfg *config
}

// NewStore returns a Store on rdb (see [NewBreaker] for what rdb must be).
// The options that apply are [WithPrefix], [WithTimeout] and [WithKeyTTL].
func NewStore(rdb goredis.UniversalClient, opts ...Option) (*Store, error) {
	if err := checkClient("NewStore", rdb); err != nil {
		return nil, err
	}
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	return &Store{rdb: rdb, cfg: c}, nil
}

// Load implements [resilient.Store]: it returns the snapshot saved under
// name, and false if there is none (never saved, or expired).
func (s *Store) Load(ctx context.Context, name string) (resilient.Snapshot, bool, error) {
	data, err := call(ctx, nil, "", s.cfg.timeout, func(ctx context.Context) ([]byte, error) {
		return s.rdb.Get(ctx, s.cfg.key(name, "snapshot")).Bytes()
	})
	if errors.Is(err, goredis.Nil) {
		return resilient.Snapshot{}, false, nil
	}
	if err != nil {
		return resilient.Snapshot{}, false, fmt.Errorf("resilient: redis store: load %q: %w", name, err)
	}
	var snap resilient.Snapshot
	if err := json.Unmarshal(data, &snap); err != nil {
		return resilient.Snapshot{}, false, fmt.Errorf("resilient: redis store: load %q: %w", name, err)
	}
	return snap, true, nil
}

// Save implements [resilient.Store]: it replaces the snapshot saved under
// name, and renews its TTL.
func (s *Store) Save(ctx context.Context, name string, snap resilient.Snapshot) error {
	data, err := json.Marshal(snap)
	if err != nil {
		return fmt.Errorf("resilient: redis store: save %q: %w", name, err)
	}
	_, err = call(ctx, nil, "", s.cfg.timeout, func(ctx context.Context) (string, error) {
		return s.rdb.Set(ctx, s.cfg.key(name, "snapshot"), data, s.cfg.ttl).Result()
	})
	if err != nil {
		return fmt.Errorf("resilient: redis store: save %q: %w", name, err)
	}
	return nil
}

var _ resilient.Store = (*Store)(nil)
