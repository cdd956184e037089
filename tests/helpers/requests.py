"""A request that is valid until a test changes one field: each test names only what it breaks."""

from herald.v1 import message_service_pb2 as msg


def send_request(template: str, dry_run: bool = False, /, **changes: object) -> msg.SendRequest:
    """A Send of `template` (variable `code`) to one webhook address, with `changes` replacing fields."""
    request = msg.SendRequest(
        template_id=template,
        recipients=[msg.Recipient(addresses={"webhook": "http://127.0.0.1:9/x"})],
        variables={"code": "123456"},
        channels=["webhook"],
        dry_run=dry_run,
    )
    for name, value in changes.items():
        request.ClearField(name)  # type: ignore[arg-type]
        if isinstance(value, list):
            getattr(request, name).extend(value)
        elif isinstance(value, dict):
            getattr(request, name).update(value)
        else:
            setattr(request, name, value)
    return request
