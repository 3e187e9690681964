package callback

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/granaryhq/granary/actor"
)

// appConfig is the body of GET /dapr/config. Unknown fields are ignored.
// The settings are kept raw and decoded one by one, so a value of the wrong
// JSON type costs only that setting, not the whole config.
type appConfig struct {
	Entities []string `json:"entities"`
	settings
	EntitiesConfig []entityConfigJSON `json:"entitiesConfig"`
}

type settings struct {
	ActorIdleTimeout        json.RawMessage `json:"actorIdleTimeout"`
	DrainOngoingCallTimeout json.RawMessage `json:"drainOngoingCallTimeout"`
	DrainRebalancedActors   json.RawMessage `json:"drainRebalancedActors"`
	Reentrancy              json.RawMessage `json:"reentrancy"`
}

type reentrancyConfig struct {
	Enabled       json.RawMessage `json:"enabled"`
	MaxStackDepth json.RawMessage `json:"maxStackDepth"`
}

type entityConfigJSON struct {
	Entities []string `json:"entities"`
	settings
}

// MaxEntities bounds the actor types one app may declare. Real apps declare a
// handful; the bound keeps a hostile or broken config from making the silo
// register, watch and load reminders for an unbounded number of types.
const MaxEntities = 1000

// ParseConfig reads an app's /dapr/config body into per-type configurations.
// Invalid values do not fail the whole config: each is reported in warnings and
// the value it would have had otherwise is kept — the default for an app-level
// setting, the app-level value for one in entitiesConfig. Malformed JSON, an
// empty or invalid type name, a type listed twice, or more than MaxEntities
// types is an error.
func ParseConfig(body []byte) (types map[string]actor.TypeConfig, warnings []string, err error) {
	var c appConfig
	if len(body) > 0 {
		if err := json.Unmarshal(body, &c); err != nil {
			return nil, nil, fmt.Errorf("app config is not valid JSON: %w", err)
		}
	}
	warn := func(format string, args ...any) { warnings = append(warnings, fmt.Sprintf(format, args...)) }

	if len(c.Entities) > MaxEntities {
		return nil, nil, fmt.Errorf("app config lists %d entities; an app may host at most %d actor types", len(c.Entities), MaxEntities)
	}
	base := actor.DefaultTypeConfig()
	applyCommon(&base, "", c.settings, warn)

	types = make(map[string]actor.TypeConfig, len(c.Entities))
	for _, name := range c.Entities {
		if err := actor.ValidateName(name); err != nil {
			return nil, nil, fmt.Errorf("app config: entity %q: %w", name, err)
		}
		if _, dup := types[name]; dup {
			return nil, nil, fmt.Errorf("app config: entity %q is listed twice", name)
		}
		if actor.IsSystemType(name) {
			return nil, nil, fmt.Errorf("app config: entity %q: names starting with %q are Granary's own", name, actor.SystemTypePrefix)
		}
		types[name] = base
	}
	for _, ec := range c.EntitiesConfig {
		for _, name := range ec.Entities {
			cfg, ok := types[name]
			if !ok {
				warn("entitiesConfig names %q, which is not in entities; ignored", name)
				continue
			}
			applyCommon(&cfg, name, ec.settings, warn)
			types[name] = cfg
		}
	}
	return types, warnings, nil
}

func applyCommon(cfg *actor.TypeConfig, scope string, s settings, warn func(string, ...any)) {
	where := "app config"
	if scope != "" {
		where = "entitiesConfig for " + scope
	}
	duration := func(field string, raw json.RawMessage, dst *time.Duration) {
		if !present(raw) {
			return
		}
		var text string
		if err := json.Unmarshal(raw, &text); err == nil {
			if d, ok := parsePositive(text); ok {
				*dst = d
				return
			}
		}
		warn("%s: %s %s is not a positive Go duration string; keeping %v", where, field, raw, *dst)
	}
	duration("actorIdleTimeout", s.ActorIdleTimeout, &cfg.IdleTimeout)
	duration("drainOngoingCallTimeout", s.DrainOngoingCallTimeout, &cfg.DrainTimeout)
	if present(s.DrainRebalancedActors) {
		if err := json.Unmarshal(s.DrainRebalancedActors, &cfg.DrainRebalanced); err != nil {
			warn("%s: drainRebalancedActors %s is not a boolean; keeping %v", where, s.DrainRebalancedActors, cfg.DrainRebalanced)
		}
	}
	if !present(s.Reentrancy) {
		return
	}
	var re reentrancyConfig
	if err := json.Unmarshal(s.Reentrancy, &re); err != nil {
		warn("%s: reentrancy %s is not an object; keeping reentrancy %v", where, s.Reentrancy, cfg.Reentrancy)
		return
	}
	var enabled bool
	if err := json.Unmarshal(re.Enabled, &enabled); present(re.Enabled) && err != nil {
		warn("%s: reentrancy.enabled %s is not a boolean; keeping %v", where, re.Enabled, cfg.Reentrancy)
	} else {
		cfg.Reentrancy = enabled
	}
	if present(re.MaxStackDepth) {
		var depth int
		if err := json.Unmarshal(re.MaxStackDepth, &depth); err != nil || depth <= 0 {
			warn("%s: reentrancy.maxStackDepth %s is not a positive integer; keeping %d", where, re.MaxStackDepth, cfg.MaxStackDepth)
		} else {
			cfg.MaxStackDepth = depth
		}
	}
}

// present reports whether a setting was given (absent and null mean default).
func present(raw json.RawMessage) bool {
	return len(raw) > 0 && string(raw) != "null"
}

func parsePositive(s string) (time.Duration, bool) {
	if s == "" {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	return d, err == nil && d > 0
}
