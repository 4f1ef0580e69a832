package netguard

import (
	"errors"
	"net/netip"
	"testing"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want Class
	}{
		// IPv4.
		{"8.8.8.8", Public},
		{"1.1.1.1", Public},
		{"93.184.215.14", Public},
		{"0.0.0.0", Unspecified},
		{"0.1.2.3", Unspecified},
		{"10.0.0.1", Private},
		{"10.255.255.255", Private},
		{"100.63.255.255", Public},
		{"100.64.0.1", SharedCGNAT},
		{"100.127.255.255", SharedCGNAT},
		{"100.128.0.0", Public},
		{"100.100.100.200", CloudMetadata},
		{"127.0.0.1", Loopback},
		{"127.255.255.254", Loopback},
		{"169.254.169.254", LinkLocal},
		{"169.254.0.1", LinkLocal},
		{"172.15.255.255", Public},
		{"172.16.0.1", Private},
		{"172.31.255.255", Private},
		{"172.32.0.0", Public},
		{"192.0.0.8", Reserved},
		{"192.0.2.1", Documentation},
		{"192.88.99.1", Transition},
		{"192.168.1.1", Private},
		{"198.18.0.1", Benchmarking},
		{"198.19.255.255", Benchmarking},
		{"198.20.0.0", Public},
		{"198.51.100.7", Documentation},
		{"203.0.113.9", Documentation},
		{"224.0.0.1", Multicast},
		{"239.255.255.250", Multicast},
		{"240.0.0.1", Reserved},
		{"255.255.255.254", Reserved},
		{"255.255.255.255", Broadcast},
		// IPv6.
		{"2606:4700:4700::1111", Public},
		{"2001:4860:4860::8888", Public},
		{"::", Unspecified},
		{"::1", Loopback},
		{"::ffff:127.0.0.1", Loopback},
		{"::ffff:7f00:1", Loopback},
		{"::ffff:10.0.0.1", Private},
		{"::ffff:169.254.169.254", LinkLocal},
		{"::ffff:8.8.8.8", Public},
		{"::127.0.0.1", Transition}, // IPv4-compatible
		{"::8.8.8.8", Transition},
		{"64:ff9b::7f00:1", Loopback}, // NAT64 of 127.0.0.1
		{"64:ff9b::a9fe:a9fe", LinkLocal},
		{"64:ff9b::808:808", Public},
		{"64:ff9b:1::1", Reserved},
		{"100::1", Reserved},
		{"2001::1", Transition}, // Teredo
		{"2001:10::1", Reserved},
		{"2001:db8::1", Documentation},
		{"2002:7f00:1::1", Transition}, // 6to4
		{"3fff::1", Documentation},
		{"5f00::1", Reserved},
		{"fc00::1", UniqueLocal},
		{"fd12:3456::1", UniqueLocal},
		{"fd00:ec2::254", CloudMetadata},
		{"fe80::1", LinkLocal},
		{"fe80::1%eth0", LinkLocal},
		{"febf::1", LinkLocal},
		{"fec0::1", Reserved},
		{"ff02::1", Multicast},
		{"4000::1", Reserved}, // unallocated, outside 2000::/3
		{"1000::1", Reserved},
	} {
		if got := Classify(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("Classify(%s) = %q, want %q", tc.addr, got, tc.want)
		}
	}
	if got := Classify(netip.Addr{}); got != Reserved {
		t.Errorf("invalid address: %q", got)
	}
}

// TestSpecialTableIsConsistent: every prefix is canonical (no host bits),
// so the table means what it reads.
func TestSpecialTableIsConsistent(t *testing.T) {
	seen := map[netip.Prefix]bool{}
	for _, s := range special {
		if s.prefix != s.prefix.Masked() {
			t.Errorf("%s has host bits set", s.prefix)
		}
		if seen[s.prefix] {
			t.Errorf("%s listed twice", s.prefix)
		}
		seen[s.prefix] = true
		if s.class == Public {
			t.Errorf("%s listed as public", s.prefix)
		}
	}
}

func TestPolicyAllowed(t *testing.T) {
	internal := netip.MustParsePrefix("10.1.2.0/24")
	meta := netip.MustParsePrefix("169.254.169.254/32")
	for _, tc := range []struct {
		name   string
		policy Policy
		addr   string
		want   Class // "" allowed
	}{
		{"public", Policy{}, "8.8.8.8", ""},
		{"loopback refused", Policy{}, "127.0.0.1", Loopback},
		{"mapped loopback refused", Policy{}, "::ffff:127.0.0.1", Loopback},
		{"private refused", Policy{}, "192.168.0.10", Private},
		{"metadata refused", Policy{}, "169.254.169.254", LinkLocal},
		{"allow-private: loopback", Policy{AllowPrivate: true}, "127.0.0.1", ""},
		{"allow-private: ::1", Policy{AllowPrivate: true}, "::1", ""},
		{"allow-private: rfc1918", Policy{AllowPrivate: true}, "10.0.0.1", ""},
		{"allow-private: cgnat", Policy{AllowPrivate: true}, "100.64.1.1", ""},
		{"allow-private: ula", Policy{AllowPrivate: true}, "fd00::1", ""},
		{"allow-private: still not link-local", Policy{AllowPrivate: true}, "169.254.169.254", LinkLocal},
		{"allow-private: still not v6 metadata", Policy{AllowPrivate: true}, "fd00:ec2::254", CloudMetadata},
		{"allow-private: still not alibaba metadata", Policy{AllowPrivate: true}, "100.100.100.200", CloudMetadata},
		{"allow-private: still not unspecified", Policy{AllowPrivate: true}, "0.0.0.0", Unspecified},
		{"allow-private: still not multicast", Policy{AllowPrivate: true}, "224.0.0.1", Multicast},
		{"cidr allows", Policy{AllowCIDRs: []netip.Prefix{internal}}, "10.1.2.3", ""},
		{"cidr allows mapped", Policy{AllowCIDRs: []netip.Prefix{internal}}, "::ffff:10.1.2.3", ""},
		{"cidr is exact", Policy{AllowCIDRs: []netip.Prefix{internal}}, "10.1.3.1", Private},
		{"cidr reaches link-local", Policy{AllowCIDRs: []netip.Prefix{meta}}, "169.254.169.254", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.policy.Allowed(netip.MustParseAddr(tc.addr))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ge *Error
			if !errors.As(err, &ge) || !errors.Is(err, ErrRefused) || ge.Class != tc.want {
				t.Fatalf("error %v, want refused %q", err, tc.want)
			}
		})
	}
}
