// Package money is integer cents: amounts are exact inside, decimals only at the edges.
package money

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrInvalid means a text is not an amount with at most two decimals.
var ErrInvalid = errors.New("invalid amount")

// Cents is an amount of money in cents.
type Cents int64

// maxCents bounds parsed amounts to decimal(10,2)'s range.
const maxCents = 99_999_999_99

// Parse reads "10", "10.5", "10.50" or "-3.20" exactly; more than two decimals, exponents,
// blanks and amounts beyond decimal(10,2) are refused.
func Parse(s string) (Cents, error) {
	neg := strings.HasPrefix(s, "-")
	body := strings.TrimPrefix(s, "-")
	whole, frac, hasDot := strings.Cut(body, ".")
	if whole == "" || len(frac) > 2 || (hasDot && frac == "") || !digits(whole) || !digits(frac) {
		return 0, fmt.Errorf("amount %q: %w", s, ErrInvalid)
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || w > maxCents/100 {
		return 0, fmt.Errorf("amount %q: %w", s, ErrInvalid)
	}
	f, _ := strconv.ParseInt((frac + "00")[:2], 10, 64)
	c := Cents(w*100 + f)
	if c > maxCents {
		return 0, fmt.Errorf("amount %q: %w", s, ErrInvalid)
	}
	if neg {
		c = -c
	}
	return c, nil
}

func digits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// String renders c with two decimals: 1019 is "10.19".
func (c Cents) String() string {
	sign := ""
	v := int64(c)
	if v < 0 {
		sign, v = "-", -v
	}
	return fmt.Sprintf("%s%d.%02d", sign, v/100, v%100)
}

// MarshalJSON renders c as a JSON number with two decimals (10.00), as big-market's
// decimal columns do.
func (c Cents) MarshalJSON() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalJSON accepts a JSON number or string with at most two decimals.
func (c *Cents) UnmarshalJSON(b []byte) error {
	v, err := Parse(strings.Trim(string(b), `"`))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// Scan reads a decimal column from either SQL driver (text, bytes, or a number SQLite may
// hand back).
func (c *Cents) Scan(src any) error {
	switch v := src.(type) {
	case []byte:
		return c.scanText(string(v))
	case string:
		return c.scanText(v)
	case int64:
		*c = Cents(v * 100)
		return nil
	case float64:
		return c.scanText(strconv.FormatFloat(v, 'f', 2, 64))
	default:
		return fmt.Errorf("scan amount: unsupported type %T", src)
	}
}

// scanText parses stored decimals, whose scale may exceed two with trailing zeros.
func (c *Cents) scanText(s string) error {
	if whole, frac, ok := strings.Cut(s, "."); ok && len(frac) > 2 && strings.Trim(frac[2:], "0") == "" {
		s = whole + "." + frac[:2]
	}
	v, err := Parse(s)
	if err != nil {
		return err
	}
	*c = v
	return nil
}
