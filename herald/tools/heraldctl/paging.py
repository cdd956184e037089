"""The one loop over herald's pages: every listing answers a page and the token of the next, empty after the last."""

from collections.abc import Callable, Iterator
from typing import Protocol, TypeVar


class Page(Protocol):
    @property
    def next_page_token(self) -> str: ...


P = TypeVar("P", bound=Page)


def pages(fetch: Callable[[str], P], first: str = "") -> Iterator[P]:
    """Each page from the one `first` points to, fetched only when wanted: `islice` takes the first alone."""
    token = first
    while True:
        page = fetch(token)
        yield page
        if not (token := page.next_page_token):
            return
