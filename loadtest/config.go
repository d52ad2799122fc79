package loadtest

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/netip"
	"time"
)

// Scenario names a traffic shape.
type Scenario string

// The scenarios. Every message scenario subscribes (and waits for every
// SUBACK) before the first PUBLISH.
const (
	// Fanin: P publishers, each on its own topic, to S subscribers holding
	// one wildcard filter over all of them (default 10 -> 1).
	Fanin Scenario = "fanin"
	// Fanout: P publishers to S subscribers that subscribe to every
	// publisher's exact topic (default 1 -> 10).
	Fanout Scenario = "fanout"
	// Pairs: N clients in pairs, each publishing to its peer's topic and
	// subscribed to its own, like devices talking to their backends.
	Pairs Scenario = "pairs"
	// Latency: like fanin at a fixed total rate (default 1000 msg/s,
	// 1 -> 1), so the percentiles measure the broker, not queueing.
	Latency Scenario = "latency"
	// Connect: N connections opened with bounded parallelism, then held
	// idle; reports connects/s and, with BrokerPID, broker RSS per
	// connection.
	Connect Scenario = "connect"
	// Retained: one publisher stores Count retained messages in a topic
	// tree; S subscribers then subscribe with a wildcard and are timed
	// until they hold all of them. The messages are deleted afterwards.
	Retained Scenario = "retained"
	// Offline: S persistent sessions (clean session 0) subscribe and
	// disconnect, a publisher sends a backlog of Count messages, the
	// sessions reconnect and are timed until they received all of it.
	Offline Scenario = "offline"
)

// Scenarios lists every scenario in the order the CLI documents them.
var Scenarios = []Scenario{Fanin, Fanout, Pairs, Latency, Connect, Retained, Offline}

// Config describes one load-test run. Zero values take the defaults noted
// (some depend on the scenario); Run reports invalid combinations.
type Config struct {
	Scenario Scenario
	Addr     string      // broker host:port; default 127.0.0.1:1883
	TLS      *tls.Config // nil for plain TCP

	// SourceAddrs are the local addresses connections come from, in turn.
	// Empty: the kernel chooses, except that with a loopback broker address
	// connections spread over DefaultLoopbackSources, because one source
	// address has only about 28,000 ephemeral ports and Linux searches them
	// slowly once half are taken.
	SourceAddrs []netip.Addr

	Username, Password string // sent in CONNECT when Username is set

	QoS         byte // 0, 1 or 2
	PayloadSize int  // bytes per message; default 64, at least HeaderSize

	Publishers  int // publishing clients (fanin 10, fanout 1, latency 1, retained 1, offline 1)
	Subscribers int // subscribing clients (fanin 1, fanout 10, latency 1, retained 1, offline 10)
	Clients     int // pairs: clients (even, default 10); connect: connections (default 1000)

	// Rate is the total messages per second over all publishers; 0 sends
	// as fast as flow control allows. Latency defaults to 1000.
	Rate float64
	// Duration bounds the publishing phase; Count bounds the messages sent
	// by all publishers together. With neither, Duration is 10s; retained
	// and offline use Count only (default 1000 and 500).
	Duration time.Duration
	Count    int64

	// Inflight is each publisher's window of unacknowledged QoS 1/2
	// messages (default 100, at most 65535).
	Inflight int
	// E2EWindow bounds, per subscriber, the messages published but not yet
	// received: a publisher may run ahead of the slowest subscriber it
	// feeds by E2EWindow divided by the number of publishers feeding that
	// subscriber (at least 1), so msg/s measures delivery, not queue
	// depth. Keep it within the broker's per-session queue limit
	// (Mosquitto and iotd: 1000) or QoS 1/2 messages are dropped there.
	// It bounds what subscribers have not received, not acknowledgements
	// the broker has not yet read: Mosquitto 2.0 reads one packet per
	// connection per loop, so a subscriber fed by several unpaced
	// publishers falls behind in its acks, which Mosquitto counts against
	// the queue limit, and it drops; that shows as loss (use Rate).
	// Default 1000; negative disables the bound.
	E2EWindow int
	// Drain is how long to wait, once publishing has stopped, for the
	// messages still on their way (the wait ends as soon as all arrived);
	// in retained and offline, how long without a new message ends the
	// receiving phase. Default 2s.
	Drain time.Duration
	// Timeout stops everything, whatever state it is in; default:
	// Duration + Hold + Drain + 1m (5m when bounded only by Count).
	Timeout time.Duration

	// Connect scenario.
	Hold               time.Duration // how long connections are held idle; default 5s
	ConnectParallelism int           // connection attempts in flight at once; default 64
	BrokerPID          int           // when set, VmRSS of this process is read before and after

	KeepAlive   time.Duration // sent in CONNECT, PINGREQ every half of it; default 60s
	TopicPrefix string        // default "loadtest/<run id>", unique per run

	// PersistentSessions makes the subscribers of fanin, fanout, pairs and
	// latency connect with clean session 0, so that a broker with
	// persistence writes every QoS 1/2 delivery to its log; the sessions
	// are removed at the end. (Offline always uses persistent sessions.)
	PersistentSessions bool

	// Phase splits offline across broker restarts: PhaseFill subscribes
	// the persistent sessions, takes them offline, publishes the backlog
	// and exits, leaving the backlog queued in the broker; PhaseDrain
	// reconnects the same sessions (same RunID, Subscribers, Publishers
	// and Count), receives the backlog, checks it against what fill sent
	// (Count) and removes the sessions. Default PhaseAll: both in one run.
	Phase Phase
	// RunID names the run in client ids, the default topic prefix and
	// every payload (1-12 letters or digits); default random. Fill and
	// drain must use the same one.
	RunID string

	// Progress, when set, gets one line per ProgressInterval (default 1s)
	// with the current rates, connections and errors.
	Progress         io.Writer
	ProgressInterval time.Duration
}

