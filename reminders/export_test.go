package reminders

import "github.com/granaryhq/granary/actor"

// DecodeInfo decodes a stored record as Get reports it.
func DecodeInfo(id actor.ID, name string, b []byte) (Info, error) {
	rec, err := decodeRecord(b)
	if err != nil {
		return Info{}, err
	}
	return rec.info(id, name), nil
}
