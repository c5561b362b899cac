"""One-line renderings (`larval.ike.render`) with each version's names: what the log and
the demo's ladder print, exactly."""

from __future__ import annotations

from larval.crypto.ike_transforms import DhId, EncrId, IntegId, PrfId, Transform, TransformType
from larval.ike.render import PayloadNames, bracketed, grouped, suite_text, type_number
from larval.ikev1 import payloads as v1
from larval.ikev1 import render as v1_render
from larval.ikev1.constants import ExchangeType as V1Exchange
from larval.ikev1.constants import NotifyType as V1Notify
from larval.ikev1.constants import PayloadType as V1Type
from larval.ikev1.message import IkeV1Message
from larval.ikev2 import payloads as v2
from larval.ikev2 import render as v2_render
from larval.ikev2.constants import ExchangeType, NotifyType, PayloadType, ProtocolId
from larval.ikev2.message import IkeMessage

NAT_D = NotifyType.NAT_DETECTION_SOURCE_IP


def test_bracketed_and_grouped() -> None:
    assert bracketed([]) == "[ ]"
    assert bracketed(["SA", "KE"]) == "[ SA KE ]"
    names = ["SA", "N(NAT_D)", "N(NAT_D)", "N(NAT_D)", "N(COOKIE)", "V", "V"]
    assert grouped(names) == ["SA", "N(NAT_D)x3", "N(COOKIE)", "V", "V"]


def test_payload_names_take_own_text_then_the_table_then_the_fallback() -> None:
    names = PayloadNames(
        {PayloadType.NONCE: "No"},
        lambda p: "mine" if isinstance(p, v2.VendorIdPayload) else None,
        type_number,
    )
    payloads = [v2.VendorIdPayload(b"v"), v2.NoncePayload(bytes(16)), v2.KePayload(31, b"k")]
    assert names.names(payloads) == ["mine", "No", "34"]


def test_ikev2_log_names() -> None:
    message = IkeMessage(
        bytes(8), bytes(8), ExchangeType.IKE_SA_INIT, True, False, 0,
        (
            v2.NoncePayload(bytes(16)),
            v2.NotifyPayload(ProtocolId.NONE, NotifyType.COOKIE),
            v2.DeletePayload(ProtocolId.IKE),
            v2.VendorIdPayload(b"v"),
            v2.SkfPayload(2, 3, b"x"),
            v2.KePayload(31, b"k"),
        ),
    )  # fmt: skip
    assert v2_render.message_names(message) == "[ No N(COOKIE) D V SKF(2/3) KE ]"
    assert v2_render.message_names(IkeMessage(bytes(8), bytes(8), ExchangeType(37), 1, 0, 1)) == (
        "[ ]"
    )


def test_ikev2_ladder_label_of_an_ike_sa_init() -> None:
    nat = v2.NotifyPayload(ProtocolId.NONE, NAT_D, data=bytes(20))
    payloads = (v2.KePayload(31, bytes(32)), v2.NoncePayload(bytes(32)), nat, nat)
    request = IkeMessage(bytes(8), bytes(8), ExchangeType.IKE_SA_INIT, True, False, 0, payloads)
    response = IkeMessage(bytes(8), bytes(8), ExchangeType.IKE_SA_INIT, False, True, 0, payloads)
    assert v2_render.ladder_label(request.encode()) == "IKE_SA_INIT request #0 (KE, Ni, N(NAT_D)x2)"
    assert v2_render.ladder_label(response.encode()) == (
        "IKE_SA_INIT response #0 (KE, Nr, N(NAT_D)x2)"
    )
    sealed = IkeMessage(
        bytes(8), bytes(8), ExchangeType.IKE_AUTH, True, False, 1, (v2.SkPayload(b"sealed"),)
    )
    assert v2_render.ladder_label(sealed.encode()) == "IKE_AUTH request #1 SK{…}"
    assert v2_render.ladder_label(b"short") == "IKE? (5 bytes)"


def test_ikev1_log_and_ladder_names() -> None:
    payloads = (
        v1.HashPayload(bytes(20)),
        v1.NoncePayload(bytes(16)),
        v1.NotifyPayload(V1Notify.INITIAL_CONTACT),
        v1.NatDPayload(bytes(20)),
        v1.KePayload(b"k"),
    )
    assert v1_render.payload_names(payloads) == "HASH No N(INITIAL_CONTACT) NAT-D KE"
    main_mode = IkeV1Message(bytes(8), bytes(8), V1Exchange.MAIN_MODE, 0, payloads)
    assert v1_render.ladder_label(main_mode.encode()) == "MAIN_MODE (HASH, Nonce, N, NAT-D, KE)"
    quick = IkeV1Message(bytes(8), bytes(8), V1Exchange.QUICK_MODE, 0x1234, payloads[:1])
    assert v1_render.ladder_label(quick.encode()) == "QUICK_MODE #00001234 (HASH)"
    private = (v1.UnknownPayload(V1Type(200), b""),)
    unknown = IkeV1Message(bytes(8), bytes(8), V1Exchange.INFORMATIONAL, 0, private)
    assert v1_render.ladder_label(unknown.encode()) == "INFORMATIONAL (200)"


def test_suite_text_names_each_transform() -> None:
    suite = (
        Transform(TransformType.ENCR, EncrId.AES_CBC, 128),
        Transform(TransformType.PRF, PrfId.HMAC_SHA2_256),
        Transform(TransformType.INTEG, IntegId.HMAC_SHA2_256_128),
        Transform(TransformType.DH, DhId.CURVE25519),
    )
    assert suite_text(suite) == "AES_CBC_128/PRF_HMAC_SHA2_256/HMAC_SHA2_256_128/CURVE25519"
