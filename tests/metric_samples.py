"""Prometheus text from /metrics, read as Prometheus reads it, into samples to look up."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

# (metric name, its labels sorted) -> value
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
