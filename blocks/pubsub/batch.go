package pubsub

// Publishes to one partition that arrive while an earlier one is being
// stored go together in the partition's next turn: one store write for the
// lot, so a partition's throughput grows with its load instead of being
// one commit per message.

import (
	"context"
	"sync"
)

// Bounds of one batch: a turn stores at most this many messages, of at
// most this many bytes of payload together.
const (
	maxBatchMessages = 256
	maxBatchBytes    = 4 << 20
)

// partitionKey names one partition of one topic.
type partitionKey struct {
	topic     string
	partition int
}

// publishQueue is the publishes waiting for one partition.
type publishQueue struct {
	sending bool       // a batch of this partition is being stored
	waiting []*pending // publishes for the next batch, in arrival order
	bytes   int        // payload bytes of waiting
}

// pending is one publish waiting for its batch to be stored.
type pending struct {
	msg  message
	err  error
	done chan struct{}
}

// batcher groups the publishes of each partition.
type batcher struct {
	mu     sync.Mutex
	queues map[partitionKey]*publishQueue
}

// publishOne stores m in partition of topic, together with the other
// publishes that wait for the same partition, and returns once it is
// stored (or failed with its batch).
func (s *Service) publishOne(ctx context.Context, topic string, partition int, m message) error {
	b := &s.batches
	k := partitionKey{topic, partition}
	p := &pending{msg: m, done: make(chan struct{})}
	b.mu.Lock()
	if b.queues == nil {
		b.queues = map[partitionKey]*publishQueue{}
	}
	q := b.queues[k]
	if q == nil {
		q = &publishQueue{}
		b.queues[k] = q
	}
	q.waiting = append(q.waiting, p)
	q.bytes += len(m.Data)
	lead := !q.sending
	q.sending = true
	b.mu.Unlock()
	if lead {
		s.sendBatches(ctx, k, q)
	}
	<-p.done
	return p.err
}

// sendBatches stores the waiting publishes of one partition, batch after
// batch, until none wait; the caller's own publish is in the first batch.
// It hands the rest to a goroutine once its caller's publish is stored, so
// no publisher waits for more than its own batch and the one before it.
func (s *Service) sendBatches(ctx context.Context, k partitionKey, q *publishQueue) {
	b := &s.batches
	for first := true; ; first = false {
		b.mu.Lock()
		if len(q.waiting) == 0 {
			q.sending = false
			delete(b.queues, k)
			b.mu.Unlock()
			return
		}
		if !first {
			// The caller's publish is stored: let it return, and keep
			// the partition's batches going on another goroutine.
			b.mu.Unlock()
			go s.sendBatches(context.WithoutCancel(ctx), k, q)
			return
		}
		batch, bytes := q.waiting, 0
		n := 0
		for n < len(batch) && n < maxBatchMessages && (n == 0 || bytes+len(batch[n].msg.Data) <= maxBatchBytes) {
			bytes += len(batch[n].msg.Data)
			n++
		}
		batch = batch[:n:n]
		q.waiting = q.waiting[n:]
		q.bytes -= bytes
		b.mu.Unlock()

		msgs := make([]message, len(batch))
		for i, p := range batch {
			msgs[i] = p.msg
		}
		err := s.publish(ctx, k.topic, k.partition, msgs)
		for _, p := range batch {
			p.err = err
			close(p.done)
		}
	}
}
