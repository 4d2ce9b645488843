package guard

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParseProxies(t *testing.T) {
	t.Parallel()
	p, err := ParseProxies([]string{" 127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8", "::ffff:192.168.0.0/112", ""})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.String(), "127.0.0.1/32,10.0.0.0/8,::1/128,fd00::/8,192.168.0.0/16"; got != want {
		t.Fatalf("proxies %s, want %s", got, want)
	}
	for addr, want := range map[string]bool{
		"127.0.0.1": true, "127.0.0.2": false, "10.200.3.4": true, "11.0.0.1": false, "::1": true,
		"fd12::5": true, "fe80::1": false, "192.168.7.7": true, "192.169.0.1": false,
	} {
		if got := p.Trusted(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Trusted(%s) = %t, want %t", addr, got, want)
		}
	}
	for _, bad := range [][]string{{"localhost"}, {"10.0.0.0/33"}, {"10.1.2.3/8"}, {"1.2.3.4:80"}, {"127.0.0.1", "nope"}, {"fe80::1%eth0"}} {
		if _, err := ParseProxies(bad); !errors.Is(err, ErrBadProxy) {
			t.Errorf("ParseProxies(%q) = %v, want ErrBadProxy", bad, err)
		}
	}
	if _, err := ParseProxies([]string{"a", "b/7"}); err == nil || !strings.Contains(err.Error(), `"a"`) || !strings.Contains(err.Error(), `"b/7"`) {
		t.Errorf("two bad entries: %v, want both named", err)
	}
}

// TestClientIP is the table of client IP resolution: who the client is for each peer
// and X-Forwarded-For.
func TestClientIP(t *testing.T) {
	t.Parallel()
	trusted, err := ParseProxies([]string{"127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		proxies Proxies
		peer    string
		xff     []string
		want    string
	}{
		{"no proxies: the peer", Proxies{}, "203.0.113.9:5555", nil, "203.0.113.9"},
		{"no proxies: XFF ignored", Proxies{}, "203.0.113.9:5555", []string{"198.51.100.1"}, "203.0.113.9"},
		{"untrusted peer spoofing XFF", trusted, "203.0.113.9:5555", []string{"198.51.100.1, 10.0.0.1"}, "203.0.113.9"},
		{"untrusted peer spoofing a trusted XFF", trusted, "203.0.113.9:5555", []string{"127.0.0.1"}, "203.0.113.9"},
		{"trusted peer without XFF: the proxy", trusted, "127.0.0.1:4000", nil, "127.0.0.1"},
		{"trusted peer, one hop", trusted, "127.0.0.1:4000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"client's own XFF left of the hop nginx appended", trusted, "127.0.0.1:4000", []string{"6.6.6.6, 198.51.100.1"}, "198.51.100.1"},
		{"trusted chain", trusted, "127.0.0.1:4000", []string{"198.51.100.1, 10.1.1.1 ,10.2.2.2"}, "198.51.100.1"},
		{"headers concatenated", trusted, "127.0.0.1:4000", []string{"6.6.6.6, 198.51.100.1", "10.1.1.1", "10.2.2.2"}, "198.51.100.1"},
		{"spoofed trusted entries left of the real client", trusted, "127.0.0.1:4000", []string{"10.9.9.9, 198.51.100.1"}, "198.51.100.1"},
		{"every hop trusted: the leftmost", trusted, "127.0.0.1:4000", []string{"10.3.3.3, 10.1.1.1"}, "10.3.3.3"},
		{"garbage at the right: the proxy", trusted, "127.0.0.1:4000", []string{"198.51.100.1, not-an-ip"}, "127.0.0.1"},
		{"garbage past a trusted hop: that hop", trusted, "127.0.0.1:4000", []string{"198.51.100.1, unknown, 10.1.1.1"}, "10.1.1.1"},
		{"garbage left of the client: not reached", trusted, "127.0.0.1:4000", []string{"<script>, 198.51.100.1"}, "198.51.100.1"},
		{"empty entries skipped", trusted, "127.0.0.1:4000", []string{"198.51.100.1,, ", ""}, "198.51.100.1"},
		{"ports in XFF", trusted, "127.0.0.1:4000", []string{"198.51.100.1:1234, 10.1.1.1:80"}, "198.51.100.1"},
		{"IPv6 peer and client", trusted, "[::1]:4000", []string{"2001:db8::7"}, "2001:db8::7"},
		{"bracketed IPv6 with port", trusted, "[::1]:4000", []string{"[2001:db8::7]:443"}, "2001:db8::7"},
		{"bracketed IPv6 alone", trusted, "[::1]:4000", []string{"[2001:db8::7]"}, "2001:db8::7"},
		{"IPv6 untrusted peer", trusted, "[2001:db8::1]:4000", []string{"198.51.100.1"}, "2001:db8::1"},
		{"IPv4-mapped peer is the IPv4 proxy", trusted, "[::ffff:127.0.0.1]:4000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"IPv4-mapped client unmapped", trusted, "127.0.0.1:4000", []string{"::ffff:198.51.100.1"}, "198.51.100.1"},
		{"zone dropped", trusted, "[fe80::1%eth0]:4000", nil, "fe80::1"},
	} {
		got, ok := c.proxies.ClientIP(c.peer, c.xff)
		if !ok || got != netip.MustParseAddr(c.want) {
			t.Errorf("%s: ClientIP(%s, %q) = %v, %t; want %s", c.name, c.peer, c.xff, got, ok, c.want)
		}
	}
	if _, ok := trusted.ClientIP("pipe", nil); ok {
		t.Error("a remote address that is no IP: ok, want not")
	}
}

// TestClientIPAllocates nothing for IPv4 clients, so turning the limit on costs little.
func TestClientIPAllocatesNothing(t *testing.T) {
	trusted, _ := ParseProxies([]string{"127.0.0.1", "10.0.0.0/8"})
	xff := []string{"6.6.6.6, 198.51.100.1, 10.1.1.1"}
	if n := testing.AllocsPerRun(100, func() {
		if a, _ := trusted.ClientIP("127.0.0.1:4000", xff); IPKey(a) != netip.MustParseAddr("198.51.100.1") {
			t.Fatal("wrong client")
		}
	}); n != 0 {
		t.Errorf("ClientIP allocates %v times, want 0", n)
	}
}

func TestIPKey(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"203.0.113.9":          "203.0.113.9",
		"::ffff:203.0.113.9":   "203.0.113.9",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2::/64":    "2001:db8:1:2::/64",
		"2001:db8:1:2::9/64":   "2001:db8:1:2::/64",
		" ::1 ":                "::/64",
	} {
		k, err := ParseIPKey(in)
		if err != nil || FormatIPKey(k) != want {
			t.Errorf("ParseIPKey(%q) = %s, %v; want %s", in, FormatIPKey(k), err, want)
		}
	}
	for _, bad := range []string{"", "x", "1.2.3.4/32", "10.0.0.0/8", "2001:db8::/48", "fe80::1%eth0", "1.2.3.4:80"} {
		if k, err := ParseIPKey(bad); err == nil {
			t.Errorf("ParseIPKey(%q) = %s, want an error", bad, FormatIPKey(k))
		}
	}
	a := IPKey(netip.MustParseAddr("2001:db8:1:2::1"))
	b := IPKey(netip.MustParseAddr("2001:db8:1:2:ffff::1"))
	c := IPKey(netip.MustParseAddr("2001:db8:1:3::1"))
	if a != b || a == c {
		t.Errorf("IPv6 keys: %s %s %s, want the first two one /64 and the third another", a, b, c)
	}
}
