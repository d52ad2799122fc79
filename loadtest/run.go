package loadtest

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"iotd/wire"
)

// maxErrorSamples is how many error messages a Result keeps verbatim.
const maxErrorSamples = 10

// Write buffer sizes: publishers batch many messages per write call,
// subscribers only write acknowledgements, idle connections almost nothing.
const (
	pubBufSize  = 64 << 10
	subBufSize  = 8 << 10
	idleBufSize = 256
)

// runner is the state of one Run.
type runner struct {
	cfg   Config
	ctx   context.Context // ends at the hard timeout or when the caller cancels
	runID string          // in client ids and the default topic prefix
	tag   uint32          // in every payload
	epoch time.Time       // payload timestamps count from here

	stop     chan struct{} // closed when publishers must stop
	stopOnce sync.Once
	stopping atomic.Bool

	mu      sync.Mutex
	conns   []*conn // every connection started, for keep-alive and shutdown
	samples []string
	readers sync.WaitGroup

	dials   atomic.Uint64 // connection attempts, to take source addresses in turn
	open    atomic.Int64  // connections currently open
	started atomic.Int64  // connections opened during the run
	errs    atomic.Int64
	stalls  atomic.Int64
	phase   atomic.Pointer[string]

	pubs   []*publisher
	subs   []*subscriber
	lat    *latencyHist
	ackLat *latencyHist // publish to PUBACK (QoS 1) or PUBREC (QoS 2)
}

// Run executes one load test and returns its result. It always ends by
// itself: publishing stops after cfg.Duration or cfg.Count messages, and
// cfg.Timeout (or ctx) stops everything. Problems during the run (lost
// connections, protocol errors) are counted in Result.Errors; an error is
// returned when the test could not be carried out (no connection, a refused
// subscription, the hard timeout), in which case the Result, if not nil,
// holds what was measured until then.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	r := &runner{
		cfg:    cfg,
		runID:  hex.EncodeToString(rnd[:4]),
		tag:    binary.BigEndian.Uint32(rnd[4:]),
		epoch:  time.Now(),
		stop:   make(chan struct{}),
		lat:    newLatencyHist(runtime.GOMAXPROCS(0)),
		ackLat: newLatencyHist(runtime.GOMAXPROCS(0)),
	}
	if cfg.RunID != "" {
		// Another run with the same id (offline fill, then drain) must
		// recognise these payloads.
		h := fnv.New32a()
		h.Write([]byte(cfg.RunID))
		r.runID, r.tag = cfg.RunID, h.Sum32()
	}
	if r.cfg.TopicPrefix == "" {
		r.cfg.TopicPrefix = "loadtest/" + r.runID
	}
	if r.cfg.TLS != nil && r.cfg.TLS.ServerName == "" && !r.cfg.TLS.InsecureSkipVerify {
		// Verify the broker's certificate against the host dialled.
		host, _, err := net.SplitHostPort(r.cfg.Addr)
		if err != nil {
			return nil, fmt.Errorf("address %q: %w", r.cfg.Addr, err)
		}
		r.cfg.TLS = r.cfg.TLS.Clone()
		r.cfg.TLS.ServerName = host
	}
	ctx, cancel := context.WithTimeoutCause(ctx, cfg.Timeout, fmt.Errorf("hard timeout of %v reached", cfg.Timeout))
	defer cancel()
	r.ctx = ctx
	r.setPhase("connecting")
	r.build()

	// The hard timeout closes every connection, which unblocks everything.
	stopKill := context.AfterFunc(ctx, func() {
		r.stopPublishing()
		r.closeAll()
	})
	defer stopKill()
	background := r.background()

	res := &Result{
		Scenario:     string(cfg.Scenario),
		Addr:         cfg.Addr,
		QoS:          int(cfg.QoS),
		PayloadBytes: cfg.PayloadSize,
		TopicPrefix:  r.cfg.TopicPrefix,
		RunID:        r.runID,
	}
	if cfg.Scenario == Offline {
		res.Phase = string(cfg.Phase)
	}
	var err error
	switch cfg.Scenario {
	case Fanin, Fanout, Pairs, Latency:
		err = r.runMessages(res)
	case Connect:
		err = r.runConnect(res)
	case Retained:
		err = r.runRetained(res)
	case Offline:
		err = r.runOffline(res)
	}
	r.stopPublishing()
	r.shutdown()
	background()
	if err == nil && ctx.Err() != nil {
		err = context.Cause(ctx)
	}
	r.finish(res)
	if err != nil {
		res.Failure = err.Error()
	}
	return res, err
}

