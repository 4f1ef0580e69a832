package netguard

import (
	"net/netip"
)

// Class names the kind of address an outbound connection would reach. Its
// value is what an error shows a user ("refers to a loopback address"), so
// it never needs the address itself.
type Class string

// The address classes of the special-purpose table below. Public is every
// address the table does not list.
const (
	Public        Class = "public"
	Loopback      Class = "loopback"
	Private       Class = "private"
	SharedCGNAT   Class = "shared (carrier-grade NAT)"
	UniqueLocal   Class = "unique local"
	LinkLocal     Class = "link-local"
	CloudMetadata Class = "cloud metadata"
	Unspecified   Class = "unspecified"
	Broadcast     Class = "broadcast"
	Multicast     Class = "multicast"
	Documentation Class = "documentation"
	Benchmarking  Class = "benchmarking"
	Transition    Class = "IPv4-in-IPv6 transition"
	Reserved      Class = "reserved"
)

// privateLike are the classes Policy.AllowPrivate lifts: addresses of the
// operator's own machine and networks. Link-local (where cloud metadata
// services live), metadata, and the non-unicast and reserved classes stay
// refused; only an explicit Policy.AllowCIDRs entry reaches them.
func (c Class) privateLike() bool {
	switch c {
	case Loopback, Private, SharedCGNAT, UniqueLocal:
		return true
	}
	return false
}

// special is the one table of address ranges the guard refuses, taken from
// IANA's IPv4 and IPv6 Special-Purpose Address Registries (every block not
// marked globally reachable) plus IPv4 multicast and the cloud metadata
// addresses outside link-local. docs/netguard.md lists it with reasons.
// The most specific (longest) matching prefix decides.
var special = []struct {
	prefix netip.Prefix
	class  Class
}{
	// IPv4.
	{pfx("0.0.0.0/8"), Unspecified}, // "this network"; 0.0.0.0 reaches the local host on Linux
	{pfx("10.0.0.0/8"), Private},
	{pfx("100.64.0.0/10"), SharedCGNAT},
	{pfx("100.100.100.200/32"), CloudMetadata}, // Alibaba Cloud metadata
	{pfx("127.0.0.0/8"), Loopback},
	{pfx("169.254.0.0/16"), LinkLocal}, // incl. 169.254.169.254 (AWS, GCP, Azure metadata)
	{pfx("172.16.0.0/12"), Private},
	{pfx("192.0.0.0/24"), Reserved}, // IETF protocol assignments
	{pfx("192.0.2.0/24"), Documentation},
	{pfx("192.88.99.0/24"), Transition}, // deprecated 6to4 relay anycast
	{pfx("192.168.0.0/16"), Private},
	{pfx("198.18.0.0/15"), Benchmarking},
	{pfx("198.51.100.0/24"), Documentation},
	{pfx("203.0.113.0/24"), Documentation},
	{pfx("224.0.0.0/4"), Multicast},
	{pfx("240.0.0.0/4"), Reserved},
	{pfx("255.255.255.255/32"), Broadcast},

	// IPv6. ::ffff:0:0/96 (IPv4-mapped) and 64:ff9b::/96 (NAT64) are not
	// here: their embedded IPv4 address is classified instead.
	{pfx("::/128"), Unspecified},
	{pfx("::1/128"), Loopback},
	{pfx("::/96"), Transition},        // deprecated IPv4-compatible addresses
	{pfx("64:ff9b:1::/48"), Reserved}, // local-use NAT64, translator-specific
	{pfx("100::/64"), Reserved},       // discard-only
	{pfx("100:0:0:1::/64"), Reserved}, // dummy prefix
	{pfx("2001::/23"), Reserved},      // IETF protocol assignments
	{pfx("2001::/32"), Transition},    // Teredo
	{pfx("2001:db8::/32"), Documentation},
	{pfx("2002::/16"), Transition}, // 6to4
	{pfx("3fff::/20"), Documentation},
	{pfx("5f00::/16"), Reserved}, // SRv6 SIDs
	{pfx("fc00::/7"), UniqueLocal},
	{pfx("fd00:ec2::254/128"), CloudMetadata}, // AWS metadata over IPv6
	{pfx("fe80::/10"), LinkLocal},
	{pfx("fec0::/10"), Reserved}, // deprecated site-local
	{pfx("ff00::/8"), Multicast},
}

var (
	nat64         = pfx("64:ff9b::/96")
	globalUnicast = pfx("2000::/3") // IPv6 outside it is unallocated or listed above
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// Classify returns the class of addr. IPv4-mapped IPv6 addresses and NAT64
// addresses (64:ff9b::/96) take the class of the IPv4 address they carry,
// so ::ffff:127.0.0.1 and 64:ff9b::7f00:1 are Loopback. IPv6 addresses
// outside 2000::/3 that the table does not name are Reserved.
func Classify(addr netip.Addr) Class {
	addr = addr.WithZone("").Unmap()
	if !addr.IsValid() {
		return Reserved
	}
	if addr.Is6() && nat64.Contains(addr) {
		b := addr.As16()
		return Classify(netip.AddrFrom4([4]byte(b[12:])))
	}
	best, class := -1, Public
	for _, s := range special {
		if s.prefix.Bits() > best && s.prefix.Contains(addr) {
			best, class = s.prefix.Bits(), s.class
		}
	}
	if class == Public && addr.Is6() && !globalUnicast.Contains(addr) {
		return Reserved
	}
	return class
}
