package sqlstore

import "testing"

func TestRouterMatchesBigMarket(t *testing.T) {
	t.Parallel()
	r, err := NewRouter(2, 4)
	if err != nil {
		t.Fatal(err)
	}
	// DATA.md's expected routes: database number (1-based) and table suffix.
	for user, want := range map[string]struct {
		db     int
		suffix string
	}{
		"xiaofuge": {1, "_001"}, "user001": {2, "_000"}, "user002": {2, "_001"},
		"user003": {1, "_002"}, "xfg": {1, "_000"}, "system": {1, "_003"},
	} {
		got := r.Route(user)
		if got.DB+1 != want.db || got.Suffix != want.suffix {
			t.Errorf("%s routes to %02d/%s, want %02d/%s", user, got.DB+1, got.Suffix, want.db, want.suffix)
		}
	}
}

func TestJavaHashCode(t *testing.T) {
	t.Parallel()
	// Values printed by Java 17's "…".hashCode() on this machine (surrogate pairs and
	// 32-bit overflow included).
	for s, want := range map[string]int32{
		"": 0, "a": 97, "hello": 99162322, "xiaofuge": 265141580, "polygenelubricants": -2147483648,
		"中文": 646394, "😀": 1772899, "user001": -147179898,
	} {
		if got := javaHashCode(s); got != want {
			t.Errorf("javaHashCode(%q) = %d, want %d", s, got, want)
		}
	}
}

func TestRouterRefusesBadCounts(t *testing.T) {
	t.Parallel()
	for _, c := range [][2]int{{0, 4}, {3, 4}, {2, 0}, {2, 6}} {
		if _, err := NewRouter(c[0], c[1]); err == nil {
			t.Errorf("NewRouter(%d, %d) accepted", c[0], c[1])
		}
	}
	r, _ := NewRouter(1, 1)
	if s := r.Route("anyone"); s.DB != 0 || s.Suffix != "_000" {
		t.Errorf("1x1 routes to %+v", s)
	}
}
