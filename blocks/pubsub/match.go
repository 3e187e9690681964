package pubsub

// Routing rules: CEL expressions (google/cel-go) over one variable, "event",
// the CloudEvent as decoded JSON, as Dapr's subscriptions use them.

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/cel-go/cel"
)

// celEnv declares the one variable rules see. It is built once: an
// environment is safe for concurrent use and costly to make.
var celEnv = func() *cel.Env {
	env, err := cel.NewEnv(cel.Variable("event", cel.MapType(cel.StringType, cel.DynType)))
	if err != nil {
		panic(fmt.Sprintf("pubsub: the CEL environment: %v", err))
	}
	return env
}()

// program is a compiled routing expression.
type program struct {
	prg cel.Program
}

// compileMatch compiles a routing expression; it must be boolean.
func compileMatch(expr string) (*program, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, errors.New("empty expression")
	}
	ast, iss := celEnv.Compile(expr)
	if iss != nil && iss.Err() != nil {
		return nil, iss.Err()
	}
	if t := ast.OutputType(); t != cel.BoolType && t != cel.DynType {
		return nil, fmt.Errorf("the expression is of type %s, not bool", t)
	}
	prg, err := celEnv.Program(ast)
	if err != nil {
		return nil, err
	}
	return &program{prg: prg}, nil
}

// matches evaluates the expression; an error (a missing field, a type
// mismatch) or anything but true is no match.
func (p *program) matches(event map[string]any) bool {
	out, _, err := p.prg.Eval(map[string]any{"event": event})
	if err != nil {
		return false
	}
	b, ok := out.Value().(bool)
	return ok && b
}
