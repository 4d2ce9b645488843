package strategy

import (
	"fmt"
	"strconv"
	"strings"
)

// RateScale is the number of Rate units in 1: award_rate is decimal(6,4).
const RateScale = 10000

// rateDecimals is the number of decimals a Rate can hold.
const rateDecimals = 4

// Rate is an award rate in ten-thousandths (0.0003 is Rate(3)), so that probability tables
// are built with exact integer arithmetic.
type Rate int64

// ParseRate parses a decimal such as "0.0003", "1", "0.5" or "1.0E-4" exactly. More than
// four significant decimals, negatives and non-numbers are refused.
func ParseRate(s string) (Rate, error) {
	s = strings.TrimSpace(s)
	if strings.ContainsAny(s, "eE") {
		// SQLite may hand back a REAL rendered in exponent form; normalise it through
		// strconv with the exact decimal digits, then parse that text.
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, fmt.Errorf("parse rate %q: %w", s, ErrInvalidConfig)
		}
		s = strconv.FormatFloat(f, 'f', -1, 64)
	}
	intPart, frac, _ := strings.Cut(s, ".")
	if intPart == "" {
		intPart = "0"
	}
	frac = strings.TrimRight(frac, "0")
	if len(frac) > rateDecimals || strings.HasPrefix(intPart, "-") || strings.HasPrefix(intPart, "+") {
		return 0, fmt.Errorf("parse rate %q: %w", s, ErrInvalidConfig)
	}
	whole, err := strconv.ParseInt(intPart, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("parse rate %q: %w", s, ErrInvalidConfig)
	}
	var f int64
	if frac != "" {
		for _, c := range frac {
			if c < '0' || c > '9' {
				return 0, fmt.Errorf("parse rate %q: %w", s, ErrInvalidConfig)
			}
		}
		f, _ = strconv.ParseInt(frac+strings.Repeat("0", rateDecimals-len(frac)), 10, 64)
	}
	return Rate(whole*RateScale + f), nil
}

// Decimals is the number of significant decimals of r: 0.0300 has 2, 0.0003 has 4.
func (r Rate) Decimals() int {
	d := rateDecimals
	for v := int64(r); d > 0 && v%10 == 0; v /= 10 {
		d--
	}
	return d
}

// String renders r with four decimals, as decimal(6,4) does.
func (r Rate) String() string {
	return fmt.Sprintf("%d.%04d", int64(r)/RateScale, int64(r)%RateScale)
}
