"""heraldctl's one paging loop, in one process: every listing command reads herald's pages through it."""

from dataclasses import dataclass
from itertools import islice

from herald.tools.heraldctl.paging import pages


@dataclass
class Page:
    items: list[str]
    next_page_token: str


# A listing of three pages, keyed by the token that asks for each.
LISTING = {"": Page(["a", "b"], "p2"), "p2": Page(["c"], "p3"), "p3": Page(["d"], "")}


def test_follows_each_token_until_the_last_page() -> None:
    asked: list[str] = []

    def fetch(token: str) -> Page:
        asked.append(token)
        return LISTING[token]

    assert [item for page in pages(fetch) for item in page.items] == ["a", "b", "c", "d"]
    assert asked == ["", "p2", "p3"]


def test_starts_where_a_previous_call_pointed_and_fetches_only_what_is_taken() -> None:
    asked: list[str] = []

    def fetch(token: str) -> Page:
        asked.append(token)
        return LISTING[token]

    assert [page.items for page in islice(pages(fetch, "p2"), 1)] == [["c"]]
    assert asked == ["p2"], "one page wanted (status without --all), one call"
