// Package shard is the broker core: connections, sessions and routing.
//
// Client ids hash (xxhash) onto N shards. A shard is one goroutine that owns
// its sessions, their subscriptions, packet ids, in-flight and queued
// messages; nothing else touches them, so they need no locks. Connection
// readers decode packets and post them to their client's shard; a shard
// matches a publish against the shared topic tree (lock-free reads) and posts
// one delivery batch per target shard per loop iteration.
package shard

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"iotd/auth"
	"iotd/listener"
	"iotd/topictree"
	"iotd/wire"
)

// MaxShards bounds Config.Shards; shard numbers read back from the logs are
// checked against it.
const MaxShards = 4096

// Config holds the broker's limits and behaviour. Zero values take the
// defaults from DefaultConfig.
type Config struct {
	Shards         int // shard goroutines, at most MaxShards; default runtime.NumCPU()
	MaxConnections int // open connections; more are closed at accept (limits.go)
	// MaxPendingHandshakes bounds connections without a completed CONNECT;
	// past it the oldest is closed (limits.go).
	MaxPendingHandshakes int
	MaxPacketSize        int           // bytes, fixed header included
	ConnectTimeout       time.Duration // time allowed for the CONNECT packet
	MaxClientIDLen       int           // longer ids get CONNACK 0x02
	MaxInflight          int           // unacknowledged QoS 1/2 messages per client
	MaxQueuedMessages    int           // QoS 1/2 messages waiting per session
	MaxOutboundBytes     int           // bytes queued for writing per connection
	MaxSubscriptions     int           // filters per session
	RetryInterval        time.Duration // in-session resend of unacknowledged messages; 0 = off
	RetryLimit           int           // resends per message; 0 = unlimited (DefaultConfig: 5)
	TakeoverGrace        time.Duration // how long a new connection waits for the old one's last packets

	// Connection storms (admission.go). MaxAcceptRate limits the
	// connections accepted per second, over every listener, with bursts of
	// up to MaxAcceptBurst (0: one second's worth); more are closed at
	// accept. MaxTLSHandshakes caps TLS handshakes in progress (tls://,
	// wss://); more TLS connections are closed at accept. 0 = no limit.
	// DefaultConfig: 5000/s, about two thirds of what 2 cores connect
	// (BENCHMARKS.md), with a burst of 20000, which lets that many clients
	// reconnect at once (the bench's 10,000- and 19,000-connection runs
	// whole, however fast they connect); 256 TLS handshakes, a bounded
	// queue of CPU work (a server handshake costs about a millisecond with
	// an RSA-2048 key, less with ECDSA).
	MaxAcceptRate    int
	MaxAcceptBurst   int
	MaxTLSHandshakes int

	// Persistence: with Persistence set, persistent sessions and retained
	// messages live in DataDir and QoS 1/2 publishes are acknowledged only
	// once durable.
	Persistence   bool
	DataDir       string
	FsyncInterval time.Duration // 0: fsync every commit; >0: fsync on this interval instead
	CompactBytes  int64         // log size that triggers a snapshot
	SegmentBytes  int           // log segment size (each shard keeps its tail segment in memory)

	WriteTimeout time.Duration // a write that makes no progress this long closes the connection
	MailboxSize  int           // reader events queued per shard before readers wait
	Logger       *slog.Logger

	// Security (authz.go). Auth holds the password file and the ACL; nil
	// means neither. DenyAnonymous refuses, with CONNACK 0x05, clients that
	// log in without a verified user name.
	Auth          *auth.Store
	DenyAnonymous bool

	// walFault, in tests, injects disk errors into every log (wal.Options.Fault).
	walFault func(dir, op string) error
}

// DefaultConfig returns the defaults an operator gets with no flags.
func DefaultConfig() Config {
	return Config{
		Shards:               runtime.NumCPU(),
		MaxConnections:       100000,
		MaxPendingHandshakes: 10000,
		MaxAcceptRate:        5000,
		MaxAcceptBurst:       20000,
		MaxTLSHandshakes:     256,
		MaxPacketSize:        16 << 20,
		ConnectTimeout:       10 * time.Second,
		MaxClientIDLen:       256,
		MaxInflight:          32,
		MaxQueuedMessages:    1000,
		MaxOutboundBytes:     1 << 20,
		MaxSubscriptions:     1000,
		RetryLimit:           5,
		TakeoverGrace:        250 * time.Millisecond,
		WriteTimeout:         30 * time.Second,
		MailboxSize:          4096,
		Persistence:          true,
		DataDir:              "./data",
		CompactBytes:         64 << 20,
		SegmentBytes:         4 << 20,
	}
}

