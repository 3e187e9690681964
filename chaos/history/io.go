package history

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// Record is one line of a history: an Op, Turn, Tick, Fault, Lease or
// StoreRecord.
type Record interface {
	recordType() string
}

// The "type" of each record on its line.
const (
	typeOp    = "op"
	typeTurn  = "turn"
	typeTick  = "tick"
	typeFault = "fault"
	typeLease = "lease"
	typeStore = "store"
)

func (Op) recordType() string          { return typeOp }
func (Turn) recordType() string        { return typeTurn }
func (Tick) recordType() string        { return typeTick }
func (Fault) recordType() string       { return typeFault }
func (Lease) recordType() string       { return typeLease }
func (StoreRecord) recordType() string { return typeStore }

// Run is a whole history, each kind of record in the order it was read.
type Run struct {
	Ops    []Op
	Turns  []Turn
	Ticks  []Tick
	Faults []Fault
	Leases []Lease
	Writes []StoreRecord
}

// Add appends rec to the slice of its kind.
func (r *Run) Add(rec Record) {
	switch v := rec.(type) {
	case Op:
		r.Ops = append(r.Ops, v)
	case Turn:
		r.Turns = append(r.Turns, v)
	case Tick:
		r.Ticks = append(r.Ticks, v)
	case Fault:
		r.Faults = append(r.Faults, v)
	case Lease:
		r.Leases = append(r.Leases, v)
	case StoreRecord:
		r.Writes = append(r.Writes, v)
	}
}

// typeField is the discriminator every line starts with.
type typeField struct {
	Type string `json:"type"`
}

// normalize checks rec and returns its normalized form.
func normalize(rec Record) (Record, error) {
	switch v := rec.(type) {
	case Op:
		return v.Normalize()
	case Turn:
		return v.Normalize()
	case Tick:
		return v.Normalize()
	case Fault:
		return v.Normalize()
	case Lease:
		return v.Normalize()
	case StoreRecord:
		return v.Normalize()
	case nil:
		return nil, errors.New("nil record")
	}
	return nil, fmt.Errorf("unknown record %T", rec)
}

// Marshal returns rec's line, without the newline, after checking it.
func Marshal(rec Record) ([]byte, error) {
	rec, err := normalize(rec)
	if err != nil {
		return nil, err
	}
	t := typeField{rec.recordType()}
	switch v := rec.(type) {
	case Op:
		return json.Marshal(struct {
			typeField
			Op
		}{t, v})
	case Turn:
		return json.Marshal(struct {
			typeField
			Turn
		}{t, v})
	case Tick:
		return json.Marshal(struct {
			typeField
			Tick
		}{t, v})
	case Fault:
		return json.Marshal(struct {
			typeField
			Fault
		}{t, v})
	case Lease:
		return json.Marshal(struct {
			typeField
			Lease
		}{t, v})
	case StoreRecord:
		return json.Marshal(struct {
			typeField
			StoreRecord
		}{t, v})
	}
	panic("unreachable")
}

// ParseLine decodes one line: a JSON object whose "type" names the record.
// Unknown types and fields, trailing data and records that fail their
// checks are errors.
func ParseLine(line []byte) (Record, error) {
	var head typeField
	if err := json.Unmarshal(line, &head); err != nil {
		return nil, fmt.Errorf("not a record: %w", err)
	}
	var rec Record
	var err error
	switch head.Type {
	case typeOp:
		var w struct {
			typeField
			Op
		}
		err = decodeStrict(line, &w)
		rec = w.Op
	case typeTurn:
		var w struct {
			typeField
			Turn
		}
		err = decodeStrict(line, &w)
		rec = w.Turn
	case typeTick:
		var w struct {
			typeField
			Tick
		}
		err = decodeStrict(line, &w)
		rec = w.Tick
	case typeFault:
		var w struct {
			typeField
			Fault
		}
		err = decodeStrict(line, &w)
		rec = w.Fault
	case typeLease:
		var w struct {
			typeField
			Lease
		}
		err = decodeStrict(line, &w)
		rec = w.Lease
	case typeStore:
		var w struct {
			typeField
			StoreRecord
		}
		err = decodeStrict(line, &w)
		rec = w.StoreRecord
	case "":
		return nil, errors.New("record without a type")
	default:
		return nil, fmt.Errorf("unknown record type %q", head.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s record: %w", head.Type, err)
	}
	rec, err = normalize(rec)
	if err != nil {
		return nil, err
	}
	return rec, nil
}

// decodeStrict decodes line, which json.Unmarshal has already found to be
// one well-formed value, refusing fields v does not have.
func decodeStrict(line []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// MaxLine is the longest line Read accepts, in bytes.
const MaxLine = 1 << 20

// Read streams a history into a Run. Blank lines are skipped; any other
// line that does not decode is an error naming its line number.
func Read(r io.Reader) (*Run, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), MaxLine)
	run := &Run{}
	n := 0
	for sc.Scan() {
		n++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		rec, err := ParseLine(line)
		if err != nil {
			return nil, fmt.Errorf("history: line %d: %w", n, err)
		}
		run.Add(rec)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("history: after line %d: %w", n, err)
	}
	return run, nil
}

// ReadFile reads the history in the file at path.
func ReadFile(path string) (*Run, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	defer f.Close()
	run, err := Read(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return run, nil
}

// Writer writes records, one line each. It is safe for concurrent use: each
// record reaches the underlying writer in a single Write call, never
// interleaved with another. After a failed write every Write returns that
// error, so a history never continues past a torn line.
type Writer struct {
	mu  sync.Mutex
	w   io.Writer
	err error
}

// NewWriter returns a Writer that writes to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write checks rec and writes its line.
func (w *Writer) Write(rec Record) error {
	b, err := Marshal(rec)
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	b = append(b, '\n')
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if _, err := w.w.Write(b); err != nil {
		w.err = fmt.Errorf("history: write: %w", err)
		return w.err
	}
	return nil
}
