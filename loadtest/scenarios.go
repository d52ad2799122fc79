package loadtest

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"iotd/wire"
)

// build lays out the run's publishers, subscribers and the streams between
// them; no network yet. Streams are listed explicitly rather than found by
// matching filters, which would cost N² matches in pairs.
func (r *runner) build() {
	cfg := r.cfg
	topic := func(parts ...string) string {
		t := cfg.TopicPrefix
		for _, p := range parts {
			t += "/" + p
		}
		return t
	}
	addPubs := func(n int, kind string) {
		for i := range n {
			r.pubs = append(r.pubs, newPublisher(uint32(i), topic(kind, strconv.Itoa(i)), cfg.QoS, cfg.Inflight))
		}
	}
	addSub := func(filters ...string) *subscriber {
		s := &subscriber{idx: len(r.subs), id: r.clientID('s', len(r.subs)), ordered: true}
		for _, f := range filters {
			s.filters = append(s.filters, wire.Subscription{Filter: f, QoS: cfg.QoS})
		}
		r.subs = append(r.subs, s)
		return s
	}
	switch cfg.Scenario {
	case Fanin, Latency, Offline:
		kind := string(cfg.Scenario)
		addPubs(cfg.Publishers, kind)
		for range cfg.Subscribers {
			s := addSub(topic(kind, "+"))
			for _, p := range r.pubs {
				s.addStream(p)
			}
		}
	case Fanout:
		addPubs(cfg.Publishers, "fanout")
		for range cfg.Subscribers {
			s := addSub()
			for _, p := range r.pubs {
				s.filters = append(s.filters, wire.Subscription{Filter: string(p.topic), QoS: cfg.QoS})
				s.addStream(p)
			}
		}
	case Pairs:
		// Client i publishes to its peer i^1 and listens on its own topic.
		for i := range cfg.Clients {
			r.pubs = append(r.pubs, newPublisher(uint32(i), topic("pairs", strconv.Itoa(i^1)), cfg.QoS, cfg.Inflight))
		}
		for i := range cfg.Clients {
			s := addSub(topic("pairs", strconv.Itoa(i)))
			s.addStream(r.pubs[i^1])
		}
	case Retained:
		r.pubs = append(r.pubs, newPublisher(0, topic("retained"), cfg.QoS, cfg.Inflight))
		for range cfg.Subscribers {
			s := addSub(topic("retained", "#"))
			s.ordered = false // brokers send retained messages in their own order
			s.addStream(r.pubs[0])
		}
	}
	for i, s := range r.subs {
		s.index(len(r.pubs))
		s.lat = r.lat.buffer(i)
	}
	for i, p := range r.pubs {
		if p.qos > 0 {
			p.ackLat = r.ackLat.buffer(i)
		}
	}
	// Message quotas: Count is shared out over the publishers.
	if cfg.Count > 0 {
		n := uint64(len(r.pubs))
		for i, p := range r.pubs {
			p.limited = true
			p.quota = uint64(cfg.Count) / n
			if uint64(i) < uint64(cfg.Count)%n {
				p.quota++
			}
		}
	}
	// End-to-end window: a subscriber fed by k publishers lets each run
	// E2EWindow/k ahead. Retained and offline publish to nobody online.
	if cfg.E2EWindow > 0 && cfg.Scenario != Retained && cfg.Scenario != Offline {
		for _, p := range r.pubs {
			fan := 1
			for _, st := range p.streams {
				fan = max(fan, len(st.sub.all))
			}
			p.window = uint64(max(1, cfg.E2EWindow/fan))
		}
	}
}

// retainedTopic spreads retained messages over a two-level tree.
func (r *runner) retainedTopic(seq uint64) string {
	return fmt.Sprintf("%s/retained/%d/%d", r.cfg.TopicPrefix, seq/100, seq%100)
}

// runPublishers runs every publisher's goroutine with the run's rate and
// returns when all have finished (quota, stop, or lost connection).
func (r *runner) runPublishers(pubs []*publisher, plan sendPlan) {
	if r.cfg.Rate > 0 {
		plan.rate = r.cfg.Rate / float64(len(pubs))
	}
	var wg sync.WaitGroup
	for _, p := range pubs {
		if p.c == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.run(r, plan)
		}()
	}
	wg.Wait()
}

// connectPublishers connects every publisher that has no connection yet.
func (r *runner) connectPublishers() error {
	_, err := r.connectEach(len(r.pubs), func(i int) string { return r.clientID('p', i) }, true, pubBufSize,
		func(i int, c *conn, _ *wire.Connack) error {
			p := r.pubs[i]
			c.pub, p.c = p, c
			c.start()
			return nil
		})
	return err
}

// connectSubscribers connects and subscribes every subscriber, waiting
// for each SUBACK. In pairs each subscriber's connection also publishes.
func (r *runner) connectSubscribers(clean bool) ([]*conn, error) {
	pairs := r.cfg.Scenario == Pairs
	buf := subBufSize
	if pairs {
		buf = pubBufSize
	}
	return r.connectEach(len(r.subs), func(i int) string { return r.subs[i].id }, clean, buf,
		func(i int, c *conn, _ *wire.Connack) error {
			s := r.subs[i]
			c.sub = s
			if pairs {
				c.pub, r.pubs[i].c = r.pubs[i], c
			}
			c.start()
			_, err := c.subscribe(r.ctx, 1, s.filters)
			return err
		})
}

