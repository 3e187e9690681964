package callback_test

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/granaryhq/granary/actor"
	"github.com/granaryhq/granary/actor/callback"
)

// cfg builds a TypeConfig from the defaults.
func cfg(edit func(c *actor.TypeConfig)) actor.TypeConfig {
	c := actor.DefaultTypeConfig()
	if edit != nil {
		edit(&c)
	}
	return c
}

func TestParseConfig(t *testing.T) {
	def := actor.DefaultTypeConfig()
	tests := []struct {
		name string
		body string
		want map[string]actor.TypeConfig
		// warnings lists substrings, one per expected warning, in order.
		warnings []string
		err      string // substring of the error; empty means success
	}{
		{name: "empty body", body: "", want: map[string]actor.TypeConfig{}},
		{name: "null", body: "null", want: map[string]actor.TypeConfig{}},
		{name: "empty object", body: "{}", want: map[string]actor.TypeConfig{}},
		{name: "no entities", body: `{"entities":[]}`, want: map[string]actor.TypeConfig{}},
		{
			name: "defaults",
			body: `{"entities":["Counter","Cart"]}`,
			want: map[string]actor.TypeConfig{"Counter": def, "Cart": def},
		},
		{
			name: "protocol example",
			body: `{"entities": ["Counter", "Cart"],
			 "actorIdleTimeout": "1h", "drainOngoingCallTimeout": "30s", "drainRebalancedActors": true,
			 "reentrancy": {"enabled": true, "maxStackDepth": 32},
			 "entitiesConfig": [{"entities": ["Cart"], "actorIdleTimeout": "5m", "reentrancy": {"enabled": false}}]}`,
			want: map[string]actor.TypeConfig{
				"Counter": {IdleTimeout: time.Hour, DrainTimeout: 30 * time.Second, DrainRebalanced: true, Reentrancy: true, MaxStackDepth: 32},
				"Cart":    {IdleTimeout: 5 * time.Minute, DrainTimeout: 30 * time.Second, DrainRebalanced: true, Reentrancy: false, MaxStackDepth: 32},
			},
		},
		{
			name: "every top-level setting",
			body: `{"entities":["A"],"actorIdleTimeout":"1h30m","drainOngoingCallTimeout":"1500ms",
			 "drainRebalancedActors":false,"reentrancy":{"enabled":true,"maxStackDepth":7}}`,
			want: map[string]actor.TypeConfig{"A": {IdleTimeout: 90 * time.Minute, DrainTimeout: 1500 * time.Millisecond, DrainRebalanced: false, Reentrancy: true, MaxStackDepth: 7}},
		},
		{
			name: "settings of the wrong JSON type fall back to the default",
			body: `{"entities":["A"],"actorIdleTimeout":3600,"drainOngoingCallTimeout":true,
			 "drainRebalancedActors":"yes","reentrancy":{"enabled":true,"maxStackDepth":"5"}}`,
			want:     map[string]actor.TypeConfig{"A": cfg(func(c *actor.TypeConfig) { c.Reentrancy = true })},
			warnings: []string{"actorIdleTimeout 3600", "drainOngoingCallTimeout true", `drainRebalancedActors "yes"`, `maxStackDepth "5"`},
		},
		{
			name:     "reentrancy of the wrong JSON type",
			body:     `{"entities":["A"],"reentrancy":true}`,
			want:     map[string]actor.TypeConfig{"A": def},
			warnings: []string{"reentrancy true is not an object"},
		},
		{
			name: "reentrancy enabled keeps the default depth",
			body: `{"entities":["A"],"reentrancy":{"enabled":true}}`,
			want: map[string]actor.TypeConfig{"A": cfg(func(c *actor.TypeConfig) { c.Reentrancy = true })},
		},
		{
			name: "null settings are absent settings",
			body: `{"entities":["A"],"drainRebalancedActors":null,"reentrancy":null,"entitiesConfig":null}`,
			want: map[string]actor.TypeConfig{"A": def},
		},
		{
			name: "unknown fields are ignored",
			body: `{"entities":["A"],"actorScanInterval":"30s","remindersStoragePartitions":4,"future":{"x":[1,2]}}`,
			want: map[string]actor.TypeConfig{"A": def},
		},
		{
			name: "overrides inherit the top level and apply per type",
			body: `{"entities":["A","B","C"],"actorIdleTimeout":"2h","reentrancy":{"enabled":true,"maxStackDepth":10},
			 "entitiesConfig":[
			   {"entities":["A"],"drainOngoingCallTimeout":"5s","drainRebalancedActors":false},
			   {"entities":["B","C"],"reentrancy":{"enabled":true,"maxStackDepth":3}},
			   {"entities":["C"],"actorIdleTimeout":"1m","reentrancy":{"enabled":false}}]}`,
			want: map[string]actor.TypeConfig{
				"A": {IdleTimeout: 2 * time.Hour, DrainTimeout: 5 * time.Second, DrainRebalanced: false, Reentrancy: true, MaxStackDepth: 10},
				"B": {IdleTimeout: 2 * time.Hour, DrainTimeout: 30 * time.Second, DrainRebalanced: true, Reentrancy: true, MaxStackDepth: 3},
				"C": {IdleTimeout: time.Minute, DrainTimeout: 30 * time.Second, DrainRebalanced: true, Reentrancy: false, MaxStackDepth: 3},
			},
		},
		{
			name:     "invalid idle timeout falls back to the default",
			body:     `{"entities":["A"],"actorIdleTimeout":"forever"}`,
			want:     map[string]actor.TypeConfig{"A": def},
			warnings: []string{`actorIdleTimeout "forever"`},
		},
		{
			name:     "zero and negative durations are invalid",
			body:     `{"entities":["A"],"actorIdleTimeout":"0s","drainOngoingCallTimeout":"-5m"}`,
			want:     map[string]actor.TypeConfig{"A": def},
			warnings: []string{`actorIdleTimeout "0s"`, `drainOngoingCallTimeout "-5m"`},
		},
		{
			name:     "a duration without a unit is invalid",
			body:     `{"entities":["A"],"drainOngoingCallTimeout":"30"}`,
			want:     map[string]actor.TypeConfig{"A": def},
			warnings: []string{`drainOngoingCallTimeout "30"`},
		},
		{
			name:     "non-positive stack depth keeps the default",
			body:     `{"entities":["A"],"reentrancy":{"enabled":true,"maxStackDepth":0}}`,
			want:     map[string]actor.TypeConfig{"A": cfg(func(c *actor.TypeConfig) { c.Reentrancy = true })},
			warnings: []string{"maxStackDepth 0"},
		},
		{
			name: "an invalid override keeps the top-level value, not the default",
			body: `{"entities":["A","B"],"actorIdleTimeout":"2h","reentrancy":{"enabled":true,"maxStackDepth":8},
			 "entitiesConfig":[{"entities":["A"],"actorIdleTimeout":"soon","reentrancy":{"enabled":true,"maxStackDepth":-3}}]}`,
			want: map[string]actor.TypeConfig{
				"A": {IdleTimeout: 2 * time.Hour, DrainTimeout: def.DrainTimeout, DrainRebalanced: true, Reentrancy: true, MaxStackDepth: 8},
				"B": {IdleTimeout: 2 * time.Hour, DrainTimeout: def.DrainTimeout, DrainRebalanced: true, Reentrancy: true, MaxStackDepth: 8},
			},
			warnings: []string{`entitiesConfig for A: actorIdleTimeout "soon"`, "entitiesConfig for A: reentrancy.maxStackDepth -3"},
		},
		{
			name:     "an override of a type not in entities is ignored",
			body:     `{"entities":["A"],"entitiesConfig":[{"entities":["Ghost","A"],"actorIdleTimeout":"3m"}]}`,
			want:     map[string]actor.TypeConfig{"A": cfg(func(c *actor.TypeConfig) { c.IdleTimeout = 3 * time.Minute })},
			warnings: []string{`"Ghost"`},
		},
		{name: "malformed JSON", body: `{"entities": [`, err: "not valid JSON"},
		{name: "not JSON at all", body: `<html>hello</html>`, err: "not valid JSON"},
		{name: "a JSON array", body: `["A"]`, err: "not valid JSON"},
		{name: "entities not a list", body: `{"entities":"A"}`, err: "not valid JSON"},
		{name: "trailing garbage", body: `{"entities":["A"]} x`, err: "not valid JSON"},
		{name: "a type listed twice", body: `{"entities":["A","B","A"]}`, err: `"A" is listed twice`},
		{name: "a system type", body: `{"entities":["A","granary.state.statestore"]}`, err: `Granary's own`},
		{name: "an empty type name", body: `{"entities":[""]}`, err: "must not be empty"},
		{name: "a type name with a slash", body: `{"entities":["a/b"]}`, err: `entity "a/b"`},
		{name: "a type name with a control character", body: `{"entities":["a\u0001"]}`, err: "control character"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			types, warnings, err := callback.ParseConfig([]byte(tc.body))
			if tc.err != "" {
				if err == nil {
					t.Fatalf("ParseConfig succeeded with %v; want an error containing %q", types, tc.err)
				}
				if !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %q does not contain %q", err, tc.err)
				}
				if types != nil {
					t.Errorf("types = %v alongside an error", types)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			if !maps.Equal(types, tc.want) {
				t.Errorf("types:\n got  %+v\n want %+v", types, tc.want)
			}
			if len(warnings) != len(tc.warnings) {
				t.Fatalf("warnings = %q; want %d containing %q", warnings, len(tc.warnings), tc.warnings)
			}
			for i, w := range tc.warnings {
				if !strings.Contains(warnings[i], w) {
					t.Errorf("warning %d = %q; want it to contain %q", i, warnings[i], w)
				}
			}
		})
	}
}

