package reminders

// DecodeInfo decodes a stored record as Get reports it.
func DecodeInfo(b []byte) (Info, error) {
	rec, err := decodeRecord(b)
	if err != nil {
		return Info{}, err
	}
	return rec.info(), nil
}
