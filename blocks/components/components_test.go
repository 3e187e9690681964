package components

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func write(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const stateFile = `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: orders
spec:
  type: state.redis
  version: v1
  metadata:
  - name: redisHost
    value: localhost:6379
`

const pubsubAndBinding = `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: events
spec:
  type: pubsub.kafka
  version: v1
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: mail
spec:
  type: bindings.smtp
  version: v1
---
`

const subscriptions = `apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: order-events
spec:
  pubsubname: events
  topic: orders
  routes:
    rules:
    - match: event.type == "big"
      path: /big
    default: /orders
  deadLetterTopic: dead
scopes:
- shop
---
apiVersion: dapr.io/v1alpha1
kind: Subscription
metadata:
  name: old-style
spec:
  pubsubname: pubsub
  topic: t
  route: /t
`

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, map[string]string{"state.yaml": stateFile, "more.yml": pubsubAndBinding, "subs.yaml": subscriptions, "notes.txt": "not yaml: ["})
	var logs bytes.Buffer
	res, err := Load([]string{dir}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := res.Names("state"); !slices.Equal(got, []string{"statestore", "orders"}) {
		t.Errorf("state stores %v", got)
	}
	if got := res.Names("pubsub"); !slices.Equal(got, []string{"pubsub", "events"}) {
		t.Errorf("pub/subs %v", got)
	}
	if len(res.Subscriptions) != 2 {
		t.Fatalf("subscriptions %+v", res.Subscriptions)
	}
	s := res.Subscriptions[0]
	if s.Name != "order-events" || s.PubSub != "events" || s.Topic != "orders" || s.Default != "/orders" || s.DeadLetterTopic != "dead" ||
		len(s.Rules) != 1 || s.Rules[0].Path != "/big" || !slices.Equal(s.Scopes, []string{"shop"}) {
		t.Errorf("v2 subscription %+v", s)
	}
	if o := res.Subscriptions[1]; o.Default != "/t" || len(o.Rules) != 0 {
		t.Errorf("v1 subscription %+v", o)
	}
	for _, want := range []string{"bindings.smtp", "metadata is not used"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log does not mention %q:\n%s", want, logs.String())
		}
	}
}

func TestLoadRefuses(t *testing.T) {
	for name, c := range map[string]struct{ files map[string]string }{
		"bad yaml":       {map[string]string{"a.yaml": "kind: Component\nmetadata: [\n"}},
		"no name":        {map[string]string{"a.yaml": "kind: Component\nspec:\n  type: state.redis\n"}},
		"bad name":       {map[string]string{"a.yaml": "kind: Component\nmetadata:\n  name: a/b\nspec:\n  type: state.redis\n"}},
		"twice":          {map[string]string{"a.yaml": stateFile, "b.yaml": stateFile}},
		"no topic":       {map[string]string{"a.yaml": "kind: Subscription\nmetadata:\n  name: s\nspec:\n  pubsubname: pubsub\n  route: /x\n"}},
		"no route":       {map[string]string{"a.yaml": "kind: Subscription\nmetadata:\n  name: s\nspec:\n  pubsubname: pubsub\n  topic: t\n"}},
		"rule half":      {map[string]string{"a.yaml": "kind: Subscription\nmetadata:\n  name: s\nspec:\n  pubsubname: pubsub\n  topic: t\n  routes:\n    rules:\n    - match: x\n"}},
		"no pubsubname":  {map[string]string{"a.yaml": "kind: Subscription\nmetadata:\n  name: s\nspec:\n  topic: t\n  route: /x\n"}},
		"unknown pubsub": {map[string]string{"a.yaml": "kind: Subscription\nmetadata:\n  name: s\nspec:\n  pubsubname: nope\n  topic: t\n  route: /x\n"}},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, c.files)
			res, err := Load([]string{dir}, slog.New(slog.DiscardHandler))
			if err == nil {
				err = res.Validate()
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), dir) {
				t.Errorf("the error does not name the file: %v", err)
			}
		})
	}
	if _, err := Load([]string{filepath.Join(t.TempDir(), "missing")}, nil); err == nil {
		t.Error("a missing directory was accepted")
	}
}
