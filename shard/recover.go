package shard

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/cespare/xxhash/v2"

	"iotd/wal"
)

// manifestHash names how client ids map to shards; a data directory written
// with another mapping cannot be read.
const manifestHash = "xxhash64-mod"

// Layout of the data directory:
//
//	MANIFEST.json          shard count and hash (the commit point of a re-shard)
//	shards-N/<i>/wal/      shard i's log when there are N shards
//	shards-N/<i>/snapshot  shard i's snapshot
//	retained/wal/, retained/snapshot
func shardsDir(dataDir string, shards int) string {
	return filepath.Join(dataDir, "shards-"+strconv.Itoa(shards))
}

func shardDir(dataDir string, shards, i int) string {
	return filepath.Join(shardsDir(dataDir, shards), strconv.Itoa(i))
}

func (b *Broker) walOptions() wal.Options {
	return wal.Options{NoSync: b.cfg.FsyncInterval > 0, SegmentSize: b.cfg.SegmentBytes, Logger: b.cfg.Logger, Fault: b.cfg.walFault}
}

// openStorage opens (or creates) the data directory, re-distributes state
// written with another shard count, and loads every shard's sessions and the
// retained messages. It runs before any shard goroutine starts.
func (b *Broker) openStorage() error {
	dir := b.cfg.DataDir
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	n := len(b.shards)
	m, err := wal.ReadManifest(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		m = wal.Manifest{Version: wal.ManifestVersion, Shards: n, Hash: manifestHash}
		if err := wal.WriteManifest(dir, m); err != nil {
			return err
		}
	case err != nil:
		return err
	case m.Hash != manifestHash:
		return fmt.Errorf("%s: shard hash %q is not %q: this data directory was written by an incompatible version", filepath.Join(dir, wal.ManifestFile), m.Hash, manifestHash)
	}
	// A re-shard needs the retained log first: its origin marks decide
	// which held QoS 2 messages it still has to apply there.
	if m.Shards != n {
		if err := b.openRetained(); err != nil {
			return err
		}
		if err := b.reshard(m.Shards, n); err != nil {
			return fmt.Errorf("re-distribute state from %d to %d shards: %w", m.Shards, n, err)
		}
	}
	states := make([]*durableState, n)
	for i, s := range b.shards {
		p, err := openPersister(shardDir(dir, n, i), b.walOptions(), b.cfg.CompactBytes)
		if err != nil {
			return err
		}
		s.p = p
		if states[i], err = p.load(); err != nil {
			return err
		}
	}
	if b.retainLog == nil {
		if err := b.openRetained(); err != nil {
			return err
		}
	}
	for i, s := range b.shards {
		// Sequence numbers never go back, even where a log lost its tail
		// (--fsync interval and a power loss) while a mark of it survived
		// elsewhere: a reused number would look delivered already.
		s.p.seq = max(s.p.seq, b.retainMarks.seqOf(i))
		for _, st := range states {
			s.p.seq = max(s.p.seq, st.marks.seqOf(i))
		}
		s.restore(states[i])
		s.restoreHeld(states[i])
	}
	for topic, msg := range b.retainLog.current {
		b.retained.Set(topic, msg)
	}
	return nil
}

// openRetained opens and loads the retained log.
func (b *Broker) openRetained() error {
	rl, err := openRetainLog(filepath.Join(b.cfg.DataDir, "retained"), b.walOptions(), b.cfg.CompactBytes)
	if err != nil {
		return err
	}
	b.retainLog = rl
	if _, err := rl.load(); err != nil {
		return err
	}
	b.retainMarks = slices.Clone(rl.marks)
	return nil
}

// restore installs recovered sessions, all offline until their clients return.
func (s *Shard) restore(st *durableState) {
	for id, sess := range st.sessions {
		s.sessions[id] = sess
		s.stats.sessions.Add(1)
		s.stats.queued.Add(int64(sess.queue.len()))
		s.stats.inflight.Add(int64(len(sess.inflight)))
		for filter, qos := range sess.subs {
			s.restoreSub(sess, filter, qos)
		}
	}
}

// reshard moves every persistent session from the layout with `from` shards
// to one with `to`, hashing client ids again. The new layout is written in
// full, then the manifest switches to it; a crash before that leaves the old
// layout in charge and the next start does the work again.
func (b *Broker) reshard(from, to int) error {
	dir := b.cfg.DataDir
	opts := b.walOptions()
	all := make(map[string]*session)
	var seq uint64
	states := make([]*durableState, from)
	for i := range states {
		p, err := openPersister(shardDir(dir, from, i), opts, 0)
		if err != nil {
			return err
		}
		st, err := p.load()
		p.close()
		if err != nil {
			return err
		}
		states[i] = st
		for id, sess := range st.sessions {
			all[id] = sess
		}
		seq = max(seq, st.seq)
	}
	// Origins name the old shards, so held QoS 2 messages are routed here,
	// before the new layout starts numbering afresh.
	if err := b.routeHeldForReshard(states); err != nil {
		return err
	}
	for _, st := range states {
		for _, s := range st.marks {
			seq = max(seq, s)
		}
	}
	for _, s := range b.retainMarks {
		seq = max(seq, s)
	}
	target := shardsDir(dir, to)
	if err := os.RemoveAll(target); err != nil {
		return err
	}
	groups := make([]map[string]*session, to)
	for i := range groups {
		groups[i] = make(map[string]*session)
	}
	for id, sess := range all {
		groups[xxhash.Sum64String(id)%uint64(to)][id] = sess
	}
	for i, g := range groups {
		p, err := openPersister(shardDir(dir, to, i), opts, 0)
		if err != nil {
			return err
		}
		p.seq = seq
		err = p.snapshot(g, nil, nil)
		if cerr := p.close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	if err := wal.WriteManifest(dir, wal.Manifest{Version: wal.ManifestVersion, Shards: to, Hash: manifestHash}); err != nil {
		return err
	}
	b.cfg.Logger.Warn("re-distributed persistent sessions to a new shard count", "from", from, "to", to, "sessions", len(all))
	return os.RemoveAll(shardsDir(dir, from))
}

// routeHeldForReshard delivers the held QoS 2 messages that had not reached
// every log when the old layout stopped: to each session of an old shard
// whose log lacks the message and that is subscribed to its topic, and to
// the retained log if it lacks it. The retained updates are committed before
// the new layout is written, so a crash in between repeats only idempotent
// work.
func (b *Broker) routeHeldForReshard(states []*durableState) error {
	rl := b.retainLog
	applied := 0
	for from, st := range states {
		seqs := slices.Sorted(maps.Keys(st.unrouted))
		for _, seq := range seqs {
			msg := st.unrouted[seq]
			o := origin{shard: from, seq: seq}
			for _, target := range states {
				if target.marks.has(o) {
					continue
				}
				for _, sess := range target.sessions {
					if qos, ok := grantedQoS(sess.subs, msg.Topic); ok && qos > 0 {
						sess.queue.push(pending{msg: msg, qos: min(msg.QoS, qos)})
					}
				}
			}
			if msg.Retain && !b.retainMarks.has(o) {
				op := retainOp{topic: msg.Topic, msg: msg, origin: o}
				if len(msg.Payload) == 0 {
					op.msg = nil
				}
				rl.apply(op)
				applied++
			}
		}
	}
	if applied == 0 {
		return nil
	}
	if err := rl.commit(); err != nil {
		return err
	}
	b.retainMarks = slices.Clone(rl.marks)
	return nil
}