// runMessages runs fanin, fanout, pairs and latency: subscribe, publish
// for the duration or count, drain.
func (r *runner) runMessages(res *Result) error {
	cfg := r.cfg
	r.setPhase("subscribing")
	subConns, err := r.connectSubscribers(!cfg.PersistentSessions)
	if err != nil {
		return err
	}
	if cfg.Scenario != Pairs {
		if err := r.connectPublishers(); err != nil {
			return err
		}
	}

	r.setPhase("publishing")
	start := time.Now()
	res.measureFrom = int64(start.Sub(r.epoch))
	if cfg.Duration > 0 {
		t := time.AfterFunc(cfg.Duration, r.stopPublishing)
		defer t.Stop()
	}
	r.runPublishers(r.pubs, sendPlan{start: start, size: cfg.PayloadSize})
	r.setPhase("draining")
	r.waitDelivered(cfg.Drain, false)
	if cfg.PersistentSessions {
		r.setPhase("cleaning up")
		r.removeSessions(subConns)
	}
	return nil
}

// removeSessions disconnects the subscribers' connections and discards
// their persistent sessions: a clean connect does that [MQTT-3.1.2-6].
func (r *runner) removeSessions(subConns []*conn) {
	disconnectAll(subConns, r.cfg.ConnectParallelism)
	cleanConns, err := r.connectEach(len(r.subs), func(i int) string { return r.subs[i].id }, true, idleBufSize,
		func(_ int, c *conn, _ *wire.Connack) error { c.start(); return nil })
	disconnectAll(cleanConns, r.cfg.ConnectParallelism)
	if err != nil {
		r.errorf("removing the persistent sessions: %v", err)
	}
}

// runConnect opens Clients connections with bounded parallelism, holds
// them idle, checks they are all still alive, and reads the broker's RSS
// before and after.
func (r *runner) runConnect(res *Result) error {
	cfg := r.cfg
	if cfg.BrokerPID > 0 {
		rss, err := readRSS(cfg.BrokerPID)
		if err != nil {
			return err
		}
		res.RSSBeforeBytes = rss
	}
	var (
		ok     atomic.Int64
		latMu  sync.Mutex
		lat    = r.lat.buffer(0)
		conns  = make([]*conn, cfg.Clients)
		failed atomic.Int64
	)
	start := time.Now()
	forEach(cfg.Clients, cfg.ConnectParallelism, func(i int) {
		if r.ctx.Err() != nil {
			return
		}
		t := time.Now()
		c, _, err := r.dial(r.ctx, r.clientID('c', i), true, idleBufSize)
		if err != nil {
			if failed.Add(1) <= maxErrorSamples {
				r.errorf("%v", err)
			} else {
				r.errs.Add(1)
			}
			return
		}
		d := time.Since(t)
		latMu.Lock()
		lat.add(d)
		latMu.Unlock()
		c.start()
		conns[i] = c
		ok.Add(1)
	})
	connected := ok.Load()
	elapsed := time.Since(start)
	lat.flush()
	res.ElapsedSec = elapsed.Seconds()
	if connected == 0 {
		return errNoConnections
	}
	res.ConnectsPerSec = float64(connected) / elapsed.Seconds()

	r.setPhase("holding")
	select {
	case <-time.After(cfg.Hold):
	case <-r.ctx.Done():
		return nil
	}
	if cfg.BrokerPID > 0 {
		rss, err := readRSS(cfg.BrokerPID)
		if err != nil {
			r.errorf("%v", err)
		} else {
			res.RSSAfterBytes = rss
			res.RSSPerConnBytes = float64(rss-res.RSSBeforeBytes) / float64(connected)
		}
	}

	// Every connection must still answer a PINGREQ after the hold.
	r.setPhase("checking")
	before := make([]int64, len(conns))
	forEach(len(conns), cfg.ConnectParallelism, func(i int) {
		if c := conns[i]; c != nil {
			before[i] = c.pongs.Load()
			c.ping()
		}
	})
	deadline := time.Now().Add(cfg.Drain)
	dead := 0
	for i, c := range conns {
		if c == nil {
			continue
		}
		for c.pongs.Load() == before[i] && time.Now().Before(deadline) && r.ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		if c.pongs.Load() == before[i] {
			dead++
		}
	}
	if dead > 0 {
		r.errorf("%d of %d connections did not answer PINGREQ after being held for %v", dead, connected, cfg.Hold)
	}
	return nil
}

