package sqlstore

import (
	"fmt"
	"unicode/utf16"
)

// Router maps a user id to its user database and table suffix exactly as big-market's
// router does, so an existing big-market deployment's rows are found where it put them:
// h is Java's String.hashCode of the id, the index is (DBs×Tables − 1) & (h ^ (h >>> 16)),
// the database is index / Tables and the table index % Tables.
type Router struct {
	DBs    int // user databases, a power of two
	Tables int // tables per database, a power of two
}

// NewRouter returns a Router, refusing counts that are not powers of two.
func NewRouter(dbs, tables int) (Router, error) {
	if dbs <= 0 || dbs&(dbs-1) != 0 || tables <= 0 || tables&(tables-1) != 0 {
		return Router{}, fmt.Errorf("shard router %dx%d: counts must be powers of two", dbs, tables)
	}
	return Router{DBs: dbs, Tables: tables}, nil
}

// Shard is where one user's rows live.
type Shard struct {
	DB     int    // 0-based index into the user databases; big-market names it DB+1 ("01")
	Table  int    // 0-based table index
	Suffix string // table suffix, "_000" …
}

// Route returns the user's shard.
func (r Router) Route(userID string) Shard {
	h := uint32(javaHashCode(userID))
	idx := int((h ^ (h >> 16)) & uint32(r.DBs*r.Tables-1))
	return Shard{DB: idx / r.Tables, Table: idx % r.Tables, Suffix: TableSuffix(idx % r.Tables)}
}

// javaHashCode is Java's String.hashCode: s[0]·31^(n−1) + … + s[n−1] over UTF-16 code
// units, in wrapping 32-bit arithmetic.
func javaHashCode(s string) int32 {
	var h int32
	for _, r := range s {
		if r >= 0x10000 {
			hi, lo := utf16.EncodeRune(r)
			h = 31*h + int32(hi)
			h = 31*h + int32(lo)
			continue
		}
		h = 31*h + int32(r)
	}
	return h
}
