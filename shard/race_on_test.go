//go:build race

package shard

// raceEnabled lets long tests scale down under the race detector's 5-10x
// slowdown.
const raceEnabled = true
