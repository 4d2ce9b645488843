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
// four significant decimals, negatives, exponents beyond ±40 and non-numbers are refused.
func ParseRate(s string) (Rate, error) {
	s = strings.TrimSpace(s)
	if strings.ContainsAny(s, "eE") {
		// SQLite may hand back a REAL rendered in exponent form: move the decimal point
		// exactly (a float would round 1e-400 to 0), then parse that text.
		plain, ok := expandExponent(s)
		if !ok {
			return 0, fmt.Errorf("parse rate %q: %w", s, ErrInvalidConfig)
		}
		s = plain
	}
	intPart, frac, _ := strings.Cut(s, ".")
	if intPart == "" && frac == "" {
		return 0, fmt.Errorf("parse rate %q: %w", s, ErrInvalidConfig)
	}
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
		if !isDigits(frac) {
			return 0, fmt.Errorf("parse rate %q: %w", s, ErrInvalidConfig)
		}
		f, _ = strconv.ParseInt(frac+strings.Repeat("0", rateDecimals-len(frac)), 10, 64)
	}
	return Rate(whole*RateScale + f), nil
}

// expandExponent rewrites an unsigned decimal in exponent form, "1.5E-4", as the same
// decimal without one, "0.00015".
func expandExponent(s string) (string, bool) {
	mantissa, exp, _ := strings.Cut(strings.ToLower(s), "e")
	e, err := strconv.Atoi(exp)
	whole, frac, _ := strings.Cut(mantissa, ".")
	if err != nil || e < -40 || e > 40 || whole+frac == "" || !isDigits(whole) || !isDigits(frac) {
		return "", false
	}
	digits, point := whole+frac, len(whole)+e
	if point < 0 {
		digits, point = strings.Repeat("0", -point)+digits, 0
	}
	if point > len(digits) {
		digits += strings.Repeat("0", point-len(digits))
	}
	return digits[:point] + "." + digits[point:], true
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
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
