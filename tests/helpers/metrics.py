"""Reading a binary's Prometheus metrics as an SRE's scraper would."""

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(url: str) -> Samples:
    """Every sample at `url`, by (name, sorted labels)."""
    async with aiohttp.ClientSession() as http, http.get(url) as reply:
        assert reply.status == 200
        return samples(await reply.text())


def samples(text: str) -> Samples:
    """Every sample of a /metrics text, by (name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name` over the samples carrying `labels` (0 when there are none yet)."""
    return sum(v for (n, found), v in samples.items() if n == name and set(labels.items()) <= set(found))
