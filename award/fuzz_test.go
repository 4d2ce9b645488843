package award

import (
	"math/big"
	"strings"
	"testing"

	"github.com/bigmarket/bigmarket/money"
)

// maxAmount is decimal(10,2)'s largest amount, the bound of money.Parse.
const maxAmount money.Cents = 99_999_999_99

// FuzzParseRange checks that a parsed credit range is ordered, positive, within
// decimal(10,2), exactly the yuan amounts written, and renders back to itself.
func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"1,100", " 0.01 , 0.99 ", "5,5", "0,10", "10,1", "1,2,3", "1.001,2", "-1,10", "99999999.99,99999999.99", "100000000,100000000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lo, hi, err := ParseRange(s)
		if err != nil {
			return
		}
		if lo <= 0 || hi < lo || hi > maxAmount {
			t.Fatalf("ParseRange(%q) = %s, %s: want 0 < lo ≤ hi ≤ %s", s, lo, hi, maxAmount)
		}
		a, b, _ := strings.Cut(s, ",")
		for _, side := range []struct {
			text string
			got  money.Cents
		}{{a, lo}, {b, hi}} {
			exact, ok := new(big.Rat).SetString(strings.TrimSpace(side.text))
			if !ok || exact.Cmp(big.NewRat(int64(side.got), 100)) != 0 {
				t.Fatalf("ParseRange(%q) = %s, %s: %q is not %s", s, lo, hi, side.text, side.got)
			}
		}
		if lo2, hi2, err := ParseRange(lo.String() + "," + hi.String()); err != nil || lo2 != lo || hi2 != hi {
			t.Fatalf("ParseRange(%q) = %s, %s, which parse back as %s, %s, %v", s, lo, hi, lo2, hi2, err)
		}
	})
}
