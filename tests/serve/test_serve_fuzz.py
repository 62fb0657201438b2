"""Fuzz the service's parsing of what a client sends (Content-Length, Authorization, multipart bodies and their
headers): whatever comes, the outcome is success or an ApiError with a documented code, never another exception."""

from __future__ import annotations

import pytest
from serve_helpers import require_serve

require_serve()

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sgjnd.serve.errors import ERROR_CODES, ApiError  # noqa: E402
from sgjnd.serve.limits import check_bearer, check_content_length, image_from_body  # noqa: E402
from sgjnd.serve.protocol import raw_error_response  # noqa: E402

# derandomize: CI sees the same examples every run (a failure is reproducible, never a flake).
FUZZ = settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

# Header values as the service sees them: latin-1 text (any byte), plus arbitrary Unicode for the library API.
header_text = st.one_of(st.binary(max_size=64).map(lambda b: b.decode("latin-1")), st.text(max_size=64))


def _expected(err: ApiError) -> None:
    assert err.code in ERROR_CODES and err.status == ERROR_CODES[err.code] and err.message


@FUZZ
@given(
    value=st.one_of(
        header_text,
        st.integers(min_value=0, max_value=10**40).map(str),
        st.text(alphabet="0123456789 \t+-²٣", max_size=5000),
        st.just("0\x1f"), st.just("\x0b12"),  # whitespace that HTTP does not allow around a value
    ),
    limit=st.integers(min_value=1, max_value=1 << 40),
)
def test_content_length(value: str, limit: int) -> None:
    try:
        check_content_length({"content-length": value}, limit)
    except ApiError as err:
        _expected(err)
        assert err.code in ("bad_request", "body_too_large")
    else:
        assert value.strip(" \t").isdigit() and value.strip(" \t").isascii() and int(value) <= limit


@FUZZ
@given(
    authorization=st.one_of(st.none(), header_text, st.just("Bearer tok"), st.builds("Bearer {}".format, header_text))
)
def test_bearer(authorization: str | None) -> None:
    try:
        check_bearer(authorization, "tok")
    except ApiError as err:
        _expected(err)
        assert err.code == "unauthorized"
    else:
        assert authorization is not None and authorization.partition(" ")[2].strip() == "tok"


_parts = st.lists(
    st.tuples(
        st.sampled_from([b"Content-Disposition", b"content-type", b"X-\x00\xff", b"", b"Content-Disposition"]),
        st.one_of(
            st.binary(max_size=80),
            st.sampled_from(
                [
                    b'form-data; name="file"; filename="a.png"',
                    b'form-data; name="file"',
                    b"form-data; name=file; filename*=UTF-8''%E2%82%AC.png",
                    b'form-data; name="file"; filename="../../x\\y.jpg"',
                    b'form-data; name="\xff"; filename="\xfe"',
                ]
            ),
        ),
        st.binary(max_size=64),
    ),
    max_size=4,
)


@FUZZ
@given(
    boundary=st.one_of(
        st.just("b0und"), st.text(max_size=80), st.binary(max_size=90).map(lambda b: b.decode("latin-1"))
    ),
    parts=_parts,
    tail=st.sampled_from([b"--\r\n", b"", b"--", b"\r\n", b"junk"]),
    content_type=st.sampled_from(
        [
            "multipart/form-data; boundary={b}",
            'multipart/form-data; boundary="{b}"',
            "multipart/form-data",
            "MULTIPART/FORM-DATA;boundary={b}",
        ]
    ),
    noise=st.binary(max_size=32),
)
def test_multipart(
    boundary: str, parts: list[tuple[bytes, bytes, bytes]], tail: bytes, content_type: str, noise: bytes
) -> None:
    b = boundary.encode("latin-1", "replace")
    body = noise
    for name, value, data in parts:
        body += b"--" + b + b"\r\n" + name + b": " + value + b"\r\n\r\n" + data + b"\r\n"
    body += b"--" + b + tail
    try:
        data, source = image_from_body(content_type.format(b=boundary), body)
    except ApiError as err:
        _expected(err)
        assert err.code == "bad_request"
    else:
        assert isinstance(data, bytes) and isinstance(source, str) and "/" not in source and len(source) <= 200


@FUZZ
@given(body=st.binary(max_size=256), content_type=header_text)
def test_any_body_and_content_type(body: bytes, content_type: str) -> None:
    try:
        data, _ = image_from_body(content_type, body)
    except ApiError as err:
        _expected(err)
    else:
        assert isinstance(data, bytes)


@pytest.mark.parametrize("code", sorted(ERROR_CODES))
def test_raw_error_responses_are_valid_http(code: str) -> None:
    import h11

    from sgjnd.serve.errors import api_error

    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    client.receive_data(raw_error_response(api_error(code, "message", (("Retry-After", "1"),))))
    response = client.next_event()
    assert isinstance(response, h11.Response) and response.status_code == ERROR_CODES[code]
    assert (b"x-error-code", code.encode()) in response.headers
