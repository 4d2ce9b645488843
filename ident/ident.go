// Package ident is the one rule every identifier a client sends must follow (user ids,
// business numbers, packet ids, behaviour types, app ids, channels), checked at the edge
// and again by the domains that store them.
package ident

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// Bounds in bytes, the widths of the columns the identifiers land in (VARCHAR(n) of the
// MySQL migrations; a byte bound is never wider than a character bound).
const (
	MaxUserID     = 32 // user_id, sender_id
	MaxBusinessNo = 64 // out_business_no
	MaxPacketID   = 32 // packet_id
	MaxBehavior   = 16 // behavior_type
	MaxChannel    = 16 // raffle_activity_stage.channel and .source
	MaxAppID      = 64 // app ids are compared with the configured ones, never stored
)

// ErrInvalid is wrapped by every error of Check.
var ErrInvalid = errors.New("invalid identifier")

// problem is an error of Check: its text says what is wrong, phrased to follow the
// field's name ("userId must be valid UTF-8"), and never repeats the value.
type problem string

func (p problem) Error() string { return string(p) }
func (p problem) Unwrap() error { return ErrInvalid }

// Check returns nil when s is a usable identifier of at most max bytes, otherwise an
// error wrapping ErrInvalid whose text completes a sentence that starts with the field's
// name. An identifier is:
//
//   - not empty and at most max bytes;
//   - valid UTF-8 without U+FFFD, the replacement character a decoder (encoding/json
//     among them) puts where the bytes were not UTF-8: MySQL refuses invalid bytes with
//     error 1366, and a replaced id is not the one the client meant;
//   - free of control characters (Unicode Cc: NUL, tabs, newlines, DEL, C1), of format
//     characters (Cf: zero-width spaces and joiners, bidi overrides, BOM, soft hyphen),
//     which are invisible and would let two ids look alike in a console or a log, and of
//     line and paragraph separators (Zl, Zp);
//   - not started or ended by whitespace (unicode.IsSpace): MySQL's PAD SPACE collations
//     (utf8mb4_bin among them) compare "u1 " equal to "u1", so a padded id would read
//     another user's rows.
//
// Inner spaces are allowed, as big-market's ids are free text.
func Check(s string, max int) error {
	switch {
	case s == "":
		return problem("is required")
	case len(s) > max:
		return problem(fmt.Sprintf("must be at most %d bytes", max))
	case !utf8.ValidString(s):
		return problem("must be valid UTF-8")
	}
	for _, r := range s {
		switch {
		case r == utf8.RuneError:
			return problem("must be valid UTF-8 (it holds U+FFFD, the mark of bytes that were not)")
		case unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp):
			return problem("must not contain control or invisible format characters")
		}
	}
	first, _ := utf8.DecodeRuneInString(s)
	last, _ := utf8.DecodeLastRuneInString(s)
	if unicode.IsSpace(first) || unicode.IsSpace(last) {
		return problem("must not begin or end with whitespace")
	}
	return nil
}
