"""AWS Signature Version 4 for a request with headers (not a presigned URL), as AWS documents it in "Create a
signed AWS API request":

    CanonicalRequest = Method \\n CanonicalURI \\n CanonicalQueryString \\n CanonicalHeaders \\n SignedHeaders \\n
                       HexEncode(SHA256(payload))
    StringToSign     = "AWS4-HMAC-SHA256" \\n X-Amz-Date \\n Scope \\n HexEncode(SHA256(CanonicalRequest))
    Scope            = yyyymmdd/region/service/aws4_request
    SigningKey       = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, yyyymmdd), region), service), "aws4_request")
    Authorization    = AWS4-HMAC-SHA256 Credential=<key id>/<scope>, SignedHeaders=<names>, Signature=<hex HMAC>

Every header handed to `sign` is signed (lower-case names, sorted; values trimmed and inner spaces collapsed).
The canonical URI is the path as sent, URI-encoded once more: every service but S3 signs it encoded twice.
Written here rather than taken from botocore: one POST per delivery needs ~60 lines, not an SDK and its threads.
"""

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote, unquote

import yarl

ALGORITHM = "AWS4-HMAC-SHA256"


def canonical_request(method: str, url: yarl.URL, headers: Mapping[str, str], payload_hash: str) -> str:
    names = signed_headers(headers)
    lowered = {name.lower(): " ".join(value.split()) for name, value in headers.items()}
    return "\n".join(
        [
            method.upper(),
            quote(url.raw_path or "/", safe="/"),
            canonical_query(url.raw_query_string),
            "".join(f"{name}:{lowered[name]}\n" for name in names.split(";")),
            names,
            payload_hash,
        ]
    )


def canonical_query(raw_query: str) -> str:
    """Each name and value decoded, then RFC 3986-encoded (only A-Za-z0-9-_.~ left as they are), sorted."""
    pairs = []
    for part in filter(None, raw_query.split("&")):
        name, _, value = part.partition("=")
        pairs.append((quote(unquote(name), safe="~"), quote(unquote(value), safe="~")))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def signed_headers(headers: Mapping[str, str]) -> str:
    return ";".join(sorted(name.lower() for name in headers))


def scope(amz_date: str, region: str, service: str) -> str:
    return f"{amz_date[:8]}/{region}/{service}/aws4_request"


def string_to_sign(amz_date: str, credential_scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{credential_scope}\n{digest}"


def signing_key(secret: str, day: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def authorization(
    method: str,
    url: yarl.URL,
    headers: Mapping[str, str],
    payload_hash: str,
    *,
    amz_date: str,
    region: str,
    service: str,
    access_key_id: str,
    secret: str,
) -> str:
    """The Authorization header of a request whose `headers` (all signed) already hold host and x-amz-date."""
    credential_scope = scope(amz_date, region, service)
    to_sign = string_to_sign(amz_date, credential_scope, canonical_request(method, url, headers, payload_hash))
    key = signing_key(secret, amz_date[:8], region, service)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return (
        f"{ALGORITHM} Credential={access_key_id}/{credential_scope}, "
        f"SignedHeaders={signed_headers(headers)}, Signature={signature}"
    )


def sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    region: str,
    service: str,
    access_key_id: str,
    secret: str,
    now: datetime | None = None,
) -> dict[str, str]:
    """`headers` plus Host, X-Amz-Date, X-Amz-Content-Sha256 and Authorization: send exactly these, with `body`.
    Host is set here because it is signed: the HTTP client must not write it differently."""
    parsed = yarl.URL(url)
    payload_hash = hashlib.sha256(body).hexdigest()
    amz_date = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    signed = {
        **headers,
        "Host": parsed.host_port_subcomponent or "",
        "X-Amz-Date": amz_date,
        "X-Amz-Content-Sha256": payload_hash,
    }
    signed["Authorization"] = authorization(
        method,
        parsed,
        signed,
        payload_hash,
        amz_date=amz_date,
        region=region,
        service=service,
        access_key_id=access_key_id,
        secret=secret,
    )
    return signed