func (c *Config) fill() {
	d := DefaultConfig()
	if c.Shards <= 0 {
		c.Shards = d.Shards
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = d.MaxConnections
	}
	if c.MaxPendingHandshakes <= 0 {
		c.MaxPendingHandshakes = d.MaxPendingHandshakes
	}
	if c.MaxAcceptRate > 0 && c.MaxAcceptBurst <= 0 {
		c.MaxAcceptBurst = c.MaxAcceptRate
	}
	if c.MaxPacketSize <= 0 {
		c.MaxPacketSize = d.MaxPacketSize
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = d.ConnectTimeout
	}
	if c.MaxClientIDLen <= 0 {
		c.MaxClientIDLen = d.MaxClientIDLen
	}
	if c.MaxInflight <= 0 {
		c.MaxInflight = d.MaxInflight
	}
	if c.MaxInflight > 65535 {
		c.MaxInflight = 65535
	}
	if c.MaxQueuedMessages <= 0 {
		c.MaxQueuedMessages = d.MaxQueuedMessages
	}
	if c.MaxOutboundBytes <= 0 {
		c.MaxOutboundBytes = d.MaxOutboundBytes
	}
	if c.MaxSubscriptions <= 0 {
		c.MaxSubscriptions = d.MaxSubscriptions
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.MailboxSize <= 0 {
		c.MailboxSize = d.MailboxSize
	}
	if c.TakeoverGrace <= 0 {
		c.TakeoverGrace = d.TakeoverGrace
	}
	if c.DataDir == "" {
		c.DataDir = d.DataDir
	}
	if c.CompactBytes <= 0 {
		c.CompactBytes = d.CompactBytes
	}
	if c.SegmentBytes <= 0 {
		c.SegmentBytes = d.SegmentBytes
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Broker is the running broker: shards, the shared topic tree and retained
// store, and the connections it serves.
type Broker struct {
	cfg         Config
	shards      []*Shard
	tree        *topictree.Tree
	retained    *topictree.Retained[*Message]
	retainLog   *retainLog  // nil when persistence is off
	retainMarks originMarks // the retained log's origin marks at startup; read-only
	quit        chan struct{}
	closing     atomic.Bool
	goroutines  group
	conns       connSet
	pending     pendingHandshakes
	admit       *admission
	idPrefix    string
	idSeq       atomic.Uint64
	stats       stats
	limitLogged sync.Map    // limit name -> *atomic.Int64 (unix nanos last logged)
	acl         *auth.Store // nil without an ACL file: the message path checks nothing
	sec         securityStats
	started     time.Time
}

// stats are broker-wide counters of rare events; per-message counters live
// in each shard (shardStats) so that cores never share a hot cache line.
type stats struct {
	droppedQoS0      atomic.Int64
	droppedQueueFull atomic.Int64
	subscriptions    atomic.Int64
	connectionsTotal atomic.Int64
	refused          sync.Map // reason -> *atomic.Int64
	limits           sync.Map // limit -> *atomic.Int64 (limits.go)
}

// New creates a broker, recovers its durable state and starts its shards.
func New(cfg Config) (*Broker, error) {
	cfg.fill()
	if cfg.Shards > MaxShards {
		return nil, fmt.Errorf("%d shards: at most %d", cfg.Shards, MaxShards)
	}
	var nonce [6]byte
	rand.Read(nonce[:])
	b := &Broker{
		cfg:      cfg,
		tree:     topictree.New(),
		retained: topictree.NewRetained[*Message](),
		quit:     make(chan struct{}),
		acl:      aclFor(&cfg),
		idPrefix: "iotd-" + hex.EncodeToString(nonce[:]) + "-",
		started:  time.Now(),
	}
	b.conns.init()
	b.pending.max = cfg.MaxPendingHandshakes
	b.admit = newAdmission(b, &cfg)
	b.shards = make([]*Shard, cfg.Shards)
	for i := range b.shards {
		b.shards[i] = newShard(b, i)
	}
	if cfg.Persistence {
		if err := b.openStorage(); err != nil {
			b.closeStorage()
			return nil, fmt.Errorf("data directory %s: %w", cfg.DataDir, err)
		}
	}
	for _, s := range b.shards {
		b.goroutines.start(s.run)
	}
	if rl := b.retainLog; rl != nil {
		b.goroutines.start(func() {
			rl.run(b.quit)
			if err := rl.close(); err != nil {
				cfg.Logger.Error("retained log close failed", "err", err)
			}
		})
	}
	return b, nil
}

// closeStorage closes logs opened by a failed start.
func (b *Broker) closeStorage() {
	for _, s := range b.shards {
		if s.p != nil {
			s.p.close()
		}
	}
	if b.retainLog != nil {
		b.retainLog.close()
	}
}

// Config returns the effective configuration.
func (b *Broker) Config() Config { return b.cfg }

// Serve accepts connections from ln until it fails or the broker closes. A
// temporary accept error backs off instead of ending the loop.
func (b *Broker) Serve(ln net.Listener) error {
	return b.ServeListener(ln, ListenerOptions{})
}

// ServeListener is Serve with the listener's own settings (authz.go).
// Every connection passes the accept-rate limit and the TLS handshake cap
// (admission.go) before anything is read from it.
func (b *Broker) ServeListener(ln net.Listener, opts ListenerOptions) error {
	gated := listener.SetGate(ln, b.admit) // ws://, wss://: admitted behind Accept
	var delay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if b.closing.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				b.cfg.Logger.Warn("accept failed; retrying", "listener", ln.Addr().String(), "err", err, "backoff", delay)
				select {
				case <-time.After(delay):
					continue
				case <-b.quit:
					return nil
				}
			}
			return fmt.Errorf("accept on %s: %w", ln.Addr(), err)
		}
		delay = 0
		tlsSlot := false
		if !gated {
			_, tlsSlot = conn.(*tls.Conn) // its handshake runs on the reader goroutine
			if !b.admit.Admit(conn, tlsSlot) {
				continue
			}
		}
		if !b.serveConn(conn, &opts, tlsSlot) {
			return nil
		}
	}
}

