package rain

import (
	"fmt"
	"math/rand/v2"

	"github.com/bigmarket/bigmarket/money"
)

// MaxAmount bounds a cash prize's amount and a session's budget: the widest value of the
// DECIMAL(12,2) columns they are stored in. With at most MaxPrizes prizes, every sum of
// cash a session can hold stays far inside int64.
const MaxAmount money.Cents = 999_999_999_999

// checkSpec refuses a prize line that cannot be armed as asked. Fields of another kind
// must be zero, so that a request that mixes them up is refused rather than half read.
func checkSpec(p PrizeSpec) error {
	if p.Count < 1 || p.Count > MaxPrizes {
		return fmt.Errorf("%s prize count %d: want 1 to %d: %w", p.Kind, p.Count, MaxPrizes, ErrInvalid)
	}
	switch p.Kind {
	case KindCash:
		fixed := p.Amount > 0 && p.Min == 0 && p.Max == 0
		ranged := p.Amount == 0 && p.Min > 0 && p.Min <= p.Max
		switch {
		case p.SKU != 0 || p.AwardID != 0:
			return fmt.Errorf("cash prize names a sku or an award: %w", ErrInvalid)
		case !fixed && !ranged:
			return fmt.Errorf("cash prize: want an amount above 0, or 0 < min ≤ max, not both: %w", ErrInvalid)
		case p.Amount > MaxAmount || p.Max > MaxAmount:
			return fmt.Errorf("cash prize above %s: %w", MaxAmount, ErrInvalid)
		}
	case KindSKU:
		switch {
		case p.SKU <= 0:
			return fmt.Errorf("sku prize: sku %d: want above 0: %w", p.SKU, ErrInvalid)
		case p.Amount != 0 || p.Min != 0 || p.Max != 0 || p.AwardID != 0:
			return fmt.Errorf("sku prize names an amount or an award: %w", ErrInvalid)
		}
	case KindAward:
		switch {
		case p.AwardID <= 0:
			return fmt.Errorf("award prize: award id %d: want above 0: %w", p.AwardID, ErrInvalid)
		case p.Amount != 0 || p.Min != 0 || p.Max != 0 || p.SKU != 0:
			return fmt.Errorf("award prize names an amount or a sku: %w", ErrInvalid)
		}
	default:
		return fmt.Errorf("prize kind %q: want cash, sku or award: %w", p.Kind, ErrInvalid)
	}
	return nil
}

// checkSpecs checks every line and returns how many prizes they arm and the most cash
// they can give; together they may arm at most limit prizes.
func checkSpecs(specs []PrizeSpec, limit int) (count int, cash money.Cents, err error) {
	for _, p := range specs {
		if err := checkSpec(p); err != nil {
			return 0, 0, err
		}
		count += p.Count
		if count > limit {
			return 0, 0, fmt.Errorf("more than %d prizes: %w", limit, ErrInvalid)
		}
		cash += p.MaxCash()
	}
	return count, cash, nil
}

// Arm expands checked prize lines into prizes, indexed from first on in the lines' order.
// A ranged cash line draws each amount uniformly from [Min, Max] with rng, so a seeded rng
// arms the same prizes again.
func Arm(specs []PrizeSpec, first int, rng *rand.Rand) []Prize {
	n := 0
	for _, p := range specs {
		n += p.Count
	}
	prizes := make([]Prize, 0, n)
	for _, p := range specs {
		for range p.Count {
			pz := Prize{Index: first + len(prizes), Kind: p.Kind, SKU: p.SKU, AwardID: p.AwardID}
			if p.Kind == KindCash {
				pz.Amount = p.Amount
				if p.Ranged() {
					pz.Amount = p.Min + money.Cents(rng.Int64N(int64(p.Max-p.Min)+1))
				}
			}
			prizes = append(prizes, pz)
		}
	}
	return prizes
}
