package actor

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// SystemTypePrefix starts the names of the system actor types that Granary
// itself hosts (the building blocks' partitions). An app cannot host a type
// of such a name.
const SystemTypePrefix = "granary."

// IsSystemType reports whether actorType is a system actor type.
func IsSystemType(actorType string) bool { return strings.HasPrefix(actorType, SystemTypePrefix) }

// MaxNameLength bounds actor types, IDs, method, reminder and timer names.
const MaxNameLength = 1024

// ValidateName checks a type, ID or name from outside input: non-empty, at most
// MaxNameLength bytes, valid UTF-8, not "." or "..", and free of "/", "\", "#",
// "?", NUL and control characters. The error says what is wrong.
func ValidateName(s string) error {
	switch {
	case s == "":
		return errors.New("must not be empty")
	case len(s) > MaxNameLength:
		return fmt.Errorf("is %d bytes long; the limit is %d", len(s), MaxNameLength)
	case s == "." || s == "..":
		return fmt.Errorf("must not be %q", s)
	}
	ascii := true
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '/' || c == '\\' || c == '#' || c == '?':
			return fmt.Errorf("must not contain %q", c)
		case c < 0x20 || c == 0x7f:
			return fmt.Errorf("must not contain control character 0x%02x", c)
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	// Names come back in JSON answers (metadata, a reminder's GET), where
	// invalid bytes would turn into U+FFFD: the name read back would not be
	// the name stored, and two names could read back as one.
	if !ascii && !utf8.ValidString(s) {
		return errors.New("is not valid UTF-8")
	}
	return nil
}
