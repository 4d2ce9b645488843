package rain

import "testing"

func TestMemberRoundTrip(t *testing.T) {
	for _, p := range []Prize{
		{Index: 0, Kind: KindCash, Amount: 523},
		{Index: 17, Kind: KindSKU, SKU: 9011},
		{Index: 999999, Kind: KindAward, AwardID: 101},
	} {
		got, err := ParseMember(p.Member())
		if err != nil || got != p {
			t.Errorf("ParseMember(%q) = %+v, %v; want %+v", p.Member(), got, err, p)
		}
	}
	for _, s := range []string{"", "1:c", "x:c:1", "1:z:1", "1:c:0", "-1:c:5", "1:c:5:6"} {
		if _, err := ParseMember(s); err == nil {
			t.Errorf("ParseMember(%q) accepted", s)
		}
	}
}
