package ident

import (
	"errors"
	"strings"
	"testing"
)

// FuzzCheck checks that whatever Check accepts is a plain identifier and whatever it
// refuses wraps ErrInvalid.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{"xiaofuge", "pad763_2 ", "\xff", "a\x00b", "alice\u200b", "小傅哥"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := Check(s, MaxUserID)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("%q: %v does not wrap ErrInvalid", s, err)
			}
			return
		}
		if s == "" || len(s) > MaxUserID || strings.TrimSpace(s) != s || strings.ContainsAny(s, "\x00\n\r\t\ufffd") {
			t.Fatalf("%q accepted", s)
		}
	})
}
