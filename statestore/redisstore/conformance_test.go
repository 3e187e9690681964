package redisstore

import (
	"testing"

	"github.com/granaryhq/granary/internal/testutil/redistest"
	"github.com/granaryhq/granary/statestore"
	"github.com/granaryhq/granary/statestore/storetest"
)

// TestConformance runs the statestore conformance suite against the store,
// with and without command coalescing. Every store it opens has a key
// prefix of its own in the test database, so it starts empty.
func TestConformance(t *testing.T) {
	url := redistest.URL(t)
	modes(t, func(t *testing.T, opts Options) {
		storetest.Run(t, func(t *testing.T) statestore.Store {
			return openAt(t, url, opts)
		})
	})
}
