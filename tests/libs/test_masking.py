"""Phone numbers and e-mail addresses never appear in clear in a log line."""

import json
import subprocess
import sys

import pytest

from herald.libs.masking import mask


@pytest.mark.parametrize(
    ("text", "hidden", "kept"),
    [
        ("to alice.smith@example.com", "alice.smith", "a***@example.com"),
        ("https://hooks.example.com/h?to=bob%40example.org", "bob", "b***%40example.org"),
        ("sms to +8613812345678 failed", "13812345678", "5678"),
        ("call 415-555-0132 now", "555-0132", "0132"),
    ],
)
def test_mask_hides_the_personal_part(text: str, hidden: str, kept: str) -> None:
    masked = mask(text)
    assert hidden not in masked
    assert kept in masked


def test_ids_and_short_numbers_survive() -> None:
    text = "delivery msg_01JD3ZQ8.2 attempt 3 HTTP 503"
    assert mask(text) == text


def test_log_lines_are_json_with_service_and_masked_addresses() -> None:
    code = (
        "from herald.libs import telemetry; import structlog; telemetry.setup('intake');"
        "structlog.get_logger().info('sending', to='bob@example.org', phone='+8613800001111')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    line = json.loads(out.strip().splitlines()[-1])
    assert line["service"] == "herald-intake" and line["event"] == "sending"
    assert "bob@" not in out and "13800001111" not in out