// errorf counts an error and keeps the first few messages.
func (r *runner) errorf(format string, args ...any) {
	r.errs.Add(1)
	r.mu.Lock()
	if len(r.samples) < maxErrorSamples {
		r.samples = append(r.samples, fmt.Sprintf(format, args...))
	}
	r.mu.Unlock()
}

func (r *runner) setPhase(p string) { r.phase.Store(&p) }

func (r *runner) stopPublishing() {
	r.stopOnce.Do(func() {
		r.stopping.Store(true)
		close(r.stop)
	})
}

// snapshotConns returns the connections started so far.
func (r *runner) snapshotConns() []*conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*conn(nil), r.conns...)
}

func (r *runner) closeAll() {
	for _, c := range r.snapshotConns() {
		c.close()
	}
}

// shutdown sends DISCONNECT on every open connection, gives the broker a
// moment to close them, then closes whatever is left and waits for every
// reader to exit.
func (r *runner) shutdown() {
	conns := r.snapshotConns()
	disconnectAll(conns, r.cfg.ConnectParallelism)
	r.readers.Wait()
	r.mu.Lock()
	r.conns = nil
	r.mu.Unlock()
}

// disconnectAll ends conns gracefully: DISCONNECT, then wait up to a
// second for the broker to close each one.
func disconnectAll(conns []*conn, parallel int) {
	forEach(len(conns), parallel, func(i int) {
		c := conns[i]
		if c == nil {
			return
		}
		select {
		case <-c.done:
			return
		default:
		}
		c.sendDisconnect()
	})
	deadline := time.NewTimer(time.Second)
	defer deadline.Stop()
	expired := false
	for _, c := range conns {
		if c == nil {
			continue
		}
		if !expired {
			select {
			case <-c.done:
			case <-deadline.C:
				expired = true
			}
		}
		c.close()
		<-c.done // closing the socket ends the reader promptly
	}
}

// forEach runs fn(0..n-1) on up to parallel goroutines.
func forEach(n, parallel int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(parallel, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// background starts the progress printer and the keep-alive pinger; the
// returned func stops them and waits.
func (r *runner) background() func() {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	if r.cfg.Progress != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.progressLoop(quit)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(r.cfg.KeepAlive / 2)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				for _, c := range r.snapshotConns() {
					c.ping()
				}
			case <-quit:
				return
			}
		}
	}()
	return func() {
		close(quit)
		wg.Wait()
	}
}

// progressLoop prints one line per interval: deliveries and sends per
// second over the last interval, open connections, errors.
func (r *runner) progressLoop(quit chan struct{}) {
	t := time.NewTicker(r.cfg.ProgressInterval)
	defer t.Stop()
	var lastSent, lastRecv uint64
	last := time.Now()
	for {
		select {
		case <-quit:
			return
		case now := <-t.C:
			var sent, recv uint64
			for _, p := range r.pubs {
				sent += p.sent.Load()
			}
			for _, s := range r.subs {
				recv += s.recv.Load()
			}
			secs := now.Sub(last).Seconds()
			fmt.Fprintf(r.cfg.Progress, "[%5.1fs] %-8s %-12s sent %9.0f msg/s  recv %9.0f msg/s  conns %d  errors %d\n",
				time.Since(r.epoch).Seconds(), r.cfg.Scenario, *r.phase.Load(),
				float64(sent-lastSent)/secs, float64(recv-lastRecv)/secs, r.open.Load(), r.errs.Load())
			lastSent, lastRecv, last = sent, recv, now
		}
	}
}

