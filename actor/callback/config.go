package callback

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/granaryhq/granary/actor"
)

// appConfig is the body of GET /dapr/config. Unknown fields are ignored.
type appConfig struct {
	Entities                []string           `json:"entities"`
	ActorIdleTimeout        string             `json:"actorIdleTimeout"`
	DrainOngoingCallTimeout string             `json:"drainOngoingCallTimeout"`
	DrainRebalancedActors   *bool              `json:"drainRebalancedActors"`
	Reentrancy              *reentrancyConfig  `json:"reentrancy"`
	EntitiesConfig          []entityConfigJSON `json:"entitiesConfig"`
}

type reentrancyConfig struct {
	Enabled       bool `json:"enabled"`
	MaxStackDepth *int `json:"maxStackDepth"`
}

type entityConfigJSON struct {
	Entities                []string          `json:"entities"`
	ActorIdleTimeout        string            `json:"actorIdleTimeout"`
	DrainOngoingCallTimeout string            `json:"drainOngoingCallTimeout"`
	DrainRebalancedActors   *bool             `json:"drainRebalancedActors"`
	Reentrancy              *reentrancyConfig `json:"reentrancy"`
}

// ParseConfig reads an app's /dapr/config body into per-type configurations.
// Invalid values do not fail the whole config: each is reported in warnings and
// the default applies, as the protocol asks. Malformed JSON, an empty or
// invalid type name, or a type listed twice is an error.
func ParseConfig(body []byte) (types map[string]actor.TypeConfig, warnings []string, err error) {
	var c appConfig
	if len(body) > 0 {
		if err := json.Unmarshal(body, &c); err != nil {
			return nil, nil, fmt.Errorf("app config is not valid JSON: %w", err)
		}
	}
	warn := func(format string, args ...any) { warnings = append(warnings, fmt.Sprintf(format, args...)) }

	base := actor.DefaultTypeConfig()
	applyCommon(&base, "", c.ActorIdleTimeout, c.DrainOngoingCallTimeout, c.DrainRebalancedActors, c.Reentrancy, warn)

	types = make(map[string]actor.TypeConfig, len(c.Entities))
	for _, name := range c.Entities {
		if err := actor.ValidateName(name); err != nil {
			return nil, nil, fmt.Errorf("app config: entity %q: %w", name, err)
		}
		if _, dup := types[name]; dup {
			return nil, nil, fmt.Errorf("app config: entity %q is listed twice", name)
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
			applyCommon(&cfg, name, ec.ActorIdleTimeout, ec.DrainOngoingCallTimeout, ec.DrainRebalancedActors, ec.Reentrancy, warn)
			types[name] = cfg
		}
	}
	return types, warnings, nil
}

func applyCommon(cfg *actor.TypeConfig, scope, idle, drain string, rebalance *bool, re *reentrancyConfig, warn func(string, ...any)) {
	where := "app config"
	if scope != "" {
		where = "entitiesConfig for " + scope
	}
	if d, ok := parsePositive(idle); ok {
		cfg.IdleTimeout = d
	} else if idle != "" {
		warn("%s: actorIdleTimeout %q is not a positive Go duration; keeping %v", where, idle, cfg.IdleTimeout)
	}
	if d, ok := parsePositive(drain); ok {
		cfg.DrainTimeout = d
	} else if drain != "" {
		warn("%s: drainOngoingCallTimeout %q is not a positive Go duration; keeping %v", where, drain, cfg.DrainTimeout)
	}
	if rebalance != nil {
		cfg.DrainRebalanced = *rebalance
	}
	if re != nil {
		cfg.Reentrancy = re.Enabled
		if re.MaxStackDepth != nil {
			if *re.MaxStackDepth > 0 {
				cfg.MaxStackDepth = *re.MaxStackDepth
			} else {
				warn("%s: reentrancy.maxStackDepth %d is not positive; keeping %d", where, *re.MaxStackDepth, cfg.MaxStackDepth)
			}
		}
	}
}

func parsePositive(s string) (time.Duration, bool) {
	if s == "" {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	return d, err == nil && d > 0
}
