package redpacket

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/bigmarket/bigmarket/money"
)

// FuzzSplit checks every split of any total and count: exact sum, every item at least
// a cent, one item per count, or ErrInvalid for a request it cannot serve.
func FuzzSplit(f *testing.F) {
	f.Add(int64(10000), 10, false, uint64(1))
	f.Add(int64(10), 10, false, uint64(2))
	f.Add(int64(10000), 3, true, uint64(3))
	f.Add(int64(math.MaxInt64), 7, false, uint64(4))
	f.Add(int64(-1), 0, false, uint64(5))
	f.Fuzz(func(t *testing.T, total int64, count int, fixed bool, seed uint64) {
		if count > 10_000 {
			t.Skip("callers bound count")
		}
		mode := ModeRandom
		if fixed {
			mode = ModeFixed
		}
		items, err := Split(money.Cents(total), count, mode, rand.New(rand.NewPCG(seed, seed)))
		valid := count >= 1 && total >= int64(count) && (!fixed || total%int64(count) == 0)
		if !valid {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Split(%d, %d, %q) = %v, want ErrInvalid", total, count, mode, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Split(%d, %d, %q): %v", total, count, mode, err)
		}
		checkSplit(t, items, money.Cents(total), count)
	})
}
