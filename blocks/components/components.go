// Package components reads the Dapr resource files under --resources-path:
// Component files of type state.* and pubsub.*, which name further state
// stores and pub/subs (all built in and kept in the silo's own store, so
// their metadata is not used), and declarative Subscription files.
package components

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/granaryhq/granary/actor"
)

// Default names, served with no resource files: Dapr's self-hosted defaults.
const (
	DefaultStateStore = "statestore"
	DefaultPubSub     = "pubsub"
)

// Component is a declared state store or pub/sub.
type Component struct {
	Name    string
	Type    string // e.g. state.redis, pubsub.kafka
	Version string
	File    string // where it was declared
}

// Kind is "state" or "pubsub".
func (c Component) Kind() string { kind, _, _ := strings.Cut(c.Type, "."); return kind }

// Rule routes the events an expression matches to a path.
type Rule struct {
	Match string
	Path  string
}

// Subscription is a declarative subscription.
type Subscription struct {
	Name            string
	PubSub          string
	Topic           string
	Rules           []Rule
	Default         string // the route of events no rule matches
	DeadLetterTopic string
	Metadata        map[string]string
	// Scopes are the app IDs it applies to; empty means every app.
	Scopes []string
	File   string
}

// Resources is what a set of resource directories declares.
type Resources struct {
	Components    []Component
	Subscriptions []Subscription
}

// Names returns the names of the components of kind ("state" or
// "pubsub"), with the default first.
func (r Resources) Names(kind string) []string {
	def := DefaultStateStore
	if kind == "pubsub" {
		def = DefaultPubSub
	}
	names := []string{def}
	for _, c := range r.Components {
		if c.Kind() == kind && !slices.Contains(names, c.Name) {
			names = append(names, c.Name)
		}
	}
	return names
}

// document is one YAML document of a resource file.
type document struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec   yaml.Node `yaml:"spec"`
	Scopes []string  `yaml:"scopes"`
}

type componentSpec struct {
	Type     string      `yaml:"type"`
	Version  string      `yaml:"version"`
	Metadata []yaml.Node `yaml:"metadata"`
}

type subscriptionSpec struct {
	PubSubName string `yaml:"pubsubname"`
	Topic      string `yaml:"topic"`
	Route      string `yaml:"route"` // v1alpha1
	Routes     struct {
		Rules []struct {
			Match string `yaml:"match"`
			Path  string `yaml:"path"`
		} `yaml:"rules"`
		Default string `yaml:"default"`
	} `yaml:"routes"`
	DeadLetterTopic string            `yaml:"deadLetterTopic"`
	Metadata        map[string]string `yaml:"metadata"`
}

// Load reads every .yaml and .yml file of dirs (not their subdirectories).
// A file that cannot be read or parsed, a resource without a name, or a
// name declared twice is an error naming the file; resources of other
// kinds and component types are skipped with a log line.
func Load(dirs []string, log *slog.Logger) (Resources, error) {
	if log == nil {
		log = slog.Default()
	}
	var res Resources
	seen := map[string]string{} // kind/name → file
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return Resources{}, fmt.Errorf("--resources-path %s: %w", dir, err)
		}
		for _, e := range entries {
			ext := strings.ToLower(filepath.Ext(e.Name()))
			if e.IsDir() || (ext != ".yaml" && ext != ".yml") {
				continue
			}
			file := filepath.Join(dir, e.Name())
			data, err := os.ReadFile(file)
			if err != nil {
				return Resources{}, fmt.Errorf("resource file %s: %w", file, err)
			}
			if err := res.parse(file, data, seen, log); err != nil {
				return Resources{}, err
			}
		}
	}
	return res, nil
}

func (r *Resources) parse(file string, data []byte, seen map[string]string, log *slog.Logger) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for n := 1; ; n++ {
		var doc document
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("resource file %s: document %d: %w", file, n, err)
		}
		if doc.Kind == "" && doc.APIVersion == "" {
			continue // an empty document
		}
		where := fmt.Sprintf("resource file %s: %s %q", file, doc.Kind, doc.Metadata.Name)
		switch doc.Kind {
		case "Component":
			var spec componentSpec
			if err := doc.Spec.Decode(&spec); err != nil {
				return fmt.Errorf("%s: spec: %w", where, err)
			}
			kind, _, _ := strings.Cut(spec.Type, ".")
			if kind != "state" && kind != "pubsub" {
				log.Warn("resources: skipping a component of a type Granary does not serve", "file", file, "name", doc.Metadata.Name, "type", spec.Type)
				continue
			}
			if err := checkName(doc.Metadata.Name); err != nil {
				return fmt.Errorf("%s: metadata.name %w", where, err)
			}
			if prev, dup := seen[kind+"/"+doc.Metadata.Name]; dup {
				return fmt.Errorf("%s: a %s component of this name is declared in %s too", where, kind, prev)
			}
			seen[kind+"/"+doc.Metadata.Name] = file
			if len(spec.Metadata) > 0 {
				log.Info("resources: the component is built in and kept in the silo's state store; its metadata is not used",
					"file", file, "name", doc.Metadata.Name, "type", spec.Type)
			}
			r.Components = append(r.Components, Component{Name: doc.Metadata.Name, Type: spec.Type, Version: spec.Version, File: file})
		case "Subscription":
			var spec subscriptionSpec
			if err := doc.Spec.Decode(&spec); err != nil {
				return fmt.Errorf("%s: spec: %w", where, err)
			}
			switch {
			case spec.PubSubName == "":
				return fmt.Errorf("%s: spec.pubsubname is missing", where)
			case spec.Topic == "":
				return fmt.Errorf("%s: spec.topic is missing", where)
			case spec.Route == "" && spec.Routes.Default == "" && len(spec.Routes.Rules) == 0:
				return fmt.Errorf("%s: it has no route (spec.route, or spec.routes.rules and spec.routes.default)", where)
			}
			sub := Subscription{Name: doc.Metadata.Name, PubSub: spec.PubSubName, Topic: spec.Topic, Default: spec.Routes.Default,
				DeadLetterTopic: spec.DeadLetterTopic, Metadata: spec.Metadata, Scopes: doc.Scopes, File: file}
			if spec.Route != "" && sub.Default == "" {
				sub.Default = spec.Route
			}
			for i, rule := range spec.Routes.Rules {
				if rule.Match == "" || rule.Path == "" {
					return fmt.Errorf("%s: spec.routes.rules[%d] needs both match and path", where, i)
				}
				sub.Rules = append(sub.Rules, Rule{Match: rule.Match, Path: rule.Path})
			}
			r.Subscriptions = append(r.Subscriptions, sub)
		default:
			log.Warn("resources: skipping a resource of a kind Granary does not read", "file", file, "kind", doc.Kind, "name", doc.Metadata.Name)
		}
	}
}

func checkName(name string) error {
	if err := actor.ValidateName(name); err != nil {
		return err
	}
	if len(name) > 128 {
		return fmt.Errorf("%q is longer than 128 bytes", name)
	}
	return nil
}

// Validate checks the subscriptions against the pub/subs declared.
func (r Resources) Validate() error {
	pubsubs := r.Names("pubsub")
	for _, s := range r.Subscriptions {
		if !slices.Contains(pubsubs, s.PubSub) {
			return fmt.Errorf("resource file %s: Subscription %q names pubsub %q, which is not declared (pub/subs: %s)",
				s.File, s.Name, s.PubSub, strings.Join(pubsubs, ", "))
		}
	}
	return nil
}
