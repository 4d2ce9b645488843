// Package seeded makes the generators of the splits (red packets, rain prizes) when no
// randomness is injected: each from a fresh crypto/rand seed.
package seeded

import (
	crand "crypto/rand"
	"encoding/binary"
	"math/rand/v2"
)

// Rand returns a PCG generator seeded from crypto/rand.
func Rand() *rand.Rand {
	var seed [16]byte
	_, _ = crand.Read(seed[:])
	return rand.New(rand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:])))
}
