// Package loadtest is iotd's bundled load generator: `iotd loadtest` and a
// library for scripts and tests (Run, Config, Result).
//
// It speaks plain MQTT 3.1.1 over TCP or TLS, written directly on the wire
// package rather than a client library, so that it is not the bottleneck:
// each connection has one reader goroutine and a bufio.Writer shared under
// a mutex, flushed only when its writer is about to wait, so many packets go
// out per write call. It works against any 3.1.1 broker.
//
// # What is measured
//
// Every payload starts with a header (HeaderSize bytes: run tag, publisher
// index, sequence number, send time) padded to the payload size. Each
// subscriber accounts every publisher -> subscriber stream separately:
// deliveries, distinct sequence numbers, duplicates and out-of-order
// arrivals. After publishing stops and a drain period passes, lost = the
// messages the publisher sent minus the distinct ones that arrived, so a
// broker that drops messages cannot look fast. msg/s counts deliveries from
// the first publish to the last delivery. Latency is publish to delivery;
// ack latency, publish to the broker's PUBACK (QoS 1) or PUBREC (QoS 2),
// which with a persistent broker includes making the message durable.
//
// # Flow control
//
// QoS 1/2 publishers keep up to Config.Inflight messages unacknowledged
// (windowed, not stop-and-wait). End to end, a publisher may run at most
// Config.E2EWindow/k messages ahead of the highest sequence number received
// by the slowest subscriber it feeds, where k is the number of publishers
// feeding that subscriber; so a subscriber never has more than E2EWindow
// messages queued for it in the broker and the rate measured is the rate of
// delivery, not of filling queues.
//
// # Scenarios
//
// See the Scenario constants: fanin, fanout, pairs, latency, connect,
// retained and offline. Offline can be split around a broker restart
// (Config.Phase: fill, then drain with the same RunID), to measure recovery
// with a backlog. With PersistentSessions, the subscribers of the message
// scenarios use clean session 0, so a persistent broker logs their
// deliveries. Every run subscribes, and waits for each SUBACK,
// before it publishes; topics live under Config.TopicPrefix (unique per run
// by default); retained messages and persistent sessions the run creates
// are removed at the end.
package loadtest
