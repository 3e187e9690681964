package actor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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
func newChainID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails: crypto/rand aborts the process instead
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}