func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

// ServeConn serves one connection on its own reader goroutine. It reports
// false (and closes conn) if the broker is shutting down.
func (b *Broker) ServeConn(conn net.Conn) bool {
	return b.serveConn(conn, nil, false)
}

// serveConn serves conn; with tlsSlot it holds a TLS handshake slot, which
// is freed when its handshake ends or it is refused here.
func (b *Broker) serveConn(conn net.Conn, opts *ListenerOptions, tlsSlot bool) bool {
	if b.conns.open.Load() >= int64(b.cfg.MaxConnections) {
		if tlsSlot {
			b.admit.HandshakeDone()
		}
		b.refuseConnection(conn)
		return true
	}
	c := newClient(b, conn)
	c.lopts = opts
	c.tlsSlot = tlsSlot
	b.stats.connectionsTotal.Add(1)
	c.connKey = b.conns.add(c)
	if old := b.pending.add(c); old != nil {
		old.conn.Close() // its reader ends its handshake with an error
		b.hitLimit(LimitMaxPendingHandshakes, "closed the oldest connection still without CONNECT to make room", "remote", old.conn.RemoteAddr(), "max", b.cfg.MaxPendingHandshakes)
	}
	ok := b.goroutines.start(c.serve)
	if !ok {
		if tlsSlot {
			b.admit.HandshakeDone()
		}
		b.conns.remove(c.connKey)
		conn.Close()
	}
	return ok
}

// Close shuts the broker down: shards stop, every connection closes, and
// Close returns when all goroutines have exited or ctx ends.
func (b *Broker) Close(ctx context.Context) error {
	if !b.closing.CompareAndSwap(false, true) {
		return nil
	}
	b.goroutines.stop()
	close(b.quit)
	b.conns.closeAll()
	done := make(chan struct{})
	go func() {
		b.goroutines.wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("shutdown: goroutines still running: %w", ctx.Err())
	}
}

