package httpapi

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestIDUnmarshalJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want ID
		bad  string // the refusal's Value
	}{
		{in: `100006`, want: 100006},
		{in: `"100006"`, want: 100006},
		{in: `-1`, want: -1},
		{in: `"007"`, want: 7},
		{in: `"\u0031\u0030"`, want: 10},
		{in: `9223372036854775807`, want: 9223372036854775807},
		{in: `0`, want: 0},
		{in: `000000000000000042`, want: 42},
		{in: `999999999999999999`, want: 999999999999999999},
		{in: `1000000000000000000`, want: 1000000000000000000},
		{in: `null`},
		{in: `""`},
		{in: `1.5`, bad: "a number with a decimal point"},
		{in: `100006.0`, bad: "a number with a decimal point"},
		{in: `"1.5"`, bad: "a number with a decimal point"},
		{in: `1e5`, bad: "a number with an exponent"},
		{in: `"1E5"`, bad: "a number with an exponent"},
		{in: `"+5"`, bad: "a number with a '+' sign"},
		{in: `" 5"`, bad: "a string padded with blanks"},
		{in: `"5\n"`, bad: "a string padded with blanks"},
		{in: `"0x10"`, bad: "a hexadecimal number"},
		{in: `"-0X10"`, bad: "a hexadecimal number"},
		{in: `"abc"`, bad: "a non-numeric string"},
		{in: `"1 2"`, bad: "a non-numeric string"},
		{in: `"-"`, bad: "a non-numeric string"},
		{in: `"1_000"`, bad: "a non-numeric string"},
		{in: `9223372036854775808`, bad: "an out-of-range number"},
		{in: `"-9223372036854775809"`, bad: "an out-of-range number"},
		{in: `true`, bad: "a boolean"},
		{in: `{}`, bad: "an object"},
		{in: `[]`, bad: "an array"},
	} {
		id := ID(0)
		err := id.UnmarshalJSON([]byte(tc.in))
		if tc.bad == "" {
			if err != nil || id != tc.want {
				t.Errorf("ID(%s) = %d, %v; want %d", tc.in, id, err, tc.want)
			}
			continue
		}
		var typeErr *json.UnmarshalTypeError
		if !errors.As(err, &typeErr) || typeErr.Type != idType || typeErr.Value != tc.bad || id != 0 {
			t.Errorf("ID(%s) = %d, %v; want a type error %q", tc.in, id, err, tc.bad)
		}
	}
}
