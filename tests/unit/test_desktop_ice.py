"""ICE candidates for the dev cloud's loopback VM addresses."""

from desktop_proxy.peers import drop_unreachable_candidates

OFFER = "\r\n".join([
    "v=0",
    "a=candidate:1 1 udp 2122260223 10.0.0.5 50000 typ host generation 0",
    "a=candidate:2 1 udp 2122194687 127.0.0.1 50001 typ host generation 0",
    "a=candidate:3 1 udp 2122129151 4f5a6b7c.local 50002 typ host generation 0",
    "a=candidate:4 1 udp 1686052607 203.0.113.9 50003 typ srflx raddr 10.0.0.5 rport 50000",
    "a=end-of-candidates",
]) + "\r\n"


def test_a_loopback_only_desktop_keeps_only_loopback_candidates():
    kept = drop_unreachable_candidates(OFFER, ["127.200.3.4"])
    assert "127.0.0.1 50001" in kept
    assert "10.0.0.5 50000" not in kept and ".local" not in kept and "203.0.113.9" not in kept
    assert "a=end-of-candidates" in kept


def test_a_desktop_with_a_real_address_keeps_everything():
    assert drop_unreachable_candidates(OFFER, ["10.20.0.7"]) == OFFER
    assert drop_unreachable_candidates(OFFER, []) == OFFER
