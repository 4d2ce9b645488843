package bench

import "bytes"

var codeKey = []byte(`"code"`)

// envelopeCode returns the value of the first "code" member in body, the
// envelope's code when the server writes it first as bigmarket does, or nil
// when there is none. It is a byte search rather than a JSON decode because
// the load generator shares the CPU with the server it measures: a quoted
// value is returned without its quotes, a bare one (a number) up to the next
// delimiter, and the result aliases body.
func envelopeCode(body []byte) []byte {
	i := bytes.Index(body, codeKey)
	if i < 0 {
		return nil
	}
	rest := skipSpace(body[i+len(codeKey):])
	if len(rest) == 0 || rest[0] != ':' {
		return nil
	}
	rest = skipSpace(rest[1:])
	if len(rest) == 0 {
		return nil
	}
	if rest[0] == '"' {
		end := bytes.IndexByte(rest[1:], '"')
		if end < 0 {
			return nil
		}
		return rest[1 : 1+end]
	}
	end := 0
	for end < len(rest) {
		switch rest[end] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			if end == 0 {
				return nil
			}
			return rest[:end]
		}
		end++
	}
	return nil // truncated: the value may continue past what was read
}

func skipSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r' || b[0] == '\n') {
		b = b[1:]
	}
	return b
}
