package money

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Cents{"10": 1000, "10.5": 1050, "10.50": 1050, "0.01": 1, "200.00": 20000, "-3.20": -320, "99999999.99": 9999999999} {
		if got, err := Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "1.234", "1e3", "abc", "1.", ".5", "1,00", " 1", "100000000.00", "--1", "+1"} {
		if got, err := Parse(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q) = %d, %v; want ErrInvalid", in, got, err)
		}
	}
}

func TestStringAndJSON(t *testing.T) {
	t.Parallel()
	for c, want := range map[Cents]string{1019: "10.19", 1000: "10.00", 5: "0.05", 0: "0.00", -320: "-3.20"} {
		if c.String() != want {
			t.Errorf("%d renders %q, want %q", c, c.String(), want)
		}
		b, _ := json.Marshal(struct{ A Cents }{c})
		if string(b) != `{"A":`+want+`}` {
			t.Errorf("%d marshals to %s", c, b)
		}
	}
	var v struct{ A, B Cents }
	if err := json.Unmarshal([]byte(`{"A":"12.30","B":7.5}`), &v); err != nil || v.A != 1230 || v.B != 750 {
		t.Errorf("unmarshal: %+v %v", v, err)
	}
	if err := json.Unmarshal([]byte(`{"A":1.001}`), &v); err == nil {
		t.Error("three decimals accepted")
	}
}

func TestScan(t *testing.T) {
	t.Parallel()
	for src, want := range map[any]Cents{"200.00": 20000, "5.0000": 500, int64(7): 700, 0.1: 10} {
		var c Cents
		if err := c.Scan(src); err != nil || c != want {
			t.Errorf("Scan(%v) = %d, %v; want %d", src, c, err, want)
		}
	}
	var c Cents
	if err := c.Scan("1.005"); err == nil {
		t.Error("Scan accepted a third significant decimal")
	}
	if err := c.Scan([]byte("20.00")); err != nil || c != 2000 {
		t.Errorf("Scan bytes = %d, %v", c, err)
	}
}
