// Package pubsub is Granary's publish/subscribe building block, serving
// Dapr's pub/sub API (POST /v1.0/publish/{pubsub}/{topic} and the bulk
// variant) on top of virtual actors instead of a message broker.
//
// # Topics and partitions
//
// A topic of the pub/sub component named N is a fixed set of partition
// actors of the native actor type "granary.pubsub.N" (Config.Partitions of
// them, 8 by default), with actor IDs "<partition>.<topic>", the topic
// percent-escaped where actor names forbid a character. A publish picks the
// partition by xxhash64 of metadata.partitionKey, or of the CloudEvent id
// when there is none, so messages without a key spread over the partitions.
//
// A partition actor keeps, in its actor state (written through Self.Transact,
// so every write is fenced by the claim of its shard):
//
//	next           the sequence number the next message gets
//	head           the lowest sequence number still stored
//	cursors        per subscribing app ID: the next sequence to deliver and
//	               the failed attempts of that message
//	m/<20 digits>  one message, keyed by its zero-padded sequence number
//
// A publish is acknowledged only once its message is stored. Messages are
// trimmed once every subscriber's cursor has passed them.
//
// # Subscriptions
//
// Apps declare subscriptions through GET /dapr/subscribe (SyncApp reads it
// and stores the app's subscriptions under an indexed key, so partition
// actors on every silo see them) or declaratively (Config.Subscriptions,
// with scopes). Every silo rescans the stored subscriptions every
// Config.RefreshInterval; a SyncApp on this silo is seen at once. Routing
// rules are CEL expressions over the CloudEvent (variable "event"),
// compiled once per subscription with google/cel-go (see match.go).
//
// A subscriber is an app ID, not an app instance: each message is delivered
// once per subscribing app ID (through blocks.Apps, which picks an instance),
// as with consumer groups. A subscriber's cursor starts at the partition's
// next sequence number when the partition first sees the subscription, so
// messages published before that are not delivered to it. When an app stops
// subscribing (or ForgetApp is called), its cursors are dropped and what is
// published meanwhile is not kept for it.
//
// # Delivery
//
// Each partition activation runs one delivery goroutine per subscriber and
// one that persists cursors and trims, all outside turns, so publishes are
// not held up by deliveries; the runtime's Deactivate stops them. While any
// message of the partition awaits delivery, retry or trimming, a durable
// reminder ("recover", every Config.RecoveryPeriod) is registered on the
// partition actor, so that after a crash the partition is activated again on
// whichever silo owns it and resumes from the persisted cursors. The reminder
// is deleted once everything is delivered and trimmed.
//
// The guarantees:
//
//   - At least once: an acknowledged publish is delivered to every app ID
//     subscribed when it was stored, unless it expires (metadata.ttlInSeconds),
//     the app drops it, or it exhausts its retries (it then goes to the
//     subscription's dead-letter topic, if any).
//   - In order per partition per subscriber: a message waiting for a retry
//     holds back the later messages of its partition for that subscriber.
//     Messages with the same partitionKey share a partition, so they arrive in
//     publish order; others carry no order between them.
//   - A crash can duplicate: the deliveries acknowledged since the cursors were
//     last persisted (cursors are written in batches, normally within a store
//     write of the acknowledgement), and a delivery in flight when the
//     activation ended. A crash during a retry backoff shortens that backoff:
//     the retry count survives, and the resumed partition retries at once.
//
// A delivery is a POST of the CloudEvent (Content-Type
// application/cloudevents+json; for a rawPayload subscription the payload
// itself, with its content type) to the subscription's route, through
// blocks.Apps, bounded by Config.DeliveryTimeout. A 2xx answer with an empty
// body, or {"status":"SUCCESS"}, acknowledges; {"status":"DROP"} drops (logged
// at warn); {"status":"RETRY"}, any other status, a non-2xx answer (404
// included: Dapr drops on 404), a body that is not JSON (Dapr accepts it), a
// failed call and a timeout retry.
//
// Retries back off by Config.RetrySchedule (1s, 2s, 4s, 8s, 16s by default)
// on the service's clock; their durability comes from the recover reminder,
// which stays registered throughout.
package pubsub
