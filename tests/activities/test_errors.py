"""redact_url: what of a secret URL a message may still show."""

import pytest

from activities.errors import redact_url

URL = "https://bot:pa55@hooks.example.com/services/T0KEN-1234abcd/hook?key=QK-99887766&sig=ab%2Bcd%2Fef%3D12&v=1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"cannot POST {URL}", "cannot POST ***"),
        ("no route for /services/T0KEN-1234abcd/hook", "no route for ***"),
        ("unknown token T0KEN-1234abcd", "unknown token ***"),
        ("bad key: QK-99887766", "bad key: ***"),
        ("bad signature ab+cd/ef=12", "bad signature ***"),
        ("login bot:pa55 refused", "login ***:*** refused"),
        ("status 500: load test failed on hooks.example.com", None),
        ("v=1 is old", None),
    ],
)
def test_secret_parts_of_the_url_are_hidden_and_the_rest_is_kept(
    text: str, expected: str | None
) -> None:
    assert redact_url(text, URL) == (text if expected is None else expected)


def test_a_short_path_segment_is_hidden_only_as_the_whole_path() -> None:
    url = "http://127.0.0.1:8080/fail"

    assert redact_url("load test failed at /fail", url) == "load test failed at ***"
