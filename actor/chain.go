package actor

import (
	"context"

	"github.com/granaryhq/granary/internal/uuid"
)

// A call chain ID names one chain of nested calls: a call from outside and
// every call made from within its turns. A call carrying the ID of the chain
// that holds an actor's turn enters that turn (when the type is reentrant)
// instead of queueing behind it, so the IDs must be unguessable: anyone who
// can compute the ID of a running turn can join it. They are random version
// 4 UUIDs (122 random bits), the form Dapr's runtime uses too.

type chainKey struct{}

// WithCallChain returns ctx carrying the call chain ID of a request, so that a
// nested call made from within a turn is recognised as part of that turn.
func WithCallChain(ctx context.Context, chain string) context.Context {
	if chain == "" {
		return ctx
	}
	return context.WithValue(ctx, chainKey{}, chain)
}

// CallChain returns the call chain ID carried by ctx, or "".
func CallChain(ctx context.Context) string {
	s, _ := ctx.Value(chainKey{}).(string)
	return s
}

// newChainID returns a fresh random call chain ID.
func newChainID() string { return uuid.New() }
