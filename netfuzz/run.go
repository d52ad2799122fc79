package netfuzz

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/dustin/go-humanize"

	"iotd/wire"
)

// Defaults of Config.
const (
	DefaultAddr            = "127.0.0.1:1883"
	DefaultDuration        = time.Minute
	DefaultConnections     = 8
	DefaultControlInterval = 100 * time.Millisecond
	DefaultControlTimeout  = 5 * time.Second
	DefaultProgress        = 10 * time.Second
)

// Config is one fuzzing run.
type Config struct {
	Addr        string        // broker HOST:PORT; loopback only unless AllowRemote
	AllowRemote bool          // fuzz a broker that is not on this machine's loopback
	Seed        uint64        // every stream derives from it (ConnSeed)
	Duration    time.Duration // fuzzing time; the run stops by itself after it
	Connections int           // fuzzing connections open at once

	// Replay, if set, plays exactly these connection seeds, one after the
	// other, instead of a timed run of Seed.
	Replay []uint64

	ControlInterval time.Duration // time between the starts of control round trips
	// ControlTimeout is the generous bound on one control round trip (and
	// on a control reconnect); a slower one is a failure.
	ControlTimeout time.Duration

	// BrokerAlive, if set, is polled while fuzzing: an error means the
	// broker process died, which ends the run as a failure.
	BrokerAlive func() error
	// BrokerPeakRSS, if set, reports the broker's peak resident memory in
	// bytes; it is read once fuzzing ends (Result.BrokerPeakRSS).
	BrokerPeakRSS func() (int64, error)

	Progress         io.Writer     // a line every ProgressInterval; nil: none
	ProgressInterval time.Duration // default DefaultProgress
	ConnLog          io.Writer     // one line per fuzzing connection; nil: none
}

func (c *Config) fill() {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Duration <= 0 {
		c.Duration = DefaultDuration
	}
	if c.Connections <= 0 {
		c.Connections = DefaultConnections
	}
	if c.ControlInterval <= 0 {
		c.ControlInterval = DefaultControlInterval
	}
	if c.ControlTimeout <= 0 {
		c.ControlTimeout = DefaultControlTimeout
	}
	if c.ProgressInterval <= 0 {
		c.ProgressInterval = DefaultProgress
	}
}

// checkLoopback refuses an address that resolves to anything but loopback:
// a fuzzer pointed at someone else's broker by mistake is an attack.
func checkLoopback(ctx context.Context, addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	for _, ip := range ips {
		if !ip.IP.IsLoopback() {
			return fmt.Errorf("address %q resolves to %s, not a loopback address (allow it explicitly to fuzz a remote broker)", addr, ip.IP)
		}
	}
	return nil
}

// Failure is one reason the run failed.
type Failure struct {
	At    time.Duration // since the run started
	What  string
	Seeds []uint64 // the connections running then (replay them with Config.Replay)
}

// ControlStats are the control client's round trips.
type ControlStats struct {
	RoundTrips int64         // completed within the timeout
	Misses     int64         // failed or slower than the timeout
	Reconnects int64         // after a miss
	P50        time.Duration // of completed round trips
	P99        time.Duration
	Max        time.Duration
}

// Result is what a run did. The run passed when Failures is empty.
type Result struct {
	Seed            uint64
	Elapsed         time.Duration
	Connections     int64 // fuzzing connections made
	DialErrors      int64
	Kinds           map[string]int64 // connections per stream kind
	Endings         map[string]int64 // connections per ending
	Packets         int64            // generated packets written to the end (mutated or not)
	BytesSent       int64
	BytesReceived   int64
	PacketsReceived int64
	BrokerClosed    int64 // connections the broker closed before their script ended
	WriteStalls     int64 // writes that made no progress for 5 s
	Control         ControlStats
	BrokerPeakRSS   int64  // bytes; 0 when unknown (Config.BrokerPeakRSS)
	CleanupError    string `json:",omitempty"`
	Failures        []Failure
}

// Err summarizes the failures, or is nil when the run passed.
func (r *Result) Err() error {
	if len(r.Failures) == 0 {
		return nil
	}
	return fmt.Errorf("%d failure(s), first: %s", len(r.Failures), r.Failures[0].What)
}

// runner is the state of one run shared by its goroutines.
type runner struct {
	cfg   Config
	start time.Time

	mu       sync.Mutex
	res      Result
	current  []uint64   // per worker: the seed of its running connection, 0 when none
	recent   [][]uint64 // per worker: the seeds of its last few connections
	latency  []time.Duration
	fatal    chan struct{} // closed on the first failure that ends the run
	fatalSet bool
}

const recentPerWorker = 3

