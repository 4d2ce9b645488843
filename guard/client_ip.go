package guard

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Proxies are the trusted proxies (BIGMARKET_TRUSTED_PROXIES): the peers whose
// X-Forwarded-For is believed. The zero value trusts nobody, so every client is the
// connection's remote address.
type Proxies struct {
	prefixes []netip.Prefix
}

// ErrBadProxy is an entry of the trusted proxy list that is neither an IP nor a CIDR.
var ErrBadProxy = errors.New("bad trusted proxy")

// ParseProxies reads a list of IPs and CIDRs ("127.0.0.1", "10.0.0.0/8", "::1",
// "fd00::/8"). A CIDR with host bits set ("10.1.2.3/8") is refused: it is more likely a
// typo than a wish to trust the whole network.
func ParseProxies(list []string) (Proxies, error) {
	var p Proxies
	var errs []error
	for _, raw := range list {
		entry := strings.TrimSpace(raw)
		if entry == "" {
			continue
		}
		if strings.Contains(entry, "/") {
			pfx, err := netip.ParsePrefix(entry)
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("%q: not a CIDR such as 10.0.0.0/8: %w", entry, ErrBadProxy))
			case pfx != pfx.Masked():
				errs = append(errs, fmt.Errorf("%q: host bits set (did you mean %s?): %w", entry, pfx.Masked(), ErrBadProxy))
			default:
				p.prefixes = append(p.prefixes, unmapPrefix(pfx))
			}
			continue
		}
		addr, err := netip.ParseAddr(entry)
		if err != nil || addr.Zone() != "" {
			errs = append(errs, fmt.Errorf("%q: not an IP address such as 127.0.0.1: %w", entry, ErrBadProxy))
			continue
		}
		addr = addr.Unmap()
		p.prefixes = append(p.prefixes, netip.PrefixFrom(addr, addr.BitLen()))
	}
	if len(errs) > 0 {
		return Proxies{}, errors.Join(errs...)
	}
	return p, nil
}

// unmapPrefix turns ::ffff:a.b.c.d/n, an IPv4 network written as IPv6, into a.b.c.d/(n-96),
// as addresses are unmapped before they are looked up.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}

// Trusted reports whether addr is a trusted proxy.
func (p Proxies) Trusted(addr netip.Addr) bool {
	for _, pfx := range p.prefixes {
		if pfx.Contains(addr) {
			return true
		}
	}
	return false
}

// String lists the proxies, as the config shows them.
func (p Proxies) String() string {
	s := make([]string, len(p.prefixes))
	for i, pfx := range p.prefixes {
		s[i] = pfx.String()
	}
	return strings.Join(s, ",")
}

// ClientIP is the address of the client a request came from. remoteAddr is the
// connection's peer (http.Request.RemoteAddr, host:port); xff the X-Forwarded-For header
// values in the order received (several headers are one list, concatenated).
//
// An untrusted peer is the client whatever it sends: its X-Forwarded-For may say
// anything. A trusted peer passes on the list, each proxy appending the address it was
// called from; it is walked from the right, past trusted proxies, and the first address
// that is not one is the client (RFC 7239 section 7.4's practice). When an entry cannot
// be read (garbage, "unknown", an obfuscated node), the walk stops there and the client is
// the last address read, a trusted proxy: what lies beyond it cannot be believed, and the
// proxy is accountable for what it forwards. When every entry is trusted, the leftmost is
// the client. ok is false only when remoteAddr itself is no IP (never with net/http).
func (p Proxies) ClientIP(remoteAddr string, xff []string) (addr netip.Addr, ok bool) {
	peer, ok := parseHop(remoteAddr)
	if !ok {
		return netip.Addr{}, false
	}
	if len(p.prefixes) == 0 || !p.Trusted(peer) {
		return peer, true
	}
	client := peer
	for i := len(xff) - 1; i >= 0; i-- {
		list := xff[i]
		for list != "" {
			var hop string
			if j := strings.LastIndexByte(list, ','); j >= 0 {
				hop, list = list[j+1:], list[:j]
			} else {
				hop, list = list, ""
			}
			hop = strings.TrimSpace(hop)
			if hop == "" {
				continue // "a,,b" or a trailing comma: no hop, nothing claimed
			}
			addr, ok := parseHop(hop)
			if !ok {
				return client, true
			}
			client = addr
			if !p.Trusted(addr) {
				return client, true
			}
		}
	}
	return client, true
}

// parseHop reads one address as a peer or an X-Forwarded-For entry writes it: an IP, an
// IP with a port (1.2.3.4:80, [2001:db8::1]:80), or a bracketed IPv6 alone; IPv4-mapped
// IPv6 is unmapped and a zone dropped, so that one client has one form.
func parseHop(s string) (netip.Addr, bool) {
	var addr netip.Addr
	var err error
	// By shape, so that the usual forms parse at the first try (a failed parse allocates
	// its error): IPv4 with a port has one colon, IPv6 at least two unless bracketed.
	switch {
	case len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']':
		addr, err = netip.ParseAddr(s[1 : len(s)-1])
	case strings.HasPrefix(s, "[") || strings.Count(s, ":") == 1:
		var ap netip.AddrPort
		ap, err = netip.ParseAddrPort(s)
		addr = ap.Addr()
	default:
		addr, err = netip.ParseAddr(s)
	}
	if err != nil {
		return netip.Addr{}, false
	}
	return addr.Unmap().WithZone(""), true
}

// IPKey is the key a client address is limited and blacklisted by: an IPv4 address
// itself, an IPv6 address's /64 (one subscriber's network: a host given a /64 can use any
// of its 2^64 addresses, so per address it could never be limited), as its first address.
// It is comparable and costs no allocation.
func IPKey(addr netip.Addr) netip.Addr {
	addr = addr.Unmap().WithZone("")
	if addr.Is6() {
		p, _ := addr.Prefix(64) // a valid IPv6 address always has a /64
		return p.Addr()
	}
	return addr
}

// FormatIPKey renders a key as operators name it: "203.0.113.9" or "2001:db8::/64".
func FormatIPKey(key netip.Addr) string {
	if key.Is6() {
		return netip.PrefixFrom(key, 64).String()
	}
	return key.String()
}

// ParseIPKey reads an address or an IPv6 /64 as an operator names a client ("203.0.113.9",
// "2001:db8::1", "2001:db8::/64") and returns its IPKey.
func ParseIPKey(s string) (netip.Addr, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil || !p.Addr().Is6() || p.Addr().Is4In6() || p.Bits() != 64 || p.Addr().Zone() != "" {
			return netip.Addr{}, fmt.Errorf("%q: want an IP address or an IPv6 /64", s)
		}
		return IPKey(p.Addr()), nil
	}
	addr, err := netip.ParseAddr(s)
	if err != nil || addr.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q: want an IP address or an IPv6 /64", s)
	}
	return IPKey(addr), nil
}
