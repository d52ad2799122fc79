// Package topictree holds the broker-wide view of subscriptions and retained
// messages, built for many concurrent readers and lock-free reads.
//
// # What it stores
//
// Tree maps each topic filter to the shards that have subscriptions on it,
// with a count per shard. It does not know sessions: every shard keeps its
// own private map from filter to local subscribers. A publish is matched once
// here, on the publisher's shard, and yields one (filter, shard) pair per
// filter and subscribing shard; the publisher posts one delivery to each
// shard named. Retained keeps the last retained message per topic name and
// answers "which retained topics does this new subscription match".
//
// # Structure
//
// Both are tries with one node per topic level. A node holds atomic pointers:
//
//   - kids: a hash table of the literal next levels (see below);
//   - plus: the "+" next level (Tree only);
//   - subs: the shards subscribed to the filter ending here (Tree only);
//   - multi: the shards subscribed to "<this level>/#" (Tree only; a '#'
//     level can only be last, so it needs no node of its own);
//   - val: the retained message of the topic ending here (Retained only).
//
// kids is an open-addressing hash table with linear probing. A slot holds
// the cached hash of the child's name and an atomic pointer to an item: the
// child's name (inline when it is at most 15 bytes) and the child node itself,
// by value. Tables of up to 4 slots are searched by comparing names and fill
// completely (a level's first child is allocated together with its table);
// larger ones are probed by hash and stay at most 3/4 full. The
// hash is maphash with a per-process seed, so clients cannot choose level
// names that collide. A node with a million children therefore costs an
// insert of one slot store; growth copies the (hash, pointer) pairs into a
// table twice the size, which is amortised O(1) per insert and never touches
// the items.
//
// subs is an immutable list of shards plus a count per shard. The counts are
// touched only by writers; a change that adds or drops a shard publishes a
// new list, a change of count alone publishes nothing.
//
// # Who may call what
//
// Tree.Add and Tree.Remove, and Retained.Set and Retained.Delete, may be
// called from any goroutine (in iotd, from the shard goroutines). Each
// structure serializes its writers on one mutex of its own.
//
// Tree.Match, Tree.Filters, and Retained.Get, Match, Range and Len take no
// lock at all and may be called from any number of goroutines at any time,
// including while writers run. A reader sees each node's state either before
// or after a concurrent change, never a half-made one; a filter that is
// present for the whole duration of a Match is always found, and a filter
// that was never added is never reported. A filter added or removed during
// the call may or may not be reported.
//
// # Why reads need no lock
//
// Writers never modify anything a reader can reach except through single
// atomic stores, and everything a stored pointer leads to is complete before
// the store:
//
//   - A new child item is fully built, then stored into a slot. A new table
//     (growth, shrink, or purging tombstones) is fully built, then stored into
//     the node. A new subs list is built, then stored.
//   - Deleting a child stores a tombstone into its slot. In a published table
//     a slot never goes back to empty, so a probe that stops at an empty slot
//     cannot have skipped an item that was there all along; a reader that
//     still holds a replaced table finds in it every item that was present
//     when the table was replaced.
//   - Pruning first clears a node's subs (or value) and only then unlinks
//     the node. A reader still holding a pruned node finds nothing there.
//   - Counts are never read by readers, so they need no atomics.
//
// Memory is reclaimed by the garbage collector once no reader holds it, which
// is what makes this safe without epochs or hazard pointers.
//
// # Matching
//
// Matching follows MQTT 3.1.1 section 4.7: levels are split on '/', and an
// empty level is a level; '+' matches exactly one level; '#' matches its
// parent level and any number of levels below; a filter starting with '+' or
// '#' never matches a topic starting with '$' [MQTT-4.7.2-1]; names compare
// byte by byte, with no case folding or normalisation [MQTT-4.7.3-4]. Tree and
// Retained both assume their inputs are valid (wire.ValidTopicFilter and the
// topic-name checks run before).
package topictree
