"""Both IKE versions' errors below one root: a protocol error of either carries its own
version's notification, and one `except` catches both."""

from __future__ import annotations

import pytest

from larval.errors import DecodeError, LarvalError
from larval.ike.errors import IkeEncodeError, IkeError, IkeNotifyError
from larval.ikev1 import constants as v1
from larval.ikev1.errors import IkeV1DecodeError, IkeV1EncodeError, IkeV1ProtocolError
from larval.ikev1.message import decode_message as decode_v1
from larval.ikev2 import constants as v2
from larval.ikev2.errors import IkeDecodeError, IkeProtocolError
from larval.ikev2.message import decode_message as decode_v2


@pytest.mark.parametrize(
    ("error", "registry", "default"),
    [
        (IkeDecodeError("cut short"), v2.NotifyType, v2.NotifyType.INVALID_SYNTAX),
        (IkeV1DecodeError("cut short"), v1.NotifyType, v1.NotifyType.PAYLOAD_MALFORMED),
    ],
    ids=["IKEv2", "IKEv1"],
)
def test_a_decode_error_is_a_protocol_error_with_its_versions_notify(
    error: IkeNotifyError, registry: type, default: int
) -> None:
    assert isinstance(error, IkeNotifyError) and isinstance(error, DecodeError)
    assert isinstance(error.notify, registry) and error.notify == default
    assert str(error) == f"cut short ({error.notify.name})"


def test_a_notify_number_neither_registry_names_round_trips() -> None:
    for cls in (IkeProtocolError, IkeV1ProtocolError):
        error = cls(40000, "odd", b"\x01")
        assert error.notify == 40000 and error.notify.name == "UNKNOWN_40000"
        assert error.data == b"\x01" and str(error) == "odd (UNKNOWN_40000)"


def test_one_except_catches_what_either_codec_raises() -> None:
    caught = []
    for decode, data in ((decode_v2, bytes(27)), (decode_v1, bytes(27))):
        try:
            decode(data)
        except IkeNotifyError as e:
            caught.append(type(e))
    assert caught == [IkeDecodeError, IkeV1DecodeError]


def test_encode_errors_share_the_root_and_not_the_notify() -> None:
    assert issubclass(IkeV1EncodeError, IkeEncodeError)
    assert issubclass(IkeEncodeError, IkeError) and issubclass(IkeError, LarvalError)
    assert not issubclass(IkeEncodeError, IkeNotifyError)