// connectEach dials n clients with bounded parallelism; setup, if set,
// runs on each new connection before its reader starts. The first failure
// cancels the rest and is returned.
func (r *runner) connectEach(n int, id func(i int) string, clean bool, bufSize int, setup func(i int, c *conn, ack *wire.Connack) error) ([]*conn, error) {
	conns := make([]*conn, n)
	var (
		once     sync.Once
		firstErr error
	)
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	forEach(n, r.cfg.ConnectParallelism, func(i int) {
		if ctx.Err() != nil {
			return
		}
		c, ack, err := r.dial(ctx, id(i), clean, bufSize)
		if err == nil && setup != nil {
			if err = setup(i, c, ack); err != nil {
				c.close()
			}
		}
		if err != nil {
			once.Do(func() { firstErr = err; cancel() })
			return
		}
		conns[i] = c
	})
	if firstErr == nil && r.ctx.Err() != nil {
		firstErr = context.Cause(r.ctx)
	}
	return conns, firstErr
}

// clientID names client i of a role: short enough for the 23 bytes every
// 3.1.1 broker must accept [MQTT-3.1.3-5].
func (r *runner) clientID(role byte, i int) string {
	return fmt.Sprintf("lt%s%c%d", r.runID, role, i)
}

// waitDelivered waits until subscribers hold every expected message,
// giving up after d, or, with idle set, once nothing new arrived for d.
func (r *runner) waitDelivered(d time.Duration, idle bool) {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	deadline := time.Now().Add(d)
	var lastRecv uint64
	for {
		var want, have, recv uint64
		for _, p := range r.pubs {
			want += p.sent.Load() * uint64(len(p.streams))
		}
		for _, s := range r.subs {
			have += s.distinct.Load()
			recv += s.recv.Load()
		}
		if have >= want {
			return
		}
		if idle && recv != lastRecv {
			lastRecv = recv
			deadline = time.Now().Add(d)
		}
		if time.Now().After(deadline) {
			return
		}
		select {
		case <-t.C:
		case <-r.ctx.Done():
			return
		}
	}
}

// finish fills the result from the publishers' and subscribers' state;
// every reader has exited, so their fields are safe to read.
func (r *runner) finish(res *Result) {
	res.Publishers = len(r.pubs)
	res.Connections = int(r.started.Load())
	res.Subscribers = len(r.subs)
	for _, p := range r.pubs {
		res.Sent += p.sent.Load()
		if p.ackLat != nil {
			p.ackLat.flush()
		}
	}
	var last int64
	for _, s := range r.subs {
		s.lat.flush()
		last = max(last, s.last.Load())
		for _, st := range s.all {
			st.expected = st.pub.sent.Load()
			res.Expected += st.expected
			res.Received += st.t.Received
			res.Duplicated += st.t.Dups
			if s.ordered {
				res.OutOfOrder += st.t.OutOfOrder
			}
			if r.cfg.Phase != PhaseFill { // fill leaves the backlog for drain
				res.Lost += st.t.Lost(st.expected)
			}
		}
	}
	if res.measureFrom > 0 && last > res.measureFrom {
		res.ElapsedSec = time.Duration(last - res.measureFrom).Seconds()
		res.MsgsPerSec = float64(res.Received) / res.ElapsedSec
	}
	if r.cfg.Scenario == Offline {
		res.BacklogMsgsPerSec = res.MsgsPerSec
	}
	res.Latency = summarize(r.lat.merged())
	res.AckLatency = summarize(r.ackLat.merged())
	res.Stalls = r.stalls.Load()
	res.Errors = r.errs.Load()
	r.mu.Lock()
	res.ErrorSamples = append([]string(nil), r.samples...)
	r.mu.Unlock()
}

// since reports the time since the epoch in payload units.
func (r *runner) since() int64 { return int64(time.Since(r.epoch)) }

var errNoConnections = errors.New("no connection could be established")
