"""`larval.eap` sits below the IKE layers: it builds on errors, wire and crypto only, so
that IKE_AUTH can carry it without EAP knowing of IKE."""

from __future__ import annotations

from tests.ike.test_layers import _reaching


def test_eap_imports_only_errors_wire_crypto() -> None:
    assert _reaching("eap", {"errors", "wire", "crypto", "eap"}) == []


def test_the_check_sees_a_forbidden_import() -> None:
    assert _reaching("eap", {"eap"}) != []
