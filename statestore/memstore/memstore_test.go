package memstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/granaryhq/granary/internal/clock"
	"github.com/granaryhq/granary/statestore"
	"github.com/granaryhq/granary/statestore/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) statestore.Store {
		s := New()
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func TestTTLFollowsTheClock(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	fake := clock.NewFake(start)
	s := New(WithClock(fake))
	ctx := context.Background()
	txn := statestore.Txn{Ops: []statestore.Op{
		{Kind: statestore.Put, Key: "short", Value: []byte("s"), TTL: time.Minute, Index: "i"},
		{Kind: statestore.Put, Key: "stays", Value: []byte("v"), Index: "i"},
	}}
	if err := s.Transact(ctx, txn); err != nil {
		t.Fatal(err)
	}
	item, err := s.Get(ctx, "short")
	if err != nil {
		t.Fatal(err)
	}
	if want := start.Add(time.Minute); !item.Expires.Equal(want) {
		t.Errorf("Expires = %v, want %v", item.Expires, want)
	}

	fake.Advance(time.Minute - time.Nanosecond)
	if _, err := s.Get(ctx, "short"); err != nil {
		t.Fatalf("Get a nanosecond before expiry: %v", err)
	}
	fake.Advance(time.Nanosecond)
	if _, err := s.Get(ctx, "short"); !errors.Is(err, statestore.ErrNotFound) {
		t.Fatalf("Get at expiry: %v, want ErrNotFound", err)
	}
	items, err := s.Scan(ctx, "i", "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].Key != "stays" {
		t.Errorf("Scan after expiry = %+v, want only stays", items)
	}
}

func TestCancelledContext(t *testing.T) {
	s := New()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Get(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a cancelled context: %v", err)
	}
	if err := s.Transact(ctx, statestore.Txn{Ops: []statestore.Op{{Kind: statestore.Put, Key: "k"}}}); !errors.Is(err, context.Canceled) {
		t.Errorf("Transact with a cancelled context: %v", err)
	}
}