// runRetained stores Count retained messages, then times S wildcard
// subscribers until each received all of them, then deletes them.
func (r *runner) runRetained(res *Result) error {
	cfg := r.cfg
	p := r.pubs[0]
	barrier := cfg.TopicPrefix + "/barrier"
	_, err := r.connectEach(1, func(int) string { return r.clientID('p', 0) }, true, pubBufSize,
		func(_ int, c *conn, _ *wire.Connack) error {
			c.pub, p.c = p, c
			c.barrierTopic, c.barrier = []byte(barrier), make(chan struct{}, 1)
			c.start()
			_, err := c.subscribe(r.ctx, 1, []wire.Subscription{{Filter: barrier}})
			return err
		})
	if err != nil {
		return err
	}
	r.setPhase("storing")
	r.runPublishers(r.pubs, sendPlan{start: time.Now(), size: cfg.PayloadSize, retain: true, topicFor: r.retainedTopic})
	// A message through the broker on the same connection after the
	// retained ones: once it is back, the broker has stored them all.
	if err := r.roundTrip(p.c, barrier); err != nil {
		return err
	}

	r.setPhase("receiving")
	start := time.Now()
	res.measureFrom = int64(start.Sub(r.epoch))
	for _, s := range r.subs {
		s.floor = res.measureFrom
	}
	subConns, err := r.connectSubscribers(true)
	if err != nil {
		return err
	}
	r.waitDelivered(cfg.Drain, true)

	// Subscribers leave before the deletions, which they would receive.
	r.setPhase("cleaning up")
	disconnectAll(subConns, cfg.ConnectParallelism)
	return r.deleteRetained(p)
}

// roundTrip publishes a QoS 0 message on c's barrier topic and waits for it
// to come back.
func (r *runner) roundTrip(c *conn, topic string) error {
	if _, err := c.writePacket(&wire.Publish{Topic: []byte(topic), Payload: []byte("barrier")}, nil, true); err != nil {
		return fmt.Errorf("client %s: publish barrier: %w", c.id, err)
	}
	select {
	case <-c.barrier:
		return nil
	case <-c.done:
		return fmt.Errorf("client %s: connection closed while waiting for the barrier message", c.id)
	case <-time.After(connectTimeout):
		return fmt.Errorf("client %s: barrier message on %q did not come back within %v", c.id, topic, connectTimeout)
	case <-r.ctx.Done():
		return context.Cause(r.ctx)
	}
}

// deleteRetained publishes an empty retained message (QoS 1, windowed) on
// every topic the run stored one on [MQTT-3.3.1-10].
func (r *runner) deleteRetained(stored *publisher) error {
	del := newPublisher(stored.idx, "", 1, r.cfg.Inflight)
	del.limited, del.quota = true, stored.sent.Load()
	c, _, err := r.dial(r.ctx, r.clientID('d', 0), true, pubBufSize)
	if err != nil {
		return fmt.Errorf("deleting retained messages: %w", err)
	}
	c.pub, del.c = del, c
	c.start()
	del.run(r, sendPlan{retain: true, empty: true, topicFor: r.retainedTopic})
	if n := del.sent.Load(); n < del.quota {
		r.errorf("deleted only %d of %d retained messages under %s/retained", n, del.quota, r.cfg.TopicPrefix)
	}
	return nil
}

// runOffline: persistent sessions subscribe and leave, a backlog is
// published, the sessions come back and are timed receiving it.
//
// With Config.Phase the run does only the first half (fill: leave the
// backlog queued) or the second (drain: the backlog fill left, as many
// messages as its quotas say).
func (r *runner) runOffline(res *Result) error {
	cfg := r.cfg
	if cfg.Phase != PhaseDrain {
		r.setPhase("subscribing")
		subConns, err := r.connectSubscribers(false)
		if err != nil {
			return err
		}
		disconnectAll(subConns, cfg.ConnectParallelism)

		r.setPhase("backlog")
		if err := r.connectPublishers(); err != nil {
			return err
		}
		start := time.Now()
		r.runPublishers(r.pubs, sendPlan{start: start, size: cfg.PayloadSize})
		if cfg.Phase == PhaseFill {
			res.ElapsedSec = time.Since(start).Seconds()
			for _, p := range r.pubs {
				if n := p.sent.Load(); n < p.quota {
					r.errorf("publisher %d sent only %d of its %d messages", p.idx, n, p.quota)
				}
			}
			return nil
		}
	} else {
		// What fill published: every publisher's whole quota. Its send
		// times count from another run's start: latency is measured from
		// the reconnect alone.
		for _, p := range r.pubs {
			p.sent.Store(p.quota)
		}
		for _, s := range r.subs {
			s.fromFloor = true
		}
	}

	r.setPhase("reconnecting")
	start := time.Now()
	res.measureFrom = int64(start.Sub(r.epoch))
	for _, s := range r.subs {
		s.floor = res.measureFrom
	}
	subConns, err := r.connectEach(len(r.subs), func(i int) string { return r.subs[i].id }, false, subBufSize,
		func(i int, c *conn, ack *wire.Connack) error {
			if !ack.SessionPresent {
				r.errorf("client %s: broker did not keep its session (CONNACK session present = 0); its backlog is lost", c.id)
			}
			c.sub = r.subs[i]
			c.start()
			return nil
		})
	if err != nil {
		return err
	}
	r.setPhase("receiving")
	r.waitDelivered(cfg.Drain, true)

	r.setPhase("cleaning up")
	r.removeSessions(subConns)
	return nil
}
