package check

import (
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/anishathalye/porcupine"
	"github.com/granaryhq/granary/chaos/history"
)

// regState is a register's value; set is false before the first write.
type regState struct {
	set bool
	v   int64
}

func (s regState) String() string {
	if !s.set {
		return "∅"
	}
	return fmt.Sprint(s.v)
}

// regInput is one register operation as the model sees it.
type regInput struct {
	kind          history.Kind
	value, expect int64
	// indeterminate: an Info operation, which may not have happened.
	indeterminate bool
}

// registerModel is a single register with read, write and compare-and-set.
// Operations that may not have happened are given an open end (their
// return after every other operation of the key), so the search can always
// place them last, where their effect constrains nothing; this is why an
// indeterminate compare-and-set may leave the register unchanged when its
// expectation does not hold instead of being illegal.
var registerModel = porcupine.Model{
	Init: func() any { return regState{} },
	Step: func(state, input, output any) (bool, any) {
		s, in := state.(regState), input.(regInput)
		switch in.kind {
		case history.KindRead:
			return output.(regState) == s, s
		case history.KindWrite:
			return true, regState{set: true, v: in.value}
		case history.KindCAS:
			matches := s.set && s.v == in.expect
			if in.indeterminate {
				if matches {
					return true, regState{set: true, v: in.value}
				}
				return true, s
			}
			if !matches {
				return false, s
			}
			return true, regState{set: true, v: in.value}
		}
		return false, s
	},
	Hash: func(state any) uint64 {
		s := state.(regState)
		if !s.set {
			return 0
		}
		return uint64(s.v)*0x9e3779b97f4a7c15 + 1
	},
	DescribeOperation: func(input, output any) string {
		in := input.(regInput)
		mark := ""
		if in.indeterminate {
			mark = " ?"
		}
		switch in.kind {
		case history.KindRead:
			return fmt.Sprintf("read() → %v", output)
		case history.KindWrite:
			return fmt.Sprintf("write(%d)%s", in.value, mark)
		case history.KindCAS:
			return fmt.Sprintf("cas(%d→%d)%s", in.expect, in.value, mark)
		}
		return string(in.kind)
	},
	DescribeState: func(state any) string { return state.(regState).String() },
}

// registerHistories turns the register operations of ops into one
// porcupine history per key, tallying what it keeps and drops in counts.
func registerHistories(ops []history.Op, counts map[string]int) map[string][]porcupine.Operation {
	byKey := map[string][]porcupine.Operation{}
	clients := map[string]map[int]int{} // key → process → client id
	nextClient := map[string]int{}
	client := func(key string, process int, fresh bool) int {
		if clients[key] == nil {
			clients[key] = map[int]int{}
		}
		if id, ok := clients[key][process]; ok && !fresh {
			return id
		}
		id := nextClient[key]
		nextClient[key]++
		if !fresh {
			clients[key][process] = id
		}
		return id
	}
	const open = math.MaxInt64 // placeholder for an open end, fixed below
	for _, op := range ops {
		switch op.Kind {
		case history.KindRead, history.KindWrite, history.KindCAS:
		default:
			counts["ignored"]++
			continue
		}
		in := regInput{kind: op.Kind, value: op.Value, expect: op.Expect}
		var out regState
		ret := op.Complete
		switch op.Outcome {
		case history.Fail:
			counts["fail_dropped"]++
			continue
		case history.Info:
			if op.Kind == history.KindRead {
				counts["info_reads_dropped"]++
				continue
			}
			counts["info"]++
			in.indeterminate = true
			ret = open
		case history.OK:
			counts["ok"]++
			if op.Result != nil {
				out = regState{set: true, v: *op.Result}
			}
		default:
			counts["ignored"]++
			continue
		}
		// An indeterminate operation gets a client of its own: its process
		// went on with other operations while it was still open.
		id := client(op.Key, op.Process, op.Outcome == history.Info)
		byKey[op.Key] = append(byKey[op.Key], porcupine.Operation{
			ClientId: id, Input: in, Call: op.Invoke, Output: out, Return: ret, Metadata: op.Process,
		})
	}
	for key, hist := range byKey {
		var last int64
		for _, o := range hist {
			last = max(last, o.Call)
			if o.Return != open {
				last = max(last, o.Return)
			}
		}
		for i := range hist {
			if hist[i].Return == open {
				hist[i].Return = last + 1
			}
		}
		byKey[key] = hist
	}
	return byKey
}