// Run fuzzes the broker at cfg.Addr. It returns the result with an error
// when the run failed (Result.Failures), or no result and an error when it
// could not start: a refused address, or a control client that cannot
// complete its first round trip.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.fill()
	if !cfg.AllowRemote {
		if err := checkLoopback(ctx, cfg.Addr); err != nil {
			return nil, err
		}
	}
	workers := cfg.Connections
	if len(cfg.Replay) > 0 {
		workers = 1
	}
	r := &runner{
		cfg:     cfg,
		current: make([]uint64, workers),
		recent:  make([][]uint64, workers),
		fatal:   make(chan struct{}),
	}
	r.res.Seed = cfg.Seed
	r.res.Kinds = make(map[string]int64)
	r.res.Endings = make(map[string]int64)

	ctl := newControl(cfg.Addr, cfg.ControlTimeout)
	if err := ctl.connect(ctx); err != nil {
		return nil, fmt.Errorf("control client: %w", err)
	}
	if _, err := ctl.roundTrip(ctx); err != nil {
		ctl.close()
		return nil, fmt.Errorf("control client before fuzzing: %w", err)
	}

	r.start = time.Now()
	fuzzCtx, stopFuzz := context.WithTimeout(ctx, cfg.Duration)
	defer stopFuzz()
	go func() {
		select {
		case <-r.fatal:
			stopFuzz()
		case <-fuzzCtx.Done():
		}
	}()

	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() { r.worker(fuzzCtx, w) })
	}
	ctlDone := make(chan struct{})
	go func() {
		defer close(ctlDone)
		r.controlLoop(fuzzCtx, ctl)
	}()
	var bg sync.WaitGroup
	if cfg.BrokerAlive != nil {
		bg.Go(func() { r.watchBroker(fuzzCtx) })
	}
	if cfg.Progress != nil {
		bg.Go(func() { r.progress(fuzzCtx) })
	}
	allDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(allDone)
	}()
	select {
	case <-allDone: // a replay ran out of seeds
	case <-fuzzCtx.Done():
	}
	stopFuzz()
	wg.Wait()
	<-ctlDone
	bg.Wait()

	// The broker must still serve once the fuzzing stops: one more round
	// trip (on a fresh connection if the last one failed), then clean up.
	if !r.isFatal() && ctx.Err() == nil {
		err := error(nil)
		if ctl.nc == nil {
			err = ctl.connect(ctx)
		}
		if err == nil {
			_, err = ctl.roundTrip(ctx)
		}
		if err != nil {
			r.fail("control round trip after fuzzing: "+err.Error(), false)
		} else if err := cleanup(ctx, cfg.Addr, cfg.ControlTimeout); err != nil {
			r.res.CleanupError = err.Error()
		}
	}
	ctl.close()
	if cfg.BrokerPeakRSS != nil {
		if rss, err := cfg.BrokerPeakRSS(); err == nil {
			r.res.BrokerPeakRSS = rss
		}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	r.res.Elapsed = time.Since(r.start)
	r.res.Control.P50, r.res.Control.P99 = percentile(r.latency, 0.50), percentile(r.latency, 0.99)
	res := r.res
	return &res, res.Err()
}

func (r *runner) isFatal() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fatalSet
}

// fail records a failure with the seeds of the connections running now and
// just before; fatal ends the run.
func (r *runner) fail(what string, fatal bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var seeds []uint64
	seen := make(map[uint64]bool)
	for w := range r.current {
		for _, s := range append([]uint64{r.current[w]}, r.recent[w]...) {
			if s != 0 && !seen[s] {
				seen[s] = true
				seeds = append(seeds, s)
			}
		}
	}
	r.res.Failures = append(r.res.Failures, Failure{At: time.Since(r.start), What: what, Seeds: seeds})
	if fatal && !r.fatalSet {
		r.fatalSet = true
		close(r.fatal)
	}
}

// worker runs connections one after the other until ctx ends.
func (r *runner) worker(ctx context.Context, w int) {
	for n := 0; ctx.Err() == nil; n++ {
		seed := ConnSeed(r.cfg.Seed, w, n)
		if len(r.cfg.Replay) > 0 {
			if n >= len(r.cfg.Replay) {
				return
			}
			seed = r.cfg.Replay[n]
		}
		s := NewScript(seed)
		r.mu.Lock()
		r.current[w] = seed
		r.mu.Unlock()
		res := runScript(ctx, r.cfg.Addr, s)
		res.worker, res.n = w, n
		r.account(w, res)
		if res.dialErr != nil {
			// The broker may be refusing connections (max-connections) or
			// gone; the control client and BrokerAlive tell which.
			sleep(ctx, 100*time.Millisecond)
		}
	}
}

func (r *runner) account(w int, c *connResult) {
	s := c.script
	r.mu.Lock()
	r.current[w] = 0
	r.recent[w] = append(r.recent[w], s.Seed)
	if len(r.recent[w]) > recentPerWorker {
		r.recent[w] = r.recent[w][1:]
	}
	res := &r.res
	if c.dialErr != nil {
		res.DialErrors++
	} else {
		res.Connections++
		res.Kinds[s.Kind.String()]++
		res.Endings[s.Ending.String()]++
		res.Packets += int64(c.packets)
		res.BytesSent += c.wrote
		res.BytesReceived += c.read.Load()
		res.PacketsReceived += c.readPackets.Load()
		if c.brokerClosed.Load() {
			res.BrokerClosed++
		}
		if c.writeStall {
			res.WriteStalls++
		}
	}
	r.mu.Unlock()
	if c.violation != "" {
		r.fail(fmt.Sprintf("connection seed %#x: %s", s.Seed, c.violation), false)
	}
	if r.cfg.ConnLog != nil {
		r.logConn(c)
	}
}

