package shard

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
	case m.Shards != n:
		if err := b.reshard(m.Shards, n); err != nil {
			return fmt.Errorf("re-distribute state from %d to %d shards: %w", m.Shards, n, err)
		}
	}
	for i, s := range b.shards {
		p, err := openPersister(shardDir(dir, n, i), b.walOptions(), b.cfg.CompactBytes)
		if err != nil {
			return err
		}
		st, err := p.load()
		if err != nil {
			p.close()
			return err
		}
		s.p = p
		s.restore(st)
	}
	rl, err := openRetainLog(filepath.Join(dir, "retained"), b.walOptions(), b.cfg.CompactBytes)
	if err != nil {
		return err
	}
	retained, err := rl.load()
	if err != nil {
		rl.close()
		return err
	}
	for topic, msg := range retained {
		b.retained.Set(topic, msg)
	}
	b.retainLog = rl
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
	for i := 0; i < from; i++ {
		p, err := openPersister(shardDir(dir, from, i), opts, 0)
		if err != nil {
			return err
		}
		st, err := p.load()
		p.close()
		if err != nil {
			return err
		}
		for id, sess := range st.sessions {
			all[id] = sess
		}
		seq = max(seq, st.seq)
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
		err = p.snapshot(g)
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
