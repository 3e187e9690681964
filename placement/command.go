package placement

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/granaryhq/granary/placement/table"
)

// Command is one change to the placement state, committed through the Raft
// log. The commands are SetClusterID, Batch, JumpVersion and SetNodeAddr.
type Command interface {
	// op names the command in its encoding.
	op() string
}

// SetClusterID records the cluster's ID. It sets the ID when none is set
// and is a no-op when the same ID is set; a different ID is an error.
type SetClusterID struct {
	ID string `json:"id"`
}

// Batch is one membership change: Removes are applied first, then Joins.
// Applying the same batch twice changes nothing the second time, so a batch
// whose outcome is unknown (leadership was lost while it was in flight) can
// simply be applied again.
type Batch struct {
	// Joins are upserted: a member identical to the stored one is left
	// alone, any other replaces the member with its ID.
	Joins []table.Member `json:"joins,omitempty"`
	// Removes name processes: a member is removed only while its stored
	// incarnation is the one named.
	Removes []MemberRef `json:"removes,omitempty"`
}

// MemberRef names one process of one silo.
type MemberRef struct {
	ID          string `json:"id"`
	Incarnation string `json:"incarnation"`
}

// JumpVersion raises the table version to at least Past+1. A silo asks for
// it when its claim on a shard is refused by a record of its own cluster at
// version Past or later: the placement data was lost and versions restarted
// below what the fences have seen. Repeating it is harmless.
type JumpVersion struct {
	Past uint64 `json:"past"`
}

// SetNodeAddr records the gRPC address of a placement node, so that any node
// can tell a silo where the leader answers.
type SetNodeAddr struct {
	RaftID   string `json:"raftId"`
	GRPCAddr string `json:"grpcAddr"`
}

func (SetClusterID) op() string { return "setClusterId" }
func (Batch) op() string        { return "batch" }
func (JumpVersion) op() string  { return "jumpVersion" }
func (SetNodeAddr) op() string  { return "setNodeAddr" }

// commandVersion is the version of the envelope and of every command body.
// A change in meaning of any command needs a new version; a node refuses
// versions it does not know rather than guessing.
const commandVersion = 1

// envelope is the encoding of a command: {"v":1,"op":"batch","body":{...}}.
type envelope struct {
	V    int             `json:"v"`
	Op   string          `json:"op"`
	Body json.RawMessage `json:"body"`
}

// EncodeCommand encodes cmd for the Raft log.
func EncodeCommand(cmd Command) ([]byte, error) {
	if cmd == nil {
		return nil, errors.New("encode command: nil command")
	}
	body, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("encode %s command: %w", cmd.op(), err)
	}
	out, err := json.Marshal(envelope{V: commandVersion, Op: cmd.op(), Body: body})
	if err != nil {
		return nil, fmt.Errorf("encode %s command: %w", cmd.op(), err)
	}
	return out, nil
}

// DecodeCommand decodes a command encoded by EncodeCommand. Unknown
// versions, operations and fields are errors.
func DecodeCommand(data []byte) (Command, error) {
	var env envelope
	if err := decodeStrict(data, &env); err != nil {
		return nil, fmt.Errorf("decode command envelope: %w", err)
	}
	if env.V != commandVersion {
		return nil, fmt.Errorf("decode command: version %d is not known (this node knows version %d)", env.V, commandVersion)
	}
	var cmd Command
	switch env.Op {
	case SetClusterID{}.op():
		var c SetClusterID
		if err := decodeBody(env, &c); err != nil {
			return nil, err
		}
		cmd = c
	case Batch{}.op():
		var c Batch
		if err := decodeBody(env, &c); err != nil {
			return nil, err
		}
		cmd = c
	case JumpVersion{}.op():
		var c JumpVersion
		if err := decodeBody(env, &c); err != nil {
			return nil, err
		}
		cmd = c
	case SetNodeAddr{}.op():
		var c SetNodeAddr
		if err := decodeBody(env, &c); err != nil {
			return nil, err
		}
		cmd = c
	default:
		return nil, fmt.Errorf("decode command: unknown operation %q", env.Op)
	}
	return cmd, nil
}

func decodeBody(env envelope, into any) error {
	if len(env.Body) == 0 {
		return fmt.Errorf("decode %s command: no body", env.Op)
	}
	if err := decodeStrict(env.Body, into); err != nil {
		return fmt.Errorf("decode %s command: %w", env.Op, err)
	}
	return nil
}

// decodeStrict decodes exactly one JSON value with no unknown fields.
func decodeStrict(data []byte, into any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return err
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}
