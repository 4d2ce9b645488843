package strategy

import (
	"math/big"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseRate checks that a parsed rate is the exact value of a plain decimal (or a
// decimal in exponent form), never negative, never more precise than four decimals, and
// that its rendering parses back to itself.
func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"0.0003", "1", "0.5", "1.0E-4", " 0.8000 ", "0.00001", "-0.1", "+1", "1e400", "0x1p-2", ".", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err != nil {
			return
		}
		if r < 0 {
			t.Fatalf("ParseRate(%q) = %d: negative", s, r)
		}
		if d := r.Decimals(); d < 0 || d > rateDecimals {
			t.Fatalf("ParseRate(%q) = %s with %d decimals", s, r, d)
		}
		if back, err := ParseRate(r.String()); err != nil || back != r {
			t.Fatalf("ParseRate(%q) = %s, which parses back as %d, %v", s, r, back, err)
		}
		text := strings.TrimSpace(s)
		if strings.Trim(text, "0123456789.eE+-") != "" || strings.HasPrefix(text, "+") {
			t.Fatalf("ParseRate(%q) = %s: not a decimal", s, r)
		}
		mantissa, exp, hasExp := strings.Cut(strings.ToLower(text), "e")
		if hasExp {
			// Keep big.Rat's work small: the exact value of 1e99999999 is not needed.
			if e, err := strconv.Atoi(exp); err != nil || e < -40 || e > 40 {
				t.Fatalf("ParseRate(%q) = %s: exponent %q should be refused", s, r, exp)
			}
		}
		if !strings.ContainsAny(mantissa, "0123456789") {
			t.Fatalf("ParseRate(%q) = %s: no digits", s, r)
		}
		exact, ok := new(big.Rat).SetString(text)
		if !ok {
			t.Fatalf("ParseRate(%q) = %s, but it is not a number", s, r)
		}
		if want := big.NewRat(int64(r), RateScale); exact.Cmp(want) != 0 {
			t.Fatalf("ParseRate(%q) = %s, want exactly %s", s, r, exact.FloatString(8))
		}
	})
}

// FuzzParseBlacklist checks that a parsed rule_blacklist has a positive award id and
// only trimmed, non-empty user ids that the value lists.
func FuzzParseBlacklist(f *testing.F) {
	for _, s := range []string{"101:user001,user002", " 101 : a , b ,, ", "0:a", "101", ":a", "101:", "-5:x", "9223372036854775808:a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := parseBlacklist(s)
		if err != nil {
			return
		}
		if b.awardID <= 0 {
			t.Fatalf("parseBlacklist(%q): award id %d", s, b.awardID)
		}
		_, list, _ := strings.Cut(s, ":")
		listed := strings.Split(list, ",")
		for u := range b.users {
			if u == "" || u != strings.TrimSpace(u) || strings.Contains(u, ",") {
				t.Fatalf("parseBlacklist(%q): user %q", s, u)
			}
			if !slices.ContainsFunc(listed, func(l string) bool { return strings.TrimSpace(l) == u }) {
				t.Fatalf("parseBlacklist(%q): user %q is not listed", s, u)
			}
		}
		for _, l := range listed {
			if u := strings.TrimSpace(l); u != "" {
				if _, ok := b.users[u]; !ok {
					t.Fatalf("parseBlacklist(%q): listed user %q missing", s, u)
				}
			}
		}
	})
}

// fuzzRates are the awards a fuzzed rule_weight value may name; 109 has a zero rate.
var fuzzRates = map[int]Rate{101: 8000, 102: 1000, 103: 500, 104: 300, 105: 195, 106: 5, 109: 0}

// FuzzParseTiers checks that parsed rule_weight tiers have distinct non-negative
// thresholds in increasing order, name only the strategy's awards, and draw only among
// their own awards with an exact alias table.
func FuzzParseTiers(f *testing.F) {
	for _, s := range []string{"60:102,103 200:106,107 1000:105", "4000:102,103,104 5000:101", "1:109", "10:101 10:102", "-1:101", "", "5:101,,102", "+7:101\t3:106"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tiers, err := parseTiers(s, fuzzRates)
		if err != nil {
			return
		}
		if len(tiers) == 0 {
			t.Fatalf("parseTiers(%q): no tier and no error", s)
		}
		for i, tier := range tiers {
			if tier.Threshold < 0 || (i > 0 && tier.Threshold <= tiers[i-1].Threshold) {
				t.Fatalf("parseTiers(%q): thresholds not increasing: %+v", s, tiers)
			}
			if len(tier.AwardIDs) == 0 || tier.table == nil {
				t.Fatalf("parseTiers(%q): tier %d without awards or table", s, tier.Threshold)
			}
			for _, id := range tier.AwardIDs {
				if _, ok := fuzzRates[id]; !ok {
					t.Fatalf("parseTiers(%q): award %d is not in the strategy", s, id)
				}
			}
			slots, mass := tier.table.Slots(), tier.table.mass()
			n := int64(len(tier.table.awards))
			for id, sl := range slots {
				if !slices.Contains(tier.AwardIDs, id) || sl <= 0 || fuzzRates[id] == 0 {
					t.Fatalf("parseTiers(%q): tier %d draws award %d with %d slots", s, tier.Threshold, id, sl)
				}
				if mass[id] != sl*n {
					t.Fatalf("parseTiers(%q): tier %d award %d has mass %d, want %d", s, tier.Threshold, id, mass[id], sl*n)
				}
			}
		}
	})
}

// FuzzParseLuckAward checks that a parsed rule_luck_award has a positive award id and
// keeps the rest of the value as written, so that rendering it again parses the same.
func FuzzParseLuckAward(f *testing.F) {
	for _, s := range []string{"101:1,100", "101", " 102:0.5,0.5 ", "0:1,100", "abc", ":1,100", "101:", "101:1:2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parseLuckAward(s)
		if err != nil {
			return
		}
		if p.AwardID <= 0 {
			t.Fatalf("parseLuckAward(%q): award id %d", s, p.AwardID)
		}
		text := strconv.Itoa(p.AwardID)
		if p.Value != "" {
			text += ":" + p.Value
		}
		if again, err := parseLuckAward(text); err != nil || again != p {
			t.Fatalf("parseLuckAward(%q) = %+v, but %q parses as %+v, %v", s, p, text, again, err)
		}
		if !strings.Contains(s, p.Value) {
			t.Fatalf("parseLuckAward(%q): value %q is not from the input", s, p.Value)
		}
	})
}
