package redisstore

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/granaryhq/granary/statestore"
)

// maxInFlight is how many round trips the coalescer has under way at once:
// single commands sent straight away and pipelines of queued ones.
const maxInFlight = 2

// maxBatch bounds the commands one pipeline carries.
const maxBatch = 256

// coalescer sends the store's single commands (reads and transactions) so
// that concurrent callers share round trips. A command that finds a
// round-trip slot free and nothing queued goes straight to Redis, so an idle
// store adds no delay. Otherwise it queues, and whoever holds a slot
// next sends everything queued as one pipeline. Under load this turns many
// small round trips, each a few system calls on both sides, into a few large
// ones.
type coalescer struct {
	client redis.UniversalClient

	mu    sync.Mutex
	queue []*queued
	// inFlight counts the slots taken: by commands sent straight away, by
	// flushers sending, and by tokens in slots waiting for a flusher.
	inFlight int
	idle     *sync.Cond // signalled when inFlight drops
	closed   bool
	slots    chan struct{} // a token hands a taken slot to a flusher
	flushers sync.WaitGroup
}

type queued struct {
	command
	result *redis.Cmd
	done   chan struct{}
}

func newCoalescer(client redis.UniversalClient) *coalescer {
	c := &coalescer{client: client, slots: make(chan struct{}, maxInFlight)}
	c.idle = sync.NewCond(&c.mu)
	c.flushers.Add(maxInFlight)
	for range maxInFlight {
		go c.flusher()
	}
	return c
}

// run sends cmd, alone or in a pipeline with others, and returns its result.
// When ctx ends before the result is in, run returns ctx's error and the
// command may still be executed.
func (c *coalescer) run(ctx context.Context, cmd command) *redis.Cmd {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return redis.NewCmdResult(nil, statestore.ErrClosed)
	}
	if c.inFlight < maxInFlight && len(c.queue) == 0 {
		c.inFlight++
		c.mu.Unlock()
		result := runOne(ctx, c.client, cmd)
		c.mu.Lock()
		c.releaseSlot()
		c.mu.Unlock()
		return result
	}
	q := &queued{command: cmd, done: make(chan struct{})}
	c.queue = append(c.queue, q)
	if c.inFlight < maxInFlight {
		c.inFlight++
		c.slots <- struct{}{} // never blocks: there are at most maxInFlight tokens
	}
	c.mu.Unlock()
	select {
	case <-q.done:
		return q.result
	case <-ctx.Done():
		return redis.NewCmdResult(nil, ctx.Err())
	}
}

// releaseSlot gives up a slot, or hands it to a flusher when commands wait.
// Called with mu held.
func (c *coalescer) releaseSlot() {
	if len(c.queue) > 0 {
		c.slots <- struct{}{}
		return
	}
	c.inFlight--
	c.idle.Broadcast()
}

// close stops taking commands, waits until everything queued or under way
// is done, and stops the flushers.
func (c *coalescer) close() {
	c.mu.Lock()
	c.closed = true
	for c.inFlight > 0 || len(c.queue) > 0 {
		c.idle.Wait()
	}
	c.mu.Unlock()
	// No slot is taken and none can be: nothing sends on slots any more.
	close(c.slots)
	c.flushers.Wait()
}

// flusher takes a slot handed to it and sends batches until the queue is
// empty.
func (c *coalescer) flusher() {
	defer c.flushers.Done()
	for range c.slots {
		for {
			c.mu.Lock()
			if len(c.queue) == 0 {
				c.inFlight--
				c.idle.Broadcast()
				c.mu.Unlock()
				break
			}
			n := min(len(c.queue), maxBatch)
			batch := make([]*queued, n)
			copy(batch, c.queue)
			rest := copy(c.queue, c.queue[n:])
			clear(c.queue[rest:])
			c.queue = c.queue[:rest]
			c.mu.Unlock()
			c.send(batch)
		}
	}
}

// send runs batch as one pipeline and hands each caller its result.
func (c *coalescer) send(batch []*queued) {
	// The batch belongs to many callers; none of their contexts may cut it
	// short. The client's read and write timeouts bound it.
	ctx := context.Background()
	cmds := make([]command, len(batch))
	for i, q := range batch {
		cmds[i] = q.command
	}
	results := runAll(ctx, c.client, cmds)
	for i, q := range batch {
		q.result = results[i]
		close(q.done)
	}
}