func (r *runner) logConn(c *connResult) {
	s := c.script
	outcome := "ok"
	switch {
	case c.dialErr != nil:
		outcome = "dial error: " + c.dialErr.Error()
	case c.violation != "":
		outcome = "VIOLATION: " + c.violation
	case c.writeStall:
		outcome = "write stalled"
	case c.brokerClosed.Load():
		outcome = "closed by broker"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.cfg.ConnLog, "w=%d n=%d seed=%#016x kind=%s chunks=%s cut=%d end=%s read=%v wrote=%d/%d packets=%d/%d got=%dB/%dpk %s %s mutations=%q\n",
		c.worker, c.n, s.Seed, s.Kind, s.Chunks, s.Cut, s.Ending, s.Read, c.wrote, len(s.Bytes()), c.packets, len(s.PacketEnds),
		c.read.Load(), c.readPackets.Load(), c.elapsed.Round(time.Millisecond), outcome, s.Mutations)
}

// controlLoop starts a round trip every ControlInterval (or as soon as the
// previous one ends, if it took longer) until ctx ends. A miss reconnects;
// a broker the control client cannot reach for ControlTimeout ends the run.
func (r *runner) controlLoop(ctx context.Context, ctl *control) {
	tick := time.NewTicker(r.cfg.ControlInterval)
	defer tick.Stop()
	var unreachableSince time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if ctl.nc == nil {
			if err := ctl.connect(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				if unreachableSince.IsZero() {
					unreachableSince = time.Now()
				}
				if time.Since(unreachableSince) >= r.cfg.ControlTimeout {
					r.fail("control client cannot reconnect: "+err.Error(), true)
					return
				}
				continue
			}
			unreachableSince = time.Time{}
			r.mu.Lock()
			r.res.Control.Reconnects++
			r.mu.Unlock()
		}
		d, err := ctl.roundTrip(ctx)
		if ctx.Err() != nil {
			// Cut short by the end of the run: neither a success nor a miss.
			// Its ack or delivery may still arrive, so start afresh.
			ctl.close()
			return
		}
		r.mu.Lock()
		r.res.Control.Max = max(r.res.Control.Max, d)
		if err == nil {
			r.res.Control.RoundTrips++
			r.latency = append(r.latency, d)
		} else {
			r.res.Control.Misses++
		}
		r.mu.Unlock()
		if err != nil {
			r.fail(fmt.Sprintf("control round trip missed after %v (bound %v): %v", d.Round(time.Millisecond), r.cfg.ControlTimeout, err), false)
			ctl.close()
		}
	}
}

// watchBroker polls BrokerAlive; a dead broker ends the run.
func (r *runner) watchBroker(ctx context.Context) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := r.cfg.BrokerAlive(); err != nil {
			r.fail("broker died: "+err.Error(), true)
			return
		}
	}
}

func (r *runner) progress(ctx context.Context) {
	tick := time.NewTicker(r.cfg.ProgressInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		r.mu.Lock()
		res := r.res
		r.mu.Unlock()
		fmt.Fprintf(r.cfg.Progress, "netfuzz %v: %d connections, %d packets, %s sent; control %d round trips, %d missed, max %v; %d failures\n",
			time.Since(r.start).Round(time.Second), res.Connections, res.Packets, humanize.IBytes(uint64(res.BytesSent)),
			res.Control.RoundTrips, res.Control.Misses, res.Control.Max.Round(time.Millisecond), len(res.Failures))
	}
}

// cleanup clears the pools: every pool client id connects with clean
// session 1 (which ends its session), and every pool topic gets an empty
// retained message (which deletes the retained one).
func cleanup(ctx context.Context, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, 3*timeout)
	defer cancel()
	var errs []error
	for i := range clientIDPool {
		var tail []byte
		if i == 0 {
			for _, t := range topicPool {
				tail = (&wire.Publish{Retain: true, Topic: []byte(t)}).Append(tail)
			}
		}
		if err := connectClean(ctx, addr, poolClientID(i), tail); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// connectClean connects as id with a clean session, sends tail, and
// disconnects once a PINGRESP shows the broker handled it.
func connectClean(ctx context.Context, addr, id string, tail []byte) error {
	d := net.Dialer{}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	out := (&wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true, ClientID: id}).Append(nil)
	out = append(append(out, tail...), 0xc0, 0x00) // PINGREQ
	if _, err := nc.Write(out); err != nil {
		return fmt.Errorf("clean up %s: %w", id, err)
	}
	rd := wire.NewReader(nc, 0)
	defer rd.Release()
	for {
		fh, _, err := rd.ReadPacket()
		if err != nil {
			return fmt.Errorf("clean up %s: %w", id, err)
		}
		if fh.Type == wire.PINGRESP {
			_, err := nc.Write([]byte{0xe0, 0x00})
			return err
		}
	}
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}
