package loadtest

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"iotd/wire"
)

// lossyBroker is a deliberately broken QoS 0 broker: it forwards the n-th
// PUBLISH it receives (counting from 1) to every matching subscriber,
// except that it drops n%dropEvery == 0, holds n%swapEvery == 0 back until
// after the next one it forwards, and sends n%dupEvery == 0 twice. The load
// test must report exactly the damage done.
type lossyBroker struct {
	dropEvery, swapEvery, dupEvery int

	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex // guards everything below
	n     int
	held  []byte
	subs  map[*lossyConn][]string
	conns map[net.Conn]bool
}

type lossyConn struct {
	mu sync.Mutex
	nc net.Conn
}

func (c *lossyConn) send(b []byte) {
	c.mu.Lock()
	c.nc.Write(b)
	c.mu.Unlock()
}

func startLossy(t *testing.T, drop, swap, dup int) *lossyBroker {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	b := &lossyBroker{dropEvery: drop, swapEvery: swap, dupEvery: dup, ln: ln,
		subs: map[*lossyConn][]string{}, conns: map[net.Conn]bool{}}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns[nc] = true
			b.mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				b.serve(&lossyConn{nc: nc})
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for nc := range b.conns {
			nc.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

func (b *lossyBroker) serve(c *lossyConn) {
	defer func() {
		c.nc.Close()
		b.mu.Lock()
		delete(b.subs, c)
		delete(b.conns, c.nc)
		b.mu.Unlock()
	}()
	rd := wire.NewReader(c.nc, 0)
	for {
		fh, body, err := rd.ReadPacket()
		if err != nil {
			return
		}
		pk, err := wire.Decode(fh, body)
		if err != nil {
			return
		}
		switch p := pk.(type) {
		case *wire.Connect:
			c.send((&wire.Connack{}).Append(nil))
		case *wire.Subscribe:
			codes := make([]byte, len(p.Subscriptions)) // all granted QoS 0
			b.mu.Lock()
			for _, s := range p.Subscriptions {
				b.subs[c] = append(b.subs[c], s.Filter)
			}
			b.mu.Unlock()
			c.send((&wire.Suback{PacketID: p.PacketID, ReturnCodes: codes}).Append(nil))
		case *wire.Publish:
			b.route(p)
		case *wire.Pingreq:
			c.send((&wire.Pingresp{}).Append(nil))
		case *wire.Disconnect:
			return
		}
	}
}

func (b *lossyBroker) route(p *wire.Publish) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n++
	out := (&wire.Publish{Topic: p.Topic, Payload: p.Payload}).Append(nil)
	switch {
	case b.n%b.dropEvery == 0:
		return
	case b.n%b.swapEvery == 0:
		b.held = out
		return
	case b.n%b.dupEvery == 0:
		out = append(out, out...)
	}
	out = append(out, b.held...)
	b.held = nil
	for c, filters := range b.subs {
		for _, f := range filters {
			if wire.MatchTopic(f, p.Topic) {
				c.send(out)
				break
			}
		}
	}
}

// TestReportsBrokerDamage runs one publisher against the lossy broker and
// checks the report against a model of what the broker did.
func TestReportsBrokerDamage(t *testing.T) {
	const count, drop, swap, dup = 3000, 10, 13, 7
	b := startLossy(t, drop, swap, dup)
	cfg := brief(b.ln.Addr().String(), Fanin, 0)
	cfg.Publishers, cfg.Duration, cfg.Count, cfg.Drain = 1, 0, count, 500*time.Millisecond
	res, err := Run(context.Background(), cfg)
	require.NoError(t, err)

	// The model: the delivered sequence numbers in order.
	var got []uint64
	var held []uint64
	for n := 1; n <= count; n++ {
		seq := uint64(n - 1)
		switch {
		case n%drop == 0:
			continue
		case n%swap == 0:
			held = []uint64{seq}
			continue
		case n%dup == 0:
			got = append(got, seq, seq)
		default:
			got = append(got, seq)
		}
		got = append(got, held...)
		held = nil
	}
	var want seqTracker
	for _, s := range got {
		want.Add(s)
	}
	require.Equal(t, uint64(count), res.Sent)
	require.Equal(t, uint64(len(got)), res.Received)
	require.Equal(t, want.Lost(count), res.Lost)
	require.Equal(t, want.Dups, res.Duplicated)
	require.Equal(t, want.OutOfOrder, res.OutOfOrder)
	// The damage is substantial, and msg/s counts what arrived.
	require.Equal(t, uint64(count/drop), res.Lost, "every 10th dropped")
	require.Greater(t, res.Duplicated, uint64(count/dup/2))
	require.Greater(t, res.OutOfOrder, uint64(count/swap/2))
	require.Zero(t, res.Errors, "damage is reported as loss, not errors: %v", res.ErrorSamples)
}