// A warning names the value kept, so that an operator reading the log knows
// what the app gets.
func TestParseConfigWarningNamesTheValueKept(t *testing.T) {
	_, warnings, err := callback.ParseConfig([]byte(`{"entities":["A"],"actorIdleTimeout":"2h","entitiesConfig":[{"entities":["A"],"actorIdleTimeout":"x"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "keeping 2h0m0s") {
		t.Fatalf("warnings = %q; want one saying it keeps 2h0m0s", warnings)
	}
}

func FuzzParseConfig(f *testing.F) {
	seeds := []string{
		``,
		`null`,
		`{}`,
		`{"entities":["Counter","Cart"],"actorIdleTimeout":"1h","drainOngoingCallTimeout":"30s","drainRebalancedActors":true,
		  "reentrancy":{"enabled":true,"maxStackDepth":32},
		  "entitiesConfig":[{"entities":["Cart"],"actorIdleTimeout":"5m","reentrancy":{"enabled":false}}]}`,
		`{"entities":["A"],"actorIdleTimeout":"-1s","reentrancy":{"enabled":true,"maxStackDepth":-1}}`,
		`{"entities":["A","A"]}`,
		`{"entities":[".."]}`,
		`{"entities":["A"],"entitiesConfig":[{"entities":["B"],"drainOngoingCallTimeout":"1ns"}]}`,
		`{"entities":["A"],"actorIdleTimeout":"9223372036854775807ns"}`,
		`{"entities":["A"],"actorIdleTimeout":"99999999999h"}`,
		`{"entities":["A"],"reentrancy":{"maxStackDepth":1e3}}`,
		`[1,2,3]`,
		`{"entities":`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		types, warnings, err := callback.ParseConfig(body)
		if err != nil {
			if types != nil || warnings != nil {
				t.Fatalf("error %v came with types %v and warnings %q", err, types, warnings)
			}
			return
		}
		if types == nil {
			t.Fatal("success with a nil map")
		}
		// The types are exactly the listed entities, each listed once.
		var c struct {
			Entities []string `json:"entities"`
		}
		if len(body) > 0 {
			if err := json.Unmarshal(body, &c); err != nil {
				t.Fatalf("ParseConfig accepted a body that does not decode: %v", err)
			}
		}
		got := slices.Sorted(maps.Keys(types))
		want := slices.Clone(c.Entities)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("types %q; entities %q", got, c.Entities)
		}
		for name, tc := range types {
			if err := actor.ValidateName(name); err != nil {
				t.Errorf("type %q accepted: %v", name, err)
			}
			if tc.IdleTimeout <= 0 || tc.DrainTimeout <= 0 || tc.MaxStackDepth <= 0 {
				t.Errorf("type %q has a non-positive setting: %+v", name, tc)
			}
		}
		for _, w := range warnings {
			if w == "" {
				t.Error("empty warning")
			}
		}
		// Parsing is deterministic.
		again, warnings2, err := callback.ParseConfig(body)
		if err != nil || !maps.Equal(types, again) || !slices.Equal(warnings, warnings2) {
			t.Fatalf("second parse differs: %v %v %q vs %v %q", err, again, warnings2, types, warnings)
		}
	})
}

func TestParseAppURL(t *testing.T) {
	good := []string{"http://127.0.0.1:3000", "http://localhost:8080/", "http://app:80/prefix", "http://[::1]:3000", "grpc://127.0.0.1:50002", "grpc://app:50002/"}
	for _, raw := range good {
		if _, err := callback.ParseAppURL(raw); err != nil {
			t.Errorf("ParseAppURL(%q): %v", raw, err)
		}
	}
	bad := []string{
		"", "127.0.0.1:3000", "https://app:443", "ftp://app", "http://", "http:///path",
		"http://app:3000?x=1", "http://app:3000#frag", "http://user:pw@app:3000", "http://app:3000/%zz",
		"grpc://app:50002/prefix", "grpc://",
	}
	for _, raw := range bad {
		if u, err := callback.ParseAppURL(raw); err == nil {
			t.Errorf("ParseAppURL(%q) = %v; want an error", raw, u)
		} else if !strings.Contains(err.Error(), "app URL") {
			t.Errorf("ParseAppURL(%q): error %q does not say it is about the app URL", raw, err)
		}
	}
}

func TestForwarded(t *testing.T) {
	dropped := []string{
		"Connection", "keep-alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
		"TE", "Trailer", "transfer-encoding", "Upgrade", "Host", "Content-Length", "dapr-api-token",
		"DAPR-REENTRANCY-ID", "content-type", "Date", "Server",
	}
	for _, h := range dropped {
		if callback.Forwarded([]byte(h)) {
			t.Errorf("Forwarded(%q) = true; want false", h)
		}
	}
	kept := []string{"X-Custom", "Accept", "Authorization", "traceparent", "Cookie", "Set-Cookie", "Dapr-App-Id", "Content-Lengthy", "Hos", ""}
	for _, h := range kept {
		if !callback.Forwarded([]byte(h)) {
			t.Errorf("Forwarded(%q) = false; want true", h)
		}
	}
}
