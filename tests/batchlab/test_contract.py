"""The contract's report and config."""

from __future__ import annotations

import pytest
from batchlab.contract import BatchConfig, BatchReport, percentile


class TestBatchReport:
    def test_rates_follow_the_definitions(self) -> None:
        report = BatchReport(batch_id="b", total=10, unique=8, rejected=2, done=7, degraded=1, failed=0,
                             duplicate_executions=1)
        assert report.completion_rate == 1.0 and report.fail_rate == 0.2 and report.duplicate_rate == 0.125

    def test_throughput_and_latency_percentiles(self) -> None:
        report = BatchReport(batch_id="b", executed=30, wall_time_s=60.0, latencies_s=[1, 2, 3, 4, 5])
        assert report.throughput_docs_per_min == 30.0
        assert report.latency_p50_s == 3 and report.latency_p95_s == pytest.approx(4.8)

    def test_to_dict_includes_the_derived_figures(self) -> None:
        data = BatchReport(batch_id="b", unique=1, done=1).to_dict()
        assert data["completion_rate"] == 1.0 and "latencies_s" not in data and data["latency_p50_s"] is None


class TestBatchConfig:
    @pytest.mark.parametrize("kwargs", [{"concurrency": 0}, {"max_attempts": 0}, {"base_delay": -1},
                                        {"breaker_failures": -1}, {"breaker_cooldown": 0}, {"breaker_max_wait": -1},
                                        {"call_timeout": -0.1}])
    def test_rejects_impossible_settings(self, kwargs: dict[str, float]) -> None:
        with pytest.raises(ValueError):
            BatchConfig(**kwargs)  # type: ignore[arg-type]

    def test_round_trips_through_a_dict_and_ignores_unknown_keys(self) -> None:
        config = BatchConfig(concurrency=3)
        assert BatchConfig.from_dict({**config.to_dict(), "future": 1}) == config


def test_percentile_of_nothing_is_none() -> None:
    assert percentile([], 50) is None
