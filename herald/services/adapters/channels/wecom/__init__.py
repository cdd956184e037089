"""The wecom channel: WeCom (企业微信) application messages to a member (`wecom_app`, addressed by userid) and
group robots (`wecom_robot`, addressed by webhook URL). The address tells which provider can take it."""


def is_robot_address(address: str) -> bool:
    """A robot's webhook URL; a userid holds no "://" (WeCom allows letters, digits and _-@. in one)."""
    return address.startswith(("https://", "http://"))
