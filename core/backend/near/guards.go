package near

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	redisbe "github.com/routecache/routecache/core/backend/redis"
)

// Guards: on a Redis Cluster, PUBLISH reaches the subscribers of the
// node that ran it directly, and those of every other node over the
// cluster bus. A bus link that is down (a node paused or overloaded past
// half the cluster-node-timeout, a network partition between nodes)
// drops the messages sent meanwhile, and the subscribers on the far node
// never learn of them: their connections stay up, nothing tells them.
// The near cache's one subscription (on the node of the channel's slot)
// would then keep counters an invalidation moved, for as long as they
// live (TestNearCacheOnClusterLosesNoInvalidationOverABusOutage: 100 of
// 300 invalidations lost over a 0.6 s pause of that node, with a
// cluster-node-timeout of 200 ms).
//
// So a near cache on a cluster also subscribes on every master (a guard
// per master, kept in step with the cluster's masters every
// guardRefresh): every invalidation is published by the master holding
// its counter, which delivers it to its own subscribers without the bus.
// A guard drops the counters its messages name (the subscription proper
// also reports them to OnRemote, once); while any guard is not
// subscribed, local counters are not trusted, and every (re)subscription
// drops them all, as the subscription proper does.

// guardRefresh is how often the masters are listed again.
const guardRefresh = time.Second

// guard is one master's subscription. up, removed and warned are
// guarded by Cache.gmu.
type guard struct {
	cancel  context.CancelFunc
	done    chan struct{}
	up      bool
	removed bool
	// warned is set once its loss was logged, until it is up again: a
	// guard that stays down (its node gone) fails every 50 ms.
	warned bool
	psMu   sync.Mutex
	ps     *redis.PubSub
	closed bool
}

// watchMasters keeps a guard on every master of the cluster until ctx
// ends, then stops them all.
func (n *Cache) watchMasters(ctx context.Context, cc *redis.ClusterClient) {
	defer close(n.gdone)
	defer n.gstops.Wait() // the guards of removed masters, stopping
	t := time.NewTicker(guardRefresh)
	defer t.Stop()
	for {
		n.refreshGuards(ctx, cc)
		select {
		case <-ctx.Done():
			n.gmu.Lock()
			gs := n.guards
			n.guards = nil
			n.gmu.Unlock()
			for _, g := range gs {
				g.stop()
			}
			return
		case <-t.C:
		}
	}
}

// refreshGuards starts a guard on each master without one and stops
// those of nodes no longer masters.
func (n *Cache) refreshGuards(ctx context.Context, cc *redis.ClusterClient) {
	var mu sync.Mutex
	masters := map[string]*redis.Client{}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err := cc.ForEachMaster(lctx, func(_ context.Context, c *redis.Client) error {
		mu.Lock()
		masters[c.Options().Addr] = c
		mu.Unlock()
		return nil
	})
	cancel()
	if err != nil || len(masters) == 0 || ctx.Err() != nil {
		return // the guards in place stand (a failing one is down already)
	}
	n.gmu.Lock()
	defer n.gmu.Unlock()
	if n.guards == nil {
		return // closing
	}
	for addr, g := range n.guards {
		if _, ok := masters[addr]; !ok {
			delete(n.guards, addr)
			g.removed = true
			if !g.up {
				n.guardsDown.Add(-1)
			}
			n.gstops.Add(1)
			go func() {
				defer n.gstops.Done()
				g.stop()
			}()
		}
	}
	for addr, c := range masters {
		if _, ok := n.guards[addr]; ok {
			continue
		}
		gctx, gcancel := context.WithCancel(ctx)
		g := &guard{cancel: gcancel, done: make(chan struct{})}
		n.guards[addr] = g
		n.guardsDown.Add(1) // down until subscribed
		go n.runGuard(gctx, g, c)
	}
	if !n.listed {
		n.listed = true
		n.guardsDown.Add(-1)
	}
}

// runGuard is one master's subscription: it drops the counters its
// messages name, and tells the Cache when it is up or down.
func (n *Cache) runGuard(ctx context.Context, g *guard, c *redis.Client) {
	defer close(g.done)
	ps := c.Subscribe(ctx, n.channel)
	g.psMu.Lock()
	if g.closed {
		g.psMu.Unlock()
		_ = ps.Close()
		return
	}
	g.ps = ps
	g.psMu.Unlock()
	defer ps.Close()
	n.listen(ctx, ps, listener{
		down: func(err error) { n.guardDown(g, err) },
		up: func(bool) {
			n.dropAll() // anything may have been missed meanwhile
			n.guardUp(g)
		},
		msg: func(m *redis.Message) {
			if _, ev, ok := redisbe.ParseMessage(m.Payload); ok {
				n.drop(ev.Counter)
			}
		},
	})
}

// guardUp marks g subscribed.
func (n *Cache) guardUp(g *guard) {
	n.gmu.Lock()
	defer n.gmu.Unlock()
	if !g.up && !g.removed {
		g.up = true
		n.guardsDown.Add(-1)
	}
	g.warned = false
}

// guardDown marks g not subscribed and drops the local counters. Its
// loss is logged once until it is up again.
func (n *Cache) guardDown(g *guard, err error) {
	n.gmu.Lock()
	if g.up && !g.removed {
		g.up = false
		n.guardsDown.Add(1)
	}
	warn := !g.warned && n.coherent.Load()
	if warn {
		g.warned = true
	}
	n.gmu.Unlock()
	if warn {
		n.log.Warn("routecache: near cache lost a cluster node's pub/sub; reading through to Redis until it is back", "err", err)
	}
	n.dropAll()
}

// stop ends the guard and waits for it.
func (g *guard) stop() {
	g.cancel()
	g.psMu.Lock()
	g.closed = true
	if g.ps != nil {
		_ = g.ps.Close() // unblocks a pending receive
	}
	g.psMu.Unlock()
	<-g.done
}