// Phase is a part of the offline scenario; see Config.Phase.
type Phase string

// The phases of offline.
const (
	PhaseAll   Phase = "all"
	PhaseFill  Phase = "fill"
	PhaseDrain Phase = "drain"
)

// Defaults used by Run; exported so the CLI can show them.
const (
	DefaultAddr               = "127.0.0.1:1883"
	DefaultPayloadSize        = 64
	DefaultInflight           = 100
	DefaultE2EWindow          = 1000
	DefaultDrain              = 2 * time.Second
	DefaultDuration           = 10 * time.Second
	DefaultHold               = 5 * time.Second
	DefaultConnectParallelism = 64
	DefaultKeepAlive          = 60 * time.Second
	DefaultLoopbackSources    = 8 // 127.0.0.1 to 127.0.0.8
)

// isLoopbackV4 reports whether addr (host:port) is an IPv4 loopback address.
func isLoopbackV4(addr string) bool {
	ap, err := netip.ParseAddrPort(addr)
	return err == nil && ap.Addr().Is4() && ap.Addr().IsLoopback()
}

// withDefaults fills zero fields; it is applied to a copy.
func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if len(c.SourceAddrs) == 0 && isLoopbackV4(c.Addr) {
		ip := netip.AddrFrom4([4]byte{127, 0, 0, 1})
		for range DefaultLoopbackSources {
			c.SourceAddrs = append(c.SourceAddrs, ip)
			ip = ip.Next()
		}
	}
	if c.PayloadSize == 0 {
		c.PayloadSize = DefaultPayloadSize
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	switch c.Scenario {
	case Fanin:
		def(&c.Publishers, 10)
		def(&c.Subscribers, 1)
	case Fanout:
		def(&c.Publishers, 1)
		def(&c.Subscribers, 10)
	case Pairs:
		def(&c.Clients, 10)
	case Latency:
		def(&c.Publishers, 1)
		def(&c.Subscribers, 1)
		if c.Rate == 0 {
			c.Rate = 1000
		}
	case Connect:
		def(&c.Clients, 1000)
	case Retained:
		c.Publishers = 1
		def(&c.Subscribers, 1)
		if c.Count == 0 {
			c.Count = 1000
		}
	case Offline:
		def(&c.Publishers, 1)
		def(&c.Subscribers, 10)
		if c.Count == 0 {
			c.Count = 500
		}
	}
	if c.Scenario == Pairs && c.Clients%2 == 1 {
		c.Clients++
	}
	def(&c.Inflight, DefaultInflight)
	def(&c.E2EWindow, DefaultE2EWindow)
	def(&c.ConnectParallelism, DefaultConnectParallelism)
	if c.Drain == 0 {
		c.Drain = DefaultDrain
	}
	if c.Hold == 0 {
		c.Hold = DefaultHold
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	if c.Phase == "" {
		c.Phase = PhaseAll
	}
	if c.ProgressInterval <= 0 {
		c.ProgressInterval = time.Second
	}
	if c.Duration == 0 && c.Count == 0 && c.Scenario != Connect {
		c.Duration = DefaultDuration
	}
	if c.Timeout == 0 {
		switch {
		case c.Scenario == Connect:
			c.Timeout = c.Hold + c.Drain + 5*time.Minute
		case c.Duration > 0:
			c.Timeout = c.Duration + c.Drain + time.Minute
		default:
			c.Timeout = 5 * time.Minute
		}
	}
	return c
}

func (c *Config) validate() error {
	known := false
	for _, s := range Scenarios {
		known = known || c.Scenario == s
	}
	switch {
	case !known:
		return fmt.Errorf("unknown scenario %q: want one of %v", c.Scenario, Scenarios)
	case c.QoS > 2:
		return fmt.Errorf("QoS %d: want 0, 1 or 2", c.QoS)
	case c.PayloadSize < HeaderSize:
		return fmt.Errorf("payload size %d is below the %d-byte header every message carries (publisher, sequence, timestamp)", c.PayloadSize, HeaderSize)
	case c.PayloadSize > 256<<20:
		return fmt.Errorf("payload size %d is over MQTT's 256 MiB packet limit", c.PayloadSize)
	case c.Publishers < 0 || c.Subscribers < 0 || c.Clients < 0:
		return fmt.Errorf("publishers, subscribers and clients must not be negative")
	case c.Rate < 0:
		return fmt.Errorf("rate %v: want 0 (as fast as possible) or more", c.Rate)
	case c.Duration < 0 || c.Count < 0:
		return fmt.Errorf("duration and count must not be negative")
	case c.Inflight < 1 || c.Inflight > 65535:
		return fmt.Errorf("in-flight window %d: want 1 to 65535 (MQTT packet ids are 16 bits)", c.Inflight)
	case c.KeepAlive < time.Second || c.KeepAlive > 65535*time.Second:
		return fmt.Errorf("keep-alive %v: want 1s to 18h12m15s", c.KeepAlive)
	case c.ConnectParallelism < 1:
		return fmt.Errorf("connect parallelism %d: want at least 1", c.ConnectParallelism)
	case c.Scenario == Offline && c.QoS == 0:
		return fmt.Errorf("offline needs QoS 1 or 2: brokers do not queue QoS 0 messages for offline sessions")
	case c.Scenario == Latency && c.Rate == 0:
		return fmt.Errorf("latency needs a rate above 0 (use fanin to measure latency at full speed)")
	case c.Phase != PhaseAll && c.Phase != PhaseFill && c.Phase != PhaseDrain:
		return fmt.Errorf("phase %q: want all, fill or drain", c.Phase)
	case c.Phase != PhaseAll && c.Scenario != Offline:
		return fmt.Errorf("phase %s is for the offline scenario only", c.Phase)
	case c.Phase != PhaseAll && c.RunID == "":
		return fmt.Errorf("phase %s needs a run id (the same for fill and drain), so drain finds the sessions fill left", c.Phase)
	case !validRunID(c.RunID):
		return fmt.Errorf("run id %q: want 1 to 12 letters or digits", c.RunID)
	case c.PersistentSessions && c.Scenario != Fanin && c.Scenario != Fanout && c.Scenario != Pairs && c.Scenario != Latency:
		return fmt.Errorf("persistent sessions apply to fanin, fanout, pairs and latency (offline always uses them)")
	}
	switch c.Scenario {
	case Fanin, Fanout, Latency, Retained, Offline:
		if c.Publishers < 1 || c.Subscribers < 1 {
			return fmt.Errorf("%s needs at least one publisher and one subscriber", c.Scenario)
		}
	case Pairs, Connect:
		if c.Clients < 1 {
			return fmt.Errorf("%s needs at least one client", c.Scenario)
		}
	}
	return nil
}

// validRunID accepts "" (random) or 1-12 ASCII letters and digits: client
// ids stay within the 23 bytes every broker accepts.
func validRunID(id string) bool {
	if len(id) > 12 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}
