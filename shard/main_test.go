package shard

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test must leave no goroutine behind: readers, writers and shards all
// exit when their connection or the broker closes.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