// Register checks that the read, write and compare-and-set operations of
// each key are linearizable, with porcupine, one key at a time. Failed
// operations did not happen and are dropped; indeterminate writes and
// compare-and-sets may have happened, at any time after their invocation;
// indeterminate reads tell nothing and are dropped. Other kinds are ignored.
//
// Counts: keys, ok, info, fail_dropped, info_reads_dropped, ignored,
// keys_illegal, keys_unknown. An illegal key is a violation; a key whose
// search timed out (KeyTimeout) is a note and counts in keys_unknown, so a
// run with unknown keys is valid but not fully checked.
func Register(ops []history.Op, opts ...Option) Result {
	cfg := newConfig(opts)
	res := newResult("register")
	byKey := registerHistories(ops, res.Counts)
	res.Counts["keys"] = len(byKey)
	for _, key := range slices.Sorted(maps.Keys(byKey)) {
		hist := byKey[key]
		verdict, info := porcupine.CheckOperationsVerbose(registerModel, hist, cfg.keyTimeout)
		switch verdict {
		case porcupine.Illegal:
			res.Counts["keys_illegal"]++
			at, detail := describeIllegal(hist, info)
			res.violate("not linearizable", key, at, "%s", detail)
		case porcupine.Unknown:
			res.Counts["keys_unknown"]++
			res.note("linearizability unknown", key, 0, "search of %d operations timed out after %v", len(hist), cfg.keyTimeout)
		}
	}
	return res
}

// describeIllegal names the earliest operation that porcupine's longest
// partial linearization leaves out.
func describeIllegal(hist []porcupine.Operation, info porcupine.LinearizationInfo) (int64, string) {
	var longest []int
	for _, part := range info.PartialLinearizations() {
		for _, lin := range part {
			if len(lin) > len(longest) {
				longest = lin
			}
		}
	}
	in := make([]bool, len(hist))
	for _, id := range longest {
		if id >= 0 && id < len(hist) {
			in[id] = true
		}
	}
	first := -1
	for i, o := range hist {
		if !in[i] && (first < 0 || o.Call < hist[first].Call) {
			first = i
		}
	}
	if first < 0 {
		return 0, fmt.Sprintf("no linearization of %d operations", len(hist))
	}
	o := hist[first]
	return o.Call, fmt.Sprintf("no linearization of %d operations; the longest partial linearization holds %d; the earliest operation it leaves out is %s by process %v over [%d, %d]",
		len(hist), len(longest), registerModel.DescribeOperation(o.Input, o.Output), o.Metadata, o.Call, o.Return)
}

// RegisterVisualize checks key's register operations and writes porcupine's
// HTML visualization of the result to path: the linearization when there is
// one, the longest partial linearizations and where they fail otherwise.
func RegisterVisualize(ops []history.Op, key, path string, opts ...Option) error {
	cfg := newConfig(opts)
	hist := registerHistories(ops, map[string]int{})[key]
	if len(hist) == 0 {
		return fmt.Errorf("check: no register operations on key %q", key)
	}
	_, info := porcupine.CheckOperationsVerbose(registerModel, hist, cfg.keyTimeout)
	if err := porcupine.VisualizePath(registerModel, info, path); err != nil {
		return fmt.Errorf("check: visualize key %q: %w", key, err)
	}
	return nil
}