// Publish sends a message from the broker itself (such as $SYS statistics)
// to every matching subscriber, as a retained message when retain is set.
// Unlike client publishes it may use $SYS/ topics. It never blocks.
func (b *Broker) Publish(topic string, payload []byte, qos byte, retain bool) error {
	if err := wire.ValidTopicName(topic); err != nil {
		return fmt.Errorf("publish to %q: %w", topic, err)
	}
	if qos > 2 {
		return fmt.Errorf("publish to %q: QoS %d", topic, qos)
	}
	msg := newMessage([]byte(topic), payload, qos, retain)
	b.shardFor(topic).mb.pushShard(event{kind: evSysPublish, msg: msg})
	return nil
}

func (b *Broker) shardFor(clientID string) *Shard {
	return b.shards[xxhash.Sum64String(clientID)%uint64(len(b.shards))]
}

// newClientID assigns an id to a client that sent an empty one: unique
// within this process and unlikely to collide with ids from other runs.
func (b *Broker) newClientID() string {
	return b.idPrefix + strconv.FormatUint(b.idSeq.Add(1), 36)
}

func (b *Broker) checkPublishTopic(topic string) error {
	return wire.ValidTopicName(topic)
}

func (b *Broker) logDebug(msg string, args ...any) {
	b.cfg.Logger.Debug(msg, args...)
}

func (b *Broker) logInfo(msg string, args ...any) {
	b.cfg.Logger.Info(msg, args...)
}

// logLimit logs that a limit was hit, at most once per limitLogEvery per
// limit, so a flood of refusals cannot flood the log.
func (b *Broker) logLimit(limit, msg string, args ...any) {
	now := time.Now().UnixNano()
	v, _ := b.limitLogged.LoadOrStore(limit, new(atomic.Int64))
	last := v.(*atomic.Int64)
	prev := last.Load()
	if now-prev < int64(limitLogEvery) || !last.CompareAndSwap(prev, now) {
		return
	}
	b.cfg.Logger.Warn(msg, append(args, "limit", limit)...)
}

const limitLogEvery = 10 * time.Second

// group tracks the broker's goroutines and refuses new ones once shutdown
// has begun, so Close can wait for all of them.
//
// Starts share a read lock, so connections accepted and writers woken on
// many cores do not queue behind each other; stop takes the write lock, so
// every Add happens before Wait.
type group struct {
	mu      sync.RWMutex
	stopped bool
	wg      sync.WaitGroup
}

func (g *group) start(fn func()) bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.stopped {
		return false
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		fn()
	}()
	return true
}

func (g *group) stop() {
	g.mu.Lock()
	g.stopped = true
	g.mu.Unlock()
}

func (g *group) wait() { g.wg.Wait() }

// connSet holds every live connection so shutdown can close them. It is
// striped so that connects on many cores do not contend on one lock.
type connSet struct {
	seq     atomic.Uint64
	open    atomic.Int64 // entries, for the max-connections check
	stripes [64]struct {
		mu sync.Mutex
		m  map[uint64]*client
	}
}

func (s *connSet) init() {
	for i := range s.stripes {
		s.stripes[i].m = make(map[uint64]*client)
	}
}

func (s *connSet) add(c *client) uint64 {
	key := s.seq.Add(1)
	st := &s.stripes[key%64]
	st.mu.Lock()
	st.m[key] = c
	st.mu.Unlock()
	s.open.Add(1)
	return key
}

func (s *connSet) remove(key uint64) {
	st := &s.stripes[key%64]
	st.mu.Lock()
	_, ok := st.m[key]
	delete(st.m, key)
	st.mu.Unlock()
	if ok {
		s.open.Add(-1)
	}
}

func (s *connSet) len() int {
	n := 0
	for i := range s.stripes {
		st := &s.stripes[i]
		st.mu.Lock()
		n += len(st.m)
		st.mu.Unlock()
	}
	return n
}

func (s *connSet) closeAll() {
	for i := range s.stripes {
		st := &s.stripes[i]
		st.mu.Lock()
		for _, c := range st.m {
			c.conn.Close()
		}
		st.mu.Unlock()
	}
}
