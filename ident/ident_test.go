package ident

import (
	"errors"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		id   string
		max  int
		want string // "" accepted, else a part of the problem
	}{
		{"plain", "xiaofuge", 32, ""},
		{"digits and punctuation", "pad763_2-x.y@z", 32, ""},
		{"inner space", "li lei", 32, ""},
		{"chinese", "小傅哥", 32, ""},
		{"emoji", "u🎁", 32, ""},
		{"exactly max bytes", strings.Repeat("u", 32), 32, ""},
		{"max counts bytes", strings.Repeat("傅", 11), 32, "at most 32 bytes"},
		{"empty", "", 32, "required"},
		{"too long", strings.Repeat("u", 33), 32, "at most 32 bytes"},
		{"invalid utf-8", "\xff", 32, "valid UTF-8"},
		{"truncated utf-8", "ab\xe5\x82", 32, "valid UTF-8"},
		{"surrogate half", "a\xed\xa0\x80", 32, "valid UTF-8"},
		{"replacement char", "a\ufffd", 32, "U+FFFD"},
		{"NUL", "nul\x00user", 32, "control"},
		{"newline", "a\nb", 32, "control"},
		{"DEL", "a\x7f", 32, "control"},
		{"C1 control", "a\u0085b", 32, "control"},
		{"zero-width space", "alice\u200b", 32, "format"},
		{"zero-width joiner", "a\u200db", 32, "format"},
		{"bidi override", "a\u202eb", 32, "format"},
		{"BOM", "\ufeffa", 32, "format"},
		{"soft hyphen", "a\u00adb", 32, "format"},
		{"line separator", "a\u2028b", 32, "format"},
		{"trailing space", "pad763_2 ", 32, "whitespace"},
		{"leading space", " pad763_2", 32, "whitespace"},
		{"trailing no-break space", "u\u00a0", 32, "whitespace"},
		{"leading ideographic space", "\u3000u", 32, "whitespace"},
		{"only a space", " ", 32, "whitespace"},
		{"trailing tab", "u\t", 32, "control"},
	}
	for _, c := range cases {
		err := Check(c.id, c.max)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %q refused: %v", c.name, c.id, err)
		case c.want != "" && (err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %q: %v, want an ErrInvalid saying %q", c.name, c.id, err, c.want)
		case err != nil && len(c.id) > 3 && strings.Contains(err.Error(), c.id):
			t.Errorf("%s: the problem %q repeats the id", c.name, err)
		}
	}
}
