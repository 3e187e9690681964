// Package placement is the Raft-replicated core of Granary's placement
// service: the state that every placement node holds alike (the cluster ID,
// the versioned member table, each node's gRPC address), the commands that
// change it, and Node, one Raft server running that state machine.
//
// Only membership changes go through the Raft log (heartbeats do not). A
// membership Batch is idempotent: applying it again changes nothing and
// leaves the version alone, so a leader that lost leadership while a batch
// was in flight, or its successor, can simply apply it again.
//
// # Data directory
//
// A node keeps raft.db (the Raft log and stable store, bbolt), snapshots/
// (the two latest FSM snapshots) and cluster-id (the ID of the cluster its
// data belongs to) under Config.DataDir. The first start needs the full
// peers list and bootstraps the cluster with it; later starts rejoin with
// the stored data and refuse a peers list or a cluster ID that differs from
// what is stored.
//
// # Cluster ID after losing the Raft data
//
// Silos fence the shards they own with claims that carry the cluster ID and
// the table version, and a claim never wins over a record of another
// cluster. If the placement nodes lose their Raft data and the cluster is
// bootstrapped again, pass the old ID with --cluster-id (a surviving
// cluster-id file holds it, and so does every fence record): without it the new
// cluster gets a new random ID, and every claim of the silos is refused as
// another cluster's. Table versions restart from zero in that case; a silo
// whose claim is refused by a newer record of its own cluster asks for
// JumpVersion, which moves the version past the one the fences have seen.
package placement
